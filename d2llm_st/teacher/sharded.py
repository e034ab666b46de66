"""Teacher scoring shared out over the processes of a ``torchrun`` / ``accelerate launch`` run, into one cache.

:func:`score_sharded` is :meth:`Teacher.score` for ``N`` processes (``d2llm teacher-score`` uses it, and
``d2llm distill`` through :class:`ShardedTeacher` before training). Every rank reads the same pairs and loads the
same teacher; then:

1. rank 0 merges shard files left by an interrupted run into the score cache and finds the distinct pairs the
   cache does not hold; every rank gets that list and scores its share (:func:`d2llm_st.distributed.shard`:
   every ``N``-th pair, so the ranks' work is balanced and disjoint);
2. each rank writes its scores, batch by batch, to its own SQLite file ``<cache>.shards/rank-<r>.sqlite`` (one
   writer per file, rollback journal: also safe on a network filesystem, where SQLite's locking is not);
3. at the end all ranks meet, rank 0 merges the shard files into the cache, deletes them, and sends every rank
   the scores of all pairs.

A rank that is killed loses at most the batch it was scoring; the others are stopped by the launcher (or fail at the
next meeting). Running the same command again, with any number of processes (one included), merges what every
rank had committed and scores only the rest: no pair is scored twice, none is lost. Two runs must not use one cache
at the same time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from d2llm_st.distributed import Distributed, digest
from d2llm_st.errors import UserError
from d2llm_st.tasks import check_task
from d2llm_st.teacher.base import Teacher, TeacherOutput, check_pairs
from d2llm_st.teacher.cache import ScoreCache, cache_key

logger = logging.getLogger(__name__)

SHARD_PREFIX = "rank-"
SHARD_SUFFIX = ".sqlite"


def shard_folder(cache: str) -> str:
    """Where the ranks write their shard files for the cache file ``cache``."""
    return f"{os.path.abspath(cache)}.shards"


def shard_path(cache: str, rank: int) -> str:
    return os.path.join(shard_folder(cache), f"{SHARD_PREFIX}{rank:05d}{SHARD_SUFFIX}")


def merge_shards(cache: ScoreCache) -> int:
    """Merge every shard file of ``cache`` into it and delete them; returns the entries merged (duplicates counted)."""
    folder = shard_folder(cache.path)
    if not os.path.isdir(folder):
        return 0
    merged = 0
    for name in sorted(os.listdir(folder)):
        if not (name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)):
            continue
        path = os.path.join(folder, name)
        merged += cache.merge(path)
        for leftover in (path, f"{path}-journal", f"{path}-wal", f"{path}-shm"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return merged


def _unscored(cache_path: str, keys: list[bytes], with_features: bool) -> list[int]:
    """Rank 0: merge an interrupted run's shards, then the positions in ``keys`` that the cache does not hold."""
    cache = ScoreCache(cache_path)
    try:
        merged = merge_shards(cache)
        known = cache.get(keys, with_features=with_features)
    finally:
        cache.close()
    todo = [i for i, key in enumerate(keys) if key not in known]
    resumed = f" ({merged} merged from an interrupted run)" if merged else ""
    logger.info(f"Score cache {cache_path}: {len(keys) - len(todo)} of {len(keys)} distinct pairs known{resumed}")
    return todo


