"""Word-level alignment, prepared once per batch in the data collator.

MD2PR's word-level term (:func:`d2llm_st.losses.word_level_loss`) compares the student's query-token x
passage-token similarities with the teacher's attention between the same tokens. The teacher reads the pair
through its own prompt template and the student reads each text after its own prompt, so the same text is
tokenized inside different surroundings. Both sides therefore carry each token's character span in the
*original* text, and a student token takes the attention of every teacher token whose span overlaps its own.
This assumes teacher and student share one tokenizer (the usual D2LLM setting: both start from the same base
LLM); :func:`check_same_tokenizer` refuses a teacher whose vocabulary differs from the student's, since attention
over different token pieces is not comparable.

:class:`WordAlignment` does all of it where the texts still are, in
:class:`~d2llm_st.training.collator.D2LLMDataCollator`: it asks the teacher for the attention maps of the batch's
(anchor, positive) pairs (kept in an in-memory LRU cache, so a second epoch costs no teacher pass), maps them onto
the student's padded token positions, and puts two tensors in the batch: ``anchor_word_attention``
(``[B, Lq, Lp]``) and ``positive_word_mask`` (``[B, Lp]``, the passage's text tokens). The loss reads them from
the anchor's and the positive's features and never sees a raw text.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from d2llm_st.tasks import check_task

if TYPE_CHECKING:
    from d2llm_st.teacher.base import PairAttention, Teacher

logger = logging.getLogger(__name__)

Span = tuple[int, int]


def student_text_spans(
    tokenizer, texts: Sequence[str], prompt: str | None, max_length: int
) -> list[tuple[list[int], list[Span | None]]]:
    """For each text, the student's token ids of ``prompt + text`` and each token's span in ``text``.

    Tokens that lie wholly in the prompt (or are special tokens) get ``None``. Uses the same call as
    :meth:`LLMBackbone.preprocess` (truncation at ``max_length``), so the ids match the model's input.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"Word-level distillation needs a fast tokenizer (character offsets); {type(tokenizer).__name__} is not."
        )
    prompt = prompt or ""
    encoded = tokenizer(
        [prompt + text for text in texts], truncation=True, max_length=max_length, return_offsets_mapping=True
    )
    results = []
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        spans: list[Span | None] = []
        for start, end in offsets:
            start, end = max(start - len(prompt), 0), min(end - len(prompt), len(text))
            spans.append((start, end) if end > start else None)
        results.append((list(ids), spans))
    return results


def overlap_matrix(rows: Sequence[Span | None], columns: Sequence[Span | None]) -> np.ndarray:
    """``[len(rows), len(columns)]`` 0/1 matrix: 1 where two character spans overlap."""
    matrix = np.zeros((len(rows), len(columns)), dtype=np.float32)
    for i, row in enumerate(rows):
        if row is None:
            continue
        for j, column in enumerate(columns):
            if column is not None and row[0] < column[1] and column[0] < row[1]:
                matrix[i, j] = 1.0
    return matrix


def align_pair_attention(
    attention: PairAttention, query_spans: Sequence[Span | None], passage_spans: Sequence[Span | None]
) -> np.ndarray:
    """Map a teacher :class:`PairAttention` ``[La, Lb]`` onto student tokens (``[n_query, n_passage]``).

    ``aligned = M_q^T W M_p`` with ``M`` the span-overlap matrices (teacher tokens x student tokens), so a
    student token gets the summed weight of the teacher tokens it overlaps; tokens without a text span get 0.
    """
    to_query = overlap_matrix(attention.offsets_a, query_spans)
    to_passage = overlap_matrix(attention.offsets_b, passage_spans)
    return to_query.T @ np.asarray(attention.weights, dtype=np.float32) @ to_passage


def check_same_tokenizer(teacher_tokenizer, student_tokenizer) -> None:
    """Raise unless both tokenizers have the same vocabulary (the word-level alignment assumes it)."""
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise ValueError(
            f"Word-level distillation needs the teacher and the student to share one tokenizer, but the teacher's "
            f"({getattr(teacher_tokenizer, 'name_or_path', '?')}, {len(teacher_tokenizer)} tokens) and the student's "
            f"({getattr(student_tokenizer, 'name_or_path', '?')}, {len(student_tokenizer)} tokens) vocabularies "
            "differ. Use a teacher built from the student's base LLM, or set word_level_weight=0."
        )


class TeacherAttention:
    """The teacher's attention maps of (anchor, positive) pairs, scored on demand and cached in memory.

    Args:
        teacher: A :class:`~d2llm_st.teacher.base.Teacher` whose ``score(..., return_attention=True)`` gives
            :class:`~d2llm_st.teacher.base.PairAttention` maps.
        task: ``symmetric`` or ``asymmetric``: which teacher template reads the pairs.
        student_tokenizer: The student backbone's tokenizer; must equal the teacher's (see module docstring).
        batch_size: Teacher batch size.
        cache_size: Pairs kept in the LRU cache.
    """

    def __init__(
        self, teacher: Teacher, task: str, student_tokenizer, batch_size: int = 16, cache_size: int = 4096
    ) -> None:
        check_same_tokenizer(teacher.tokenizer, student_tokenizer)
        self.teacher = teacher
        self.task = task
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], PairAttention] = OrderedDict()

    def __call__(self, queries: Sequence[str], passages: Sequence[str]) -> list[PairAttention]:
        pairs = list(zip(queries, passages))
        missing = list(dict.fromkeys(pair for pair in pairs if pair not in self._cache))
        if missing:
            output = self.teacher.score(
                missing, self.task, batch_size=self.batch_size, return_attention=True, show_progress_bar=False
            )
            for pair, attention in zip(missing, output.attentions):
                self._cache[pair] = attention
        result = []
        for pair in pairs:
            self._cache.move_to_end(pair)
            result.append(self._cache[pair])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result


