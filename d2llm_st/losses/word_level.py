"""Word-level distillation, from MD2PR (Li, Hai and Tang, "A Multi-level Distillation based Dense Passage
Retrieval Model", arXiv 2312.16821).

Beside the sentence-level terms, the student's token states should reproduce where the teacher looks:
for each query token ``i``, the student's similarities to the passage tokens,
``softmax_j(cos(q_i, p_j) / tau)``, should match the teacher's attention between query token ``i`` and
the passage tokens ``j`` of the same pair, normalised over ``j`` (KL divergence over passage tokens).

Alignment. The teacher reads the pair through its own prompt template and the student reads each text
after its own prompt, so the same text is tokenized inside different surroundings. Both sides therefore
carry each token's character span in the *original* text, and a student token takes the attention of every
teacher token whose span overlaps its own. This assumes teacher and student share one tokenizer (the usual
D2LLM setting: both start from the same base LLM); :class:`TeacherAttention` refuses a teacher whose
vocabulary differs from the student's, since attention over different token pieces is not comparable.

The teacher's attention maps are computed on the fly for the batch's (anchor, positive) pairs and kept in
an in-memory LRU cache, so a second epoch costs no teacher pass.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from d2llm_st.teacher.base import PairAttention, Teacher

logger = logging.getLogger(__name__)

Span = tuple[int, int]


def word_level_loss(
    query_states: torch.Tensor,
    passage_states: torch.Tensor,
    teacher_attention: torch.Tensor,
    passage_mask: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """KL(teacher attention || student token similarities) over passage tokens, averaged over query tokens.

    ``P_t(j | i) = A[i, j] / sum_j A[i, j]``, ``P_s(j | i) = softmax_j(cos(q_i, p_j) / tau)`` over the
    passage tokens in ``passage_mask``; ``L = mean_{(b, i)} KL(P_t(. | i) || P_s(. | i))`` over the query
    tokens whose teacher row has mass.

    Args:
        query_states: ``[B, Lq, D]`` student token states of the queries (anchors).
        passage_states: ``[B, Lp, D]`` student token states of the passages (positives).
        teacher_attention: ``[B, Lq, Lp]`` non-negative teacher attention aligned to the student's token
            positions (zero rows for query positions without a teacher counterpart, e.g. prompt tokens).
        passage_mask: ``[B, Lp]`` bool, the passage positions the student's softmax runs over (text tokens).
        temperature: Divides the cosine similarities.

    Returns:
        A scalar tensor (0 when no query token has teacher attention).
    """
    if teacher_attention.shape != (*query_states.shape[:2], passage_states.shape[1]):
        raise ValueError(
            f"teacher_attention {tuple(teacher_attention.shape)} must be [B, Lq, Lp] for query_states "
            f"{tuple(query_states.shape)} and passage_states {tuple(passage_states.shape)}."
        )
    passage_mask = passage_mask.bool()
    target = teacher_attention.float().clamp(min=0) * passage_mask[:, None, :]
    mass = target.sum(dim=-1, keepdim=True)
    rows = mass.squeeze(-1) > 0
    if not rows.any():
        return query_states.sum() * 0.0
    target = target / mass.clamp(min=1e-12)
    similarity = F.normalize(query_states.float(), dim=-1) @ F.normalize(passage_states.float(), dim=-1).transpose(1, 2)
    # A finite fill, not -inf: a passage without text tokens would make a whole row -inf, and the softmax
    # backward of such a row is NaN even where the target is 0.
    masked = (similarity / temperature).masked_fill(~passage_mask[:, None, :], torch.finfo(torch.float32).min)
    kl = torch.xlogy(target, target) - target * masked.log_softmax(-1)
    return kl.sum(dim=-1)[rows].mean()


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

    def aligned(
        self,
        query_features: dict,
        passage_features: dict,
        tokenizer,
        max_length: int,
        query_width: int,
        passage_width: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher attention aligned to the student's padded positions, and the passage text-token mask.

        ``query_features`` / ``passage_features`` are the collated features of the anchor and positive
        columns, carrying ``text`` and ``prompt`` (see :class:`~d2llm_st.training.collator.D2LLMDataCollator`).

        Returns:
            ``([B, query_width, passage_width] attention, [B, passage_width] bool mask)`` on the features' device.
        """
        queries, passages = _texts(query_features, "anchor"), _texts(passage_features, "positive")
        attentions = self(queries, passages)
        query_rows = _student_positions(query_features, tokenizer, max_length, "anchor")
        passage_rows = _student_positions(passage_features, tokenizer, max_length, "positive")
        batch = len(queries)
        aligned = np.zeros((batch, query_width, passage_width), dtype=np.float32)
        passage_mask = np.zeros((batch, passage_width), dtype=bool)
        for b, attention in enumerate(attentions):
            query_positions, query_spans = query_rows[b]
            passage_positions, passage_spans = passage_rows[b]
            matrix = align_pair_attention(attention, query_spans, passage_spans)
            aligned[b][np.ix_(query_positions, passage_positions)] = matrix
            passage_mask[b, passage_positions] = [span is not None for span in passage_spans]
        device = query_features["attention_mask"].device
        return torch.from_numpy(aligned).to(device), torch.from_numpy(passage_mask).to(device)


def _texts(features: dict, column: str) -> list[str]:
    if "text" not in features:
        raise ValueError(
            f"Word-level distillation needs the raw {column} texts in the batch, but the collated features have "
            f"only {sorted(features)}. Train with d2llm_st.training.D2LLMDataCollator (it keeps the texts and "
            "prompts of the anchor and positive columns), or set word_level_weight=0."
        )
    return list(features["text"])


def _student_positions(
    features: dict, tokenizer, max_length: int, column: str
) -> list[tuple[np.ndarray, list[Span | None]]]:
    """Per row: the padded positions of the real tokens and each token's text span; checks the ids match."""
    encoded = student_text_spans(tokenizer, _texts(features, column), features.get("prompt"), max_length)
    input_ids, mask = features["input_ids"].cpu(), features["attention_mask"].bool().cpu()
    rows = []
    for b, (ids, spans) in enumerate(encoded):
        positions = mask[b].nonzero().squeeze(-1)
        if len(positions) != len(ids) or input_ids[b, positions].tolist() != ids:
            raise ValueError(
                f"Row {b} of the {column} column: re-tokenizing prompt + text does not give the model's input ids, "
                "so the word-level alignment cannot find the text tokens. Were the texts collated with a different "
                "prompt or max_seq_length than the backbone's?"
            )
        rows.append((positions.numpy(), spans))
    return rows