def _merged_results(cache_path: str, keys: list[bytes], with_features: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Rank 0: merge the ranks' shards, then the scores (and features) of ``keys`` in order."""
    cache = ScoreCache(cache_path)
    try:
        merge_shards(cache)
        known = cache.get(keys, with_features=with_features)
    finally:
        cache.close()
    missing = len(keys) - len(known)
    if missing:
        raise UserError(
            f"{missing} of {len(keys)} pairs are missing from {cache_path} after merging the ranks' shards: was "
            "another run using the same cache at the same time? Run the command again to score them."
        )
    scores = np.array([known[key][0] for key in keys], dtype=np.float32)
    features = np.stack([known[key][1] for key in keys]).astype(np.float32) if with_features else None
    return scores, features


def score_sharded(
    teacher: Teacher,
    pairs: Sequence[tuple[str, str]],
    task: str = "asymmetric",
    *,
    dist: Distributed,
    cache: str | None = None,
    batch_size: int = 32,
    return_features: bool = False,
    show_progress_bar: bool | None = None,
) -> TeacherOutput:
    """Score ``pairs`` like :meth:`Teacher.score`, shared out over the processes of ``dist`` (see the module docstring).

    Every rank calls it with the same pairs and the same teacher, and every rank gets all the scores back.

    Args:
        teacher: The teacher, loaded on ``dist.device``; load it without a cache (each rank writes its shard file,
            and only rank 0 opens the cache itself).
        pairs: ``(text_a, text_b)`` pairs, the same list on every rank.
        task: ``"asymmetric"`` or ``"symmetric"``.
        dist: This process's :class:`~d2llm_st.distributed.Distributed` (:func:`d2llm_st.distributed.setup`); one
            process scores everything into ``cache`` (merging shard files an interrupted multi-process run left).
        cache: The score cache file (default: the teacher's cache); required with several processes, in a folder
            that every rank sees.
        batch_size: Pairs per teacher forward pass.
        return_features: Also return (and cache) the teacher's final hidden states.
        show_progress_bar: Rank 0's progress bar over its share (default: when logging at INFO).

    Raises:
        DistributedError: the ranks hold different pairs or teachers, do not share the cache folder, or one of them
            died or is stuck.
    """
    if cache is None and teacher.cache is not None:
        cache = teacher.cache.path
    if not dist.is_distributed:
        if cache is None:
            return teacher.score(
                pairs, task, batch_size=batch_size, return_features=return_features, show_progress_bar=show_progress_bar
            )
        return _score_alone(teacher, pairs, task, cache, batch_size, return_features, show_progress_bar)
    if cache is None:
        raise UserError(
            f"Scoring with {dist.world_size} processes needs a score cache file (--cache) in a folder that every "
            "process sees: the ranks' scores are merged there."
        )
    cache = os.path.abspath(cache)
    pairs = check_pairs(pairs)
    template_key = teacher.template_key(check_task(task))
    keys = [cache_key(teacher.identity, template_key, a, b) for a, b in pairs]
    pair_of = dict(zip(keys, pairs))
    distinct = list(pair_of)
    dist.check_same(
        digest(keys),
        "the teacher and the pairs to score",
        "Every process must load the same teacher (weights, dtype, template) and read the same data (the same "
        "file, --limit and --seed).",
    )
    dist.check_shared_folder(shard_folder(cache), "The score cache folder")
    todo = dist.on_main("read the score cache", lambda: _unscored(cache, distinct, return_features))
    mine = [distinct[i] for i in dist.shard(todo)]
    logger.info(f"Rank {dist.rank} of {dist.world_size} scores {len(mine)} of the {len(todo)} pairs left")
    if mine:
        previous, shard = teacher.cache, ScoreCache(shard_path(cache, dist.rank), journal_mode="DELETE")
        teacher.cache = shard
        try:
            teacher.score(
                [pair_of[key] for key in mine],
                task,
                batch_size=batch_size,
                return_features=return_features,
                show_progress_bar=show_progress_bar if dist.is_main else False,
            )
        finally:
            teacher.cache = previous
            shard.close()
    dist.barrier("finish teacher scoring (the ranks wait for the slowest one)")
    scores, features = dist.on_main(
        "merge the teacher scores", lambda: _merged_results(cache, distinct, return_features)
    )
    row = {key: i for i, key in enumerate(distinct)}
    order = [row[key] for key in keys]
    return TeacherOutput(scores=scores[order], features=None if features is None else features[order])


def _score_alone(
    teacher: Teacher,
    pairs: Sequence[tuple[str, str]],
    task: str,
    cache: str,
    batch_size: int,
    return_features: bool,
    show_progress_bar: bool | None,
) -> TeacherOutput:
    """One process: :meth:`Teacher.score` on ``cache``, after merging the shard files an interrupted run left."""
    store = teacher.cache if teacher.cache is not None and teacher.cache.path == os.path.abspath(cache) else None
    previous, teacher.cache = teacher.cache, store or ScoreCache(cache)
    try:
        merged = merge_shards(teacher.cache)
        if merged:
            logger.info(f"Merged {merged} scores from the shard files of an interrupted multi-process run")
        return teacher.score(
            pairs, task, batch_size=batch_size, return_features=return_features, show_progress_bar=show_progress_bar
        )
    finally:
        if store is None:
            teacher.cache.close()
        teacher.cache = previous


class ShardedTeacher:
    """A teacher whose :meth:`score` is :func:`score_sharded` over the processes of ``dist``, into ``cache``.

    What ``d2llm distill`` hands the training-data builders (:func:`d2llm_st.data.build_distillation_dataset` calls
    ``teacher.score``): with several processes each distinct pair is scored once, by one of them, and every process
    gets all the scores; with one process it is ``teacher.score`` on ``cache``, after merging the shard files that
    an interrupted multi-process run left. Every other attribute is the teacher's.

    Args:
        teacher: The teacher; with several processes, loaded without a cache (see :func:`score_sharded`).
        dist: This process's :class:`~d2llm_st.distributed.Distributed`.
        cache: The score cache file (``None``: the teacher's own cache, or none with one process).
    """

    def __init__(self, teacher: Teacher, dist: Distributed, cache: str | None = None) -> None:
        self.teacher, self.dist, self.cache_path = teacher, dist, cache

    def score(
        self,
        pairs: Sequence[tuple[str, str]],
        task: str = "asymmetric",
        batch_size: int = 32,
        return_features: bool = False,
        return_attention: bool = False,
        show_progress_bar: bool | None = None,
    ) -> TeacherOutput:
        """:meth:`Teacher.score`, shared out; attention maps (never cached) are computed by the calling process."""
        if return_attention:
            return self.teacher.score(
                pairs, task, batch_size, return_features, return_attention=True, show_progress_bar=show_progress_bar
            )
        return score_sharded(
            self.teacher,
            pairs,
            task,
            dist=self.dist,
            cache=self.cache_path,
            batch_size=batch_size,
            return_features=return_features,
            show_progress_bar=show_progress_bar,
        )

    def __getattr__(self, name: str):
        return getattr(self.teacher, name)

    def __repr__(self) -> str:
        return f"ShardedTeacher({self.teacher!r}, {self.dist!r}, cache={self.cache_path!r})"
