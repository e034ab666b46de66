"""A sentence-transformers data collator that also prepares the word-level alignment of each batch.

sentence-transformers' collator tokenizes every text column and drops the strings. Word-level distillation
needs the teacher's attention over each (anchor, positive) pair mapped onto the student's token positions; the
collator is where both the texts and the collated token ids are at hand, so it computes that alignment once per
batch (:class:`~d2llm_st.training.word_alignment.WordAlignment`) and adds it to the batch as tensors
(``anchor_word_attention``, ``positive_word_mask``); the trainer passes them to the loss inside the anchor's and
the positive's features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

from d2llm_st.losses.word_level import ATTENTION_KEY, MASK_KEY
from d2llm_st.tasks import ANCHOR_COLUMN
from d2llm_st.training.word_alignment import WordAlignment

QUERY_COLUMN, PASSAGE_COLUMN = ANCHOR_COLUMN, "positive"


@dataclass
class D2LLMDataCollator(SentenceTransformerDataCollator):
    """``SentenceTransformerDataCollator`` + the word-level alignment of the ``anchor`` and ``positive`` columns.

    Args:
        word_alignment: Computes the aligned teacher attention of each batch; ``None`` (default) collates exactly
            as sentence-transformers does.
    """

    word_alignment: WordAlignment | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        if self.word_alignment is None or not features:
            return batch
        missing = [column for column in (QUERY_COLUMN, PASSAGE_COLUMN) if column not in features[0]]
        if missing:
            raise ValueError(
                f"Word-level alignment needs the {QUERY_COLUMN!r} and {PASSAGE_COLUMN!r} columns; the batch has "
                f"{sorted(features[0])}."
            )
        prompts = self._resolve_prompts(batch)
        attention, mask = self.word_alignment(
            [row[QUERY_COLUMN] for row in features],
            [row[PASSAGE_COLUMN] for row in features],
            {key: batch[f"{QUERY_COLUMN}_{key}"] for key in ("input_ids", "attention_mask")},
            {key: batch[f"{PASSAGE_COLUMN}_{key}"] for key in ("input_ids", "attention_mask")},
            anchor_prompt=self._get_prompt_for_column(prompts, QUERY_COLUMN),
            positive_prompt=self._get_prompt_for_column(prompts, PASSAGE_COLUMN),
            dataset_name=batch.get("dataset_name"),
        )
        batch[f"{QUERY_COLUMN}_{ATTENTION_KEY}"] = attention
        batch[f"{PASSAGE_COLUMN}_{MASK_KEY}"] = mask
        return batch
