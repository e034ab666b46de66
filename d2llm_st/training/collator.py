"""A sentence-transformers data collator that also hands the raw texts of chosen columns to the loss.

sentence-transformers' collator tokenizes every text column and drops the strings. Word-level
distillation must ask the teacher about the same (anchor, positive) texts and find each text token in the
student's input, so this collator keeps ``{column}_text`` (the strings) and ``{column}_prompt`` (the
prompt prepended to them) next to the token ids; the trainer passes both to the loss inside that
column's features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator


@dataclass
class D2LLMDataCollator(SentenceTransformerDataCollator):
    """``SentenceTransformerDataCollator`` + the raw texts and prompts of ``text_columns``.

    Args:
        text_columns: Columns whose texts (and prompt) are kept, by default the anchor and the positive.
    """

    text_columns: tuple[str, ...] = field(default=("anchor", "positive"))

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        prompts = self._resolve_prompts(batch)
        for column in self.text_columns:
            if features and column in features[0]:
                batch[f"{column}_text"] = [row[column] for row in features]
                batch[f"{column}_prompt"] = self._get_prompt_for_column(prompts, column)
        return batch