class WordAlignment:
    """The teacher's attention over each (anchor, positive) pair, aligned to the student's padded token positions.

    Give it to :class:`~d2llm_st.training.collator.D2LLMDataCollator` (``word_alignment=``); the collator calls it
    once per batch with the texts, their prompts and the collated token ids.

    Args:
        teacher: A :class:`~d2llm_st.teacher.base.Teacher` whose ``score(..., return_attention=True)`` gives
            :class:`~d2llm_st.teacher.base.PairAttention` maps; its tokenizer must equal the student's.
        student_tokenizer: The student backbone's tokenizer.
        max_length: The student's ``max_seq_length`` (texts are tokenized as the model's ``preprocess`` does).
        tasks: The task of the pairs (``"asymmetric"`` or ``"symmetric"``: which teacher template reads them), or
            one per dataset name for multi-dataset training.
        batch_size: Teacher batch size.
        cache_size: Pairs kept in each task's LRU cache.
    """

    def __init__(
        self,
        teacher: Teacher,
        student_tokenizer,
        max_length: int,
        tasks: str | Mapping[str, str] = "asymmetric",
        batch_size: int = 16,
        cache_size: int = 4096,
    ) -> None:
        check_same_tokenizer(teacher.tokenizer, student_tokenizer)
        self.tokenizer = student_tokenizer
        self.max_length = max_length
        self.tasks = check_task(tasks) if isinstance(tasks, str) else {name: check_task(t) for name, t in tasks.items()}
        self.attention = {
            task: TeacherAttention(teacher, task, student_tokenizer, batch_size=batch_size, cache_size=cache_size)
            for task in ({self.tasks} if isinstance(self.tasks, str) else set(self.tasks.values()))
        }

    def task(self, dataset_name: str | None = None) -> str:
        """The task of the batch's dataset (the one task when ``tasks`` is a string)."""
        if isinstance(self.tasks, str):
            return self.tasks
        if dataset_name not in self.tasks:
            raise ValueError(
                f"WordAlignment knows the tasks of {sorted(self.tasks)}, not of dataset {dataset_name!r}: pass "
                "tasks={dataset name: task} for every training set."
            )
        return self.tasks[dataset_name]

    def __call__(
        self,
        anchors: Sequence[str],
        positives: Sequence[str],
        anchor_features: Mapping[str, torch.Tensor],
        positive_features: Mapping[str, torch.Tensor],
        anchor_prompt: str | None = None,
        positive_prompt: str | None = None,
        dataset_name: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher attention aligned to the collated positions, and the passage text-token mask.

        Args:
            anchors, positives: The batch's texts (without prompts).
            anchor_features, positive_features: Their collated ``input_ids`` and ``attention_mask``.
            anchor_prompt, positive_prompt: The prompts the collator put before them.
            dataset_name: The batch's dataset (multi-dataset training), which gives its task.

        Returns:
            ``([B, Lq, Lp] float attention, [B, Lp] bool mask)``, with ``Lq`` / ``Lp`` the collated widths.
        """
        attentions = self.attention[self.task(dataset_name)](anchors, positives)
        query_rows = self._positions(anchors, anchor_prompt, anchor_features, "anchor")
        passage_rows = self._positions(positives, positive_prompt, positive_features, "positive")
        batch = len(anchors)
        query_width, passage_width = anchor_features["input_ids"].shape[1], positive_features["input_ids"].shape[1]
        aligned = np.zeros((batch, query_width, passage_width), dtype=np.float32)
        passage_mask = np.zeros((batch, passage_width), dtype=bool)
        for b, attention in enumerate(attentions):
            query_positions, query_spans = query_rows[b]
            passage_positions, passage_spans = passage_rows[b]
            matrix = align_pair_attention(attention, query_spans, passage_spans)
            aligned[b][np.ix_(query_positions, passage_positions)] = matrix
            passage_mask[b, passage_positions] = [span is not None for span in passage_spans]
        return torch.from_numpy(aligned), torch.from_numpy(passage_mask)

    def _positions(
        self, texts: Sequence[str], prompt: str | None, features: Mapping[str, torch.Tensor], column: str
    ) -> list[tuple[np.ndarray, list[Span | None]]]:
        """Per row: the padded positions of the real tokens and each token's text span; checks the ids match."""
        encoded = student_text_spans(self.tokenizer, texts, prompt, self.max_length)
        input_ids, mask = features["input_ids"].cpu(), features["attention_mask"].bool().cpu()
        rows = []
        for b, (ids, spans) in enumerate(encoded):
            positions = mask[b].nonzero().squeeze(-1)
            if len(positions) != len(ids) or input_ids[b, positions].tolist() != ids:
                raise ValueError(
                    f"Row {b} of the {column} column: tokenizing prompt + text does not give the collated input "
                    "ids, so the word-level alignment cannot find the text tokens. Was the batch collated with a "
                    "different prompt or max_seq_length than the WordAlignment's?"
                )
            rows.append((positions.numpy(), spans))
        return rows
