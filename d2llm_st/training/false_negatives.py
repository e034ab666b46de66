"""MD2PR's dynamic false-negative filtering: the filter, its state and its trainer callback, in one place.

A mined "negative" that the teacher scores like a positive is probably an unlabelled positive; training the
student to push it down teaches it the wrong thing. :class:`DynamicFalseNegativeFilter` flags negatives whose
teacher score exceeds a threshold ``theta_t``, and re-estimates ``theta_t`` during training from the current
distribution of the positives' scores (a quantile of a sliding window), so the cut follows what
"positive-like" means for the data seen so far.

Who does what:

- the loss (:class:`~d2llm_st.losses.D2LLMDistillLoss`) asks the filter to :meth:`~DynamicFalseNegativeFilter.mask`
  a batch's hard negatives and hands it the batch's positive scores (:meth:`~DynamicFalseNegativeFilter.observe`);
- the filter keeps everything it knows: the threshold, the window of recent positive scores, the scores observed
  since its last update, the flag counts and the ``(step, threshold)`` history (:meth:`~DynamicFalseNegativeFilter.
  state_dict`);
- :class:`FalseNegativeFilterCallback` tells the filters when to update (every N optimizer steps or at each epoch
  end) and writes / reads their state in each trainer checkpoint, so a resumed run continues with the same window.

Under several processes (DDP) each process's losses observe only its own batches. Given the run's
:class:`~d2llm_st.distributed.Distributed`, the callback gathers the positive scores (and flag counts) that all
processes observed, in rank order, before each update, so every process computes the same threshold from the whole
global batch; before a checkpoint it moves them all to rank 0, which alone writes the state, and a resumed process
other than rank 0 starts from empty ones (as it had at that save).
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
from transformers import TrainerCallback

from d2llm_st.distributed import Distributed

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
        self.pending: list[np.ndarray] = []
        """Positive scores observed (:meth:`observe`) since the last :meth:`update`, one array per batch."""
        self.history: list[tuple[int, float]] = []
        """``(global step, threshold)`` after each update made with a step."""
        self.flagged = 0
        self.seen = 0

    def observe(self, positive_scores: np.ndarray) -> None:
        """Remember a batch's positive scores for the next :meth:`update`."""
        self.pending.append(np.asarray(positive_scores, dtype=float).ravel())

    def update(self, positive_scores: np.ndarray | None = None, step: int | None = None) -> float | None:
        """Re-estimate ``theta`` from ``positive_scores`` (default: the scores observed since the last update,
        which are then forgotten); log it and what was flagged since last time. With a ``step``, the new threshold
        is added to :attr:`history`."""
        if positive_scores is None:
            positive_scores = np.concatenate(self.pending) if self.pending else np.zeros(0)
            self.pending.clear()
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
        if step is not None and self.theta is not None:
            self.history.append((step, self.theta))
        return self.theta

    def mask(self, negative_scores: np.ndarray) -> np.ndarray:
        """Boolean array, same shape as ``negative_scores``: ``True`` for a (probable) false negative."""
        scores = np.asarray(negative_scores, dtype=float)
        flags = np.zeros(scores.shape, dtype=bool) if self.theta is None else scores > self.theta
        self.flagged += int(flags.sum())
        self.seen += int(flags.size)
        return flags

    def state_dict(self) -> dict[str, Any]:
        """Everything the filter has learnt, JSON-serialisable (what a checkpoint keeps)."""
        return {
            "theta": self.theta,
            "history": [list(item) for item in self.history],
            "recent": list(self.recent),
            "pending": [batch.tolist() for batch in self.pending],
            "flagged": self.flagged,
            "seen": self.seen,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave (keys missing from older checkpoints are left as they are)."""
        self.theta = state["theta"]
        self.history = [(int(step), float(theta)) for step, theta in state.get("history", [])]
        if "recent" in state:
            self.recent.clear()
            self.recent.extend(state["recent"])
        if "pending" in state:
            self.pending = [np.asarray(batch, dtype=float) for batch in state["pending"]]
        self.flagged, self.seen = state.get("flagged", self.flagged), state.get("seen", self.seen)

    def __repr__(self) -> str:
        return (
            f"DynamicFalseNegativeFilter(mode={self.mode!r}, quantile={self.quantile}, margin={self.margin}, "
            f"window={self.recent.maxlen}, theta={self.theta})"
        )


class FalseNegativeFilterCallback(TrainerCallback):
    """Update the false-negative filters during training and keep their state in every checkpoint.

    At each epoch end (or every ``every_n_steps`` optimizer steps) each filter re-estimates its threshold from the
    positive scores its losses observed since the last update. Give each dataset its own filter (teacher scores
    of different tasks are not on one scale); datasets that share one filter update it together, under the name
    of the datasets joined by ``+``.

    Args:
        filters: The filter of each dataset (``None`` for a dataset without one), e.g. from the losses:
            ``{name: loss.false_negative_filter for name, loss in losses.items()}``.
        every_n_steps: Update period in steps; ``None`` updates at the end of each epoch.
        dist: The run's processes (:func:`d2llm_st.distributed.setup`); ``None`` for one process.
    """

    STATE_NAME = "false_negative_filter.json"

    def __init__(
        self,
        filters: Mapping[str, DynamicFalseNegativeFilter | None],
        every_n_steps: int | None = None,
        dist: Distributed | None = None,
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}.")
        groups: dict[int, tuple[list[str], DynamicFalseNegativeFilter]] = {}
        for name, false_negative_filter in filters.items():
            if false_negative_filter is not None:
                groups.setdefault(id(false_negative_filter), ([], false_negative_filter))[0].append(name)
        self.filters = {"+".join(names): false_negative_filter for names, false_negative_filter in groups.values()}
        """Filter name (the dataset names joined by ``+``) -> the filter."""
        self.every_n_steps = every_n_steps
        self.dist = dist if dist is not None and dist.is_distributed else None

    def gather_observed(self, to_main: bool = False) -> None:
        """Several processes: give every filter the positive scores and flag counts that all processes observed since
        the last update, in rank order; with ``to_main``, rank 0 keeps them all and the other ranks none (what a
        checkpoint saves). One process: nothing to do."""
        if self.dist is None:
            return
        mine = {
            name: ([batch.tolist() for batch in item.pending], item.flagged, item.seen)
            for name, item in self.filters.items()
        }
        everyone = self.dist.all_gather(mine, "share the false-negative filters' positive scores")
        keep = self.dist.is_main or not to_main
        for name, false_negative_filter in self.filters.items():
            states = [state[name] for state in everyone]
            batches = [np.asarray(batch, dtype=float) for pending, _, _ in states for batch in pending]
            false_negative_filter.pending = batches if keep else []
            false_negative_filter.flagged = sum(state[1] for state in states) if keep else 0
            false_negative_filter.seen = sum(state[2] for state in states) if keep else 0

    @property
    def history(self) -> dict[str, list[tuple[int, float]]]:
        """Per filter, ``(global step, threshold)`` after each update."""
        return {name: false_negative_filter.history for name, false_negative_filter in self.filters.items()}

    def update(self, step: int) -> None:
        """Update every filter that observed positive scores since its last update (in any process)."""
        self.gather_observed()
        for name, false_negative_filter in self.filters.items():
            if not false_negative_filter.pending:
                continue
            batches = len(false_negative_filter.pending)
            theta = false_negative_filter.update(step=step)
            logger.info(f"False-negative threshold of {name} at step {step}: {theta:.4f} ({batches} batches)")

    def save_state(self, folder: str) -> None:
        """Write every filter's :meth:`~DynamicFalseNegativeFilter.state_dict` into ``folder`` (a checkpoint)."""
        state = {name: false_negative_filter.state_dict() for name, false_negative_filter in self.filters.items()}
        with open(os.path.join(folder, self.STATE_NAME), "w", encoding="utf-8") as f:
            json.dump(state, f)

    def load_state(self, folder: str) -> None:
        """Restore what :meth:`save_state` wrote (a checkpoint without the file leaves the filters as they are).

        Under several processes the file holds what all of them observed since the last update, kept by rank 0
        (:meth:`gather_observed`); the other ranks start with none, as they had when it was saved.
        """
        path = os.path.join(folder, self.STATE_NAME)
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        for name, false_negative_filter in self.filters.items():
            if name in state:
                false_negative_filter.load_state_dict(state[name])
                if self.dist is not None and not self.dist.is_main:
                    false_negative_filter.pending, false_negative_filter.flagged, false_negative_filter.seen = [], 0, 0

    def on_save(self, args, state, control, **kwargs):
        self.gather_observed(to_main=True)
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if (self.dist is None or self.dist.is_main) and os.path.isdir(folder):
            self.save_state(folder)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self.update(state.global_step)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.every_n_steps is None:
            self.update(state.global_step)
