"""What every teacher returns, and the scoring loop they share (validation, de-duplication, cache).

A teacher judges a text pair jointly and returns ``P(yes)``: does the passage answer the query
(``asymmetric``), do the two texts mean the same (``symmetric``). Subclasses only say how to score a
list of pairs in batches (:meth:`Teacher._score_batches`); :meth:`Teacher.score` scores each distinct
pair once, serves known pairs from the :class:`~d2llm_st.teacher.cache.ScoreCache` and writes every
finished batch to it, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from d2llm_st.modules.backbone import check_texts
from d2llm_st.tasks import check_task
from d2llm_st.teacher.cache import ScoreCache, cache_key

logger = logging.getLogger(__name__)


@dataclass
class PairAttention:
    """The teacher's last-layer attention between the tokens of text ``a`` and the tokens of text ``b``.

    ``weights[i, j]`` (shape ``[len(tokens_a), len(tokens_b)]``, averaged over heads) is the softmax weight
    between token ``i`` of ``a`` and token ``j`` of ``b``, read from the row of whichever token comes later
    in the prompt: with the default templates ``a`` (query) comes first, so it is how much passage token
    ``j`` attends to query token ``i`` (a causal LM gives zero attention the other way round). The weights
    are not renormalised (rows of the full attention also cover the template tokens).

    Tokens are those of the teacher's prompt, so a token at a text boundary may differ from tokenizing
    the text alone; ``offsets_a`` / ``offsets_b`` give each token's character span in the original text
    (clipped to it), which aligns them with any other tokenizer's offsets.
    ``np.asarray(pair_attention)`` is ``weights``.
    """

    weights: np.ndarray
    tokens_a: list[str]
    tokens_b: list[str]
    token_ids_a: list[int]
    token_ids_b: list[int]
    offsets_a: list[tuple[int, int]]
    offsets_b: list[tuple[int, int]]

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.weights if dtype is None else self.weights.astype(dtype)


@dataclass
class TeacherOutput:
    """Teacher judgements of ``N`` pairs.

    Attributes:
        scores: ``[N]`` float32, ``P(yes)`` per pair.
        features: ``[N, H]`` float32, the teacher's final hidden state at the position that produces the
            answer (the feature that feature imitation aligns with), or ``None`` if not requested.
        attentions: One :class:`PairAttention` per pair (``[La, Lb]`` weights plus the tokens of both sides),
            or ``None`` if not requested.
    """

    scores: np.ndarray
    features: np.ndarray | None = None
    attentions: list[PairAttention] | None = None


BatchResult = tuple[list[int], np.ndarray, np.ndarray | None, list[PairAttention] | None]


def check_pairs(pairs: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """Validate a list of ``(text_a, text_b)`` pairs, naming the first bad item."""
    if isinstance(pairs, (str, bytes)) or not len(pairs):
        raise ValueError("pairs must be a non-empty list of (text_a, text_b) pairs.")
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"pairs[{i}] must be a (text_a, text_b) pair, got {pair!r}.")
    first = check_texts([pair[0] for pair in pairs], "pairs[:, 0]")
    second = check_texts([pair[1] for pair in pairs], "pairs[:, 1]")
    return list(zip(first, second))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so padding stays small."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class Teacher(ABC):
    """Base class of teachers: ``score(pairs, task) -> TeacherOutput`` with an optional on-disk cache.

    Subclasses set ``identity`` (a string naming the model and its weights; the cache key), ``tokenizer``
    and ``cache``, and implement :meth:`template_key` and :meth:`_score_batches`.
    """

    identity: str
    tokenizer: object
    cache: ScoreCache | None = None

    @abstractmethod
    def template_key(self, task: str) -> str:
        """What besides the weights changes a score for ``task`` (template, answer tokens, max length)."""

    @abstractmethod
    def _score_batches(
        self,
        pairs: list[tuple[str, str]],
        task: str,
        batch_size: int,
        return_features: bool,
        return_attention: bool,
    ) -> Iterator[BatchResult]:
        """Yield ``(indices into pairs, scores, features or None, attentions or None)`` batch by batch."""

    def set_cache(self, cache: ScoreCache | str | None) -> None:
        """Use a score cache (a :class:`ScoreCache` or the path of its SQLite file); ``None`` turns it off."""
        self.cache = ScoreCache(cache) if isinstance(cache, str) else cache

    def score(
        self,
        pairs: Sequence[tuple[str, str]],
        task: str = "asymmetric",
        batch_size: int = 32,
        return_features: bool = False,
        return_attention: bool = False,
        show_progress_bar: bool | None = None,
    ) -> TeacherOutput:
        """Judge each ``(text_a, text_b)`` pair: ``(query, passage)`` for ``asymmetric``, two texts for ``symmetric``.

        Each distinct pair is scored once; with a cache, known pairs are read from it and every new batch is
        committed to it as soon as it is scored. Attention maps are never cached: asking for them scores
        every distinct pair again. Scores do not depend on ``batch_size`` or on the other pairs in the call.

        Returns:
            :class:`TeacherOutput` with ``scores`` ``[N]`` (``P(yes)``), and ``features`` ``[N, H]`` /
            ``attentions`` (list of :class:`PairAttention`) when requested.
        """
        pairs = check_pairs(pairs)
        check_task(task)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        template_key = self.template_key(task)
        keys = [cache_key(self.identity, template_key, a, b) for a, b in pairs]
        known: dict[bytes, tuple[float, np.ndarray | None]] = {}
        if self.cache is not None and not return_attention:
            known = self.cache.get(keys, with_features=return_features)
        first_index = {}
        for i, key in enumerate(keys):
            if key not in known:
                first_index.setdefault(key, i)
        todo = list(first_index.values())
        if known:
            logger.info(f"Score cache: {len(pairs) - len(todo)} of {len(pairs)} pairs known, scoring {len(todo)}")
        attention_by_key: dict[bytes, PairAttention] = {}
        if todo:
            todo_pairs = [pairs[i] for i in todo]
            progress = tqdm(total=len(todo), desc="Teacher scoring", unit="pair", disable=not show_progress_bar)
            for indices, scores, features, attentions in self._score_batches(
                todo_pairs, task, batch_size, return_features, return_attention
            ):
                batch_keys = [keys[todo[i]] for i in indices]
                if self.cache is not None:
                    self.cache.put(batch_keys, scores, features)
                for j, key in enumerate(batch_keys):
                    known[key] = (float(scores[j]), None if features is None else features[j])
                    if attentions is not None:
                        attention_by_key[key] = attentions[j]
                progress.update(len(indices))
            progress.close()
        scores = np.array([known[key][0] for key in keys], dtype=np.float32)
        features = np.stack([known[key][1] for key in keys]).astype(np.float32) if return_features else None
        attentions = [attention_by_key[key] for key in keys] if return_attention else None
        return TeacherOutput(scores=scores, features=features, attentions=attentions)
