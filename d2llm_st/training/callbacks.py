"""Trainer callbacks for D2LLM distillation."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping

import numpy as np
from transformers import TrainerCallback

from d2llm_st.losses import D2LLMDistillLoss

logger = logging.getLogger(__name__)


class FalseNegativeFilterCallback(TrainerCallback):
    """Re-estimate the false-negative filters' thresholds during training (MD2PR's dynamic filtering).

    Every :class:`~d2llm_st.losses.D2LLMDistillLoss` records the teacher scores of the positives it trains
    on; at each epoch end (or every ``every_n_steps`` optimizer steps) this callback hands the scores seen
    since the last update to ``filter.update(positive_scores)`` and logs the new threshold. Give each dataset
    its own filter (teacher scores of different tasks are not on one scale); losses that share a filter
    update it together.

    Args:
        losses: The distillation losses by dataset name (e.g. the trainer's loss dict).
        every_n_steps: Update period in steps; ``None`` updates at the end of each epoch.
    """

    STATE_NAME = "false_negative_filter.json"

    def __init__(self, losses: Mapping[str, D2LLMDistillLoss], every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}.")
        groups: dict[int, dict[str, D2LLMDistillLoss]] = {}
        for name, loss in losses.items():
            if loss.false_negative_filter is not None:
                groups.setdefault(id(loss.false_negative_filter), {})[name] = loss
        self.groups = {"+".join(group): list(group.values()) for group in groups.values()}
        """Filter name (the dataset names joined by ``+``) -> the losses sharing that filter."""
        self.every_n_steps = every_n_steps
        self.history: dict[str, list[tuple[int, float]]] = {name: [] for name in self.groups}
        """Per filter, ``(global step, threshold)`` after each update."""

    def update(self, step: int) -> None:
        """Update every filter from the positive scores its losses saw since the last update."""
        for name, losses in self.groups.items():
            scores = [batch for loss in losses for batch in loss.observed_positive_scores]
            if not scores:
                continue
            theta = float(losses[0].false_negative_filter.update(np.concatenate(scores)))
            for loss in losses:
                loss.observed_positive_scores.clear()
            self.history[name].append((step, theta))
            logger.info(f"False-negative threshold of {name} at step {step}: {theta:.4f} ({len(scores)} batches)")

    def save_state(self, folder: str) -> None:
        """Write the filters' thresholds and the update history into ``folder`` (a checkpoint)."""
        state = {
            name: {"theta": losses[0].false_negative_filter.theta, "history": self.history[name]}
            for name, losses in self.groups.items()
        }
        with open(os.path.join(folder, self.STATE_NAME), "w", encoding="utf-8") as f:
            json.dump(state, f)

    def load_state(self, folder: str) -> None:
        """Restore what :meth:`save_state` wrote (a checkpoint without the file leaves the filters as they are)."""
        path = os.path.join(folder, self.STATE_NAME)
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        for name, losses in self.groups.items():
            if name in state:
                losses[0].false_negative_filter.theta = state[name]["theta"]
                self.history[name] = [tuple(item) for item in state[name]["history"]]

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
