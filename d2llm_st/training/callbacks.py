"""Trainer callbacks for D2LLM distillation."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable

import numpy as np
from transformers import TrainerCallback

from d2llm_st.losses import D2LLMDistillLoss

logger = logging.getLogger(__name__)


class FalseNegativeFilterCallback(TrainerCallback):
    """Re-estimate each false-negative filter's threshold during training (MD2PR's dynamic filtering).

    Every :class:`~d2llm_st.losses.D2LLMDistillLoss` records the teacher scores of the positives it trains
    on; at each epoch end (or every ``every_n_steps`` optimizer steps) this callback hands the scores seen
    since the last update to ``filter.update(positive_scores)`` and logs the new threshold. Losses that
    share one filter update it together.

    Args:
        losses: The distillation losses (e.g. ``trainer.loss.values()``).
        every_n_steps: Update period in steps; ``None`` updates at the end of each epoch.
    """

    def __init__(self, losses: Iterable[D2LLMDistillLoss], every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}.")
        self.losses = [loss for loss in losses if loss.false_negative_filter is not None]
        self.every_n_steps = every_n_steps
        self.history: list[tuple[int, float]] = []
        """``(global step, threshold)`` after each update."""

    STATE_NAME = "false_negative_filter.json"

    def _groups(self) -> list[list[D2LLMDistillLoss]]:
        """The losses grouped by the filter they share, in order of first appearance."""
        by_filter: dict[int, list[D2LLMDistillLoss]] = {}
        for loss in self.losses:
            by_filter.setdefault(id(loss.false_negative_filter), []).append(loss)
        return list(by_filter.values())

    def update(self, step: int) -> None:
        """Update every filter from the positive scores its losses saw since the last update."""
        for losses in self._groups():
            scores = [batch for loss in losses for batch in loss.observed_positive_scores]
            if not scores:
                continue
            theta = float(losses[0].false_negative_filter.update(np.concatenate(scores)))
            for loss in losses:
                loss.observed_positive_scores.clear()
            self.history.append((step, theta))
            logger.info(f"False-negative filter threshold at step {step}: {theta:.4f} (from {len(scores)} batches)")

    def save_state(self, folder: str) -> None:
        """Write the filters' thresholds and the update history into ``folder`` (a checkpoint)."""
        thetas = [getattr(losses[0].false_negative_filter, "theta", None) for losses in self._groups()]
        with open(os.path.join(folder, self.STATE_NAME), "w", encoding="utf-8") as f:
            json.dump({"thetas": thetas, "history": self.history}, f)

    def load_state(self, folder: str) -> None:
        """Restore what :meth:`save_state` wrote (a checkpoint without the file leaves the filters as they are)."""
        path = os.path.join(folder, self.STATE_NAME)
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        for losses, theta in zip(self._groups(), state["thetas"]):
            if theta is not None:
                losses[0].false_negative_filter.theta = theta
        self.history = [tuple(item) for item in state["history"]]

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            self.save_state(folder)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self.update(state.global_step)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.every_n_steps is None:
            self.update(state.global_step)
