"""The one seeded subsample: which rows a ``limit`` keeps, everywhere in d2llm.

Semantics: ``limit`` rows drawn uniformly at random without replacement by ``random.Random(seed)``, returned in
their original order. The draw is ``random.Random(seed).sample(range(len(items)), limit)``, which picks the same
positions as ``random.Random(seed).sample(items, limit)`` (Python's ``sample`` draws positions from the length
alone); keeping the original order means that the rows kept do not depend on how the caller orders them later,
and that a data file sorted by something (STS-B test by genre) is not read as its first rows.

Used by the evaluators' ``limit`` (pairs, questions, queries), the training data builder's ``limit``, the
labelled pairs of ``d2llm teacher-train`` / ``teacher-score`` / ``mine`` (``--limit``), the turning-point finder
and the benchmarks.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def subsample_indices(size: int, limit: int | None, *, seed: int = 0) -> list[int]:
    """Sorted positions of the rows :func:`subsample` keeps out of ``size`` (all of them when ``limit`` is
    ``None`` or at least ``size``).

    Raises:
        ValueError: ``limit`` is not a positive whole number (``None`` allowed).
    """
    if limit is None or limit >= size:
        return list(range(size))
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive number of rows (or None for all), got {limit!r}.")
    return sorted(random.Random(seed).sample(range(size), limit))


def subsample(items: Sequence[T], limit: int | None, *, seed: int = 0, what: str = "rows") -> list[T]:
    """``limit`` items drawn at random with a fixed seed, in their original order; all of them if ``limit`` is
    ``None`` or not below ``len(items)``. See the module docstring for the exact semantics.

    Args:
        items: Any sequence (a list of rows, pairs, ids ...).
        limit: How many to keep; ``None``: all.
        seed: The seed of the draw (the same seed and length always keep the same positions).
        what: What the items are, for the log line (e.g. ``"pairs"``).
    """
    items = list(items)
    keep = subsample_indices(len(items), limit, seed=seed)
    if len(keep) < len(items):
        logger.info(f"Using {len(keep)} of {len(items)} {what} (a seeded random subset, seed {seed})")
    return [items[i] for i in keep]
