"""MD2PR's dynamic false-negative filtering.

A mined "negative" that the teacher scores like a positive is probably an unlabelled positive;
training the student to push it down teaches it the wrong thing. The filter flags negatives whose
teacher score exceeds a threshold ``theta_t``, and re-estimates ``theta_t`` during training from the
current distribution of the positives' scores (a quantile of a sliding window), so the cut follows
what "positive-like" means for the data seen so far.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

logger = logging.getLogger(__name__)

MODES = ("drop", "to_positive")


class DynamicFalseNegativeFilter:
    """Flag negatives scored above ``theta_t = quantile_q(recent positive scores) + margin``.

    Args:
        mode: ``"drop"`` removes flagged negatives from the loss; ``"to_positive"`` counts them as positives.
        quantile: Which quantile of the positives' scores sets the threshold (0.5 = median).
        margin: Added to the quantile (e.g. ``0.05`` to flag only clearly positive-looking negatives).
        window: How many recent positive scores the estimate uses (``None`` = all seen since the last update).
        theta: Initial threshold; ``None`` flags nothing until the first :meth:`update`.
    """

    def __init__(
        self,
        mode: str = "drop",
        quantile: float = 0.5,
        margin: float = 0.0,
        window: int | None = 4096,
        theta: float | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}.")
        self.mode = mode
        self.quantile = quantile
        self.margin = margin
        self.theta = theta
        self.recent: deque[float] = deque(maxlen=window)
        self.flagged = 0
        self.seen = 0

    def update(self, positive_scores: np.ndarray) -> float | None:
        """Re-estimate ``theta`` from the latest positive scores; log it and what was flagged since last time."""
        scores = np.asarray(positive_scores, dtype=float).ravel()
        if self.recent.maxlen is None:
            self.recent.clear()
        self.recent.extend(scores.tolist())
        if self.recent:
            self.theta = float(np.quantile(np.fromiter(self.recent, float), self.quantile) + self.margin)
        logger.info(
            f"false-negative filter: theta_t={self.theta:.4f} from {len(self.recent)} positive scores; "
            f"flagged {self.flagged} of {self.seen} negatives since the last update (mode={self.mode})"
        )
        self.flagged = self.seen = 0
        return self.theta

    def mask(self, negative_scores: np.ndarray) -> np.ndarray:
        """Boolean array, same shape as ``negative_scores``: ``True`` for a (probable) false negative."""
        scores = np.asarray(negative_scores, dtype=float)
        flags = np.zeros(scores.shape, dtype=bool) if self.theta is None else scores > self.theta
        self.flagged += int(flags.sum())
        self.seen += int(flags.size)
        return flags
