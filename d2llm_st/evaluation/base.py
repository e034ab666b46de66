"""What the pair evaluators share: the sentence-transformers evaluator contract, CSV logs, subsets."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from d2llm_st.data.sampling import subsample
from d2llm_st.evaluation.scorers import Scorer, as_scorer

logger = logging.getLogger(__name__)

T = TypeVar("T")


def evaluation_subset(items: Sequence[T], limit: int | None, what: str) -> list[T]:
    """The evaluated subset: :func:`~d2llm_st.data.sampling.subsample` with seed 0 (a fixed random subset in the
    original order; data files are often sorted, STS-B test by genre, so the first rows would bias the figure),
    with a warning that the figure is not the full set's."""
    kept = subsample(items, limit, seed=0, what=what)
    if len(kept) < len(items):
        logger.warning(
            f"Evaluating on {len(kept)} of {len(items)} {what} (a fixed random subset): not the full-set figure."
        )
    return kept


class PairEvaluator(BaseEvaluator):
    """Base of the D2LLM evaluators: ``__call__(model, output_path, epoch, steps) -> dict`` as in sentence-transformers.

    ``model`` may be a :class:`~d2llm_st.D2LLM` (scored by its IEM; what ``SentenceTransformerTrainer`` passes
    during training), a bi-encoder (cosine), a ``CrossEncoder``, a teacher, or a
    :class:`~d2llm_st.evaluation.scorers.Scorer`, so every model is measured by the same code.
    """

    csv_name = "evaluation"
    PRIMARY_METRIC: str
    """The (unprefixed) name of the metric an evaluator of this class leads with by default: its
    ``primary_metric``, and the headline figure of d2llm's tables, cards and CLI output."""

    def __init__(self, name: str = "", batch_size: int = 32, show_progress_bar: bool | None = None, write_csv=True):
        super().__init__()
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.write_csv = write_csv

    @property
    def headline_metric(self) -> str:
        """:attr:`primary_metric` without the name prefix sentence-transformers adds to it after a call."""
        prefix = f"{self.name}_" if self.name else ""
        return self.primary_metric.removeprefix(prefix) if prefix else self.primary_metric

    def scorer(self, model: Any) -> Scorer:
        return as_scorer(model, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar)

    @property
    def csv_file(self) -> str:
        return f"{self.csv_name}{'_' + self.name if self.name else ''}_results.csv"

    def finish(
        self, model: Any, metrics: dict[str, float], output_path: str | None, epoch: int, steps: int
    ) -> dict[str, float]:
        """Log, append to the CSV log, prefix with the name and record in the model card, like ST's evaluators."""
        where = "" if epoch == -1 else f" after epoch {epoch}" + ("" if steps == -1 else f", step {steps}")
        summary = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items())
        logger.info(f"{type(self).__name__}{' ' + self.name if self.name else ''}{where}: {summary}")
        if output_path is not None and self.write_csv:
            os.makedirs(output_path, exist_ok=True)
            path = os.path.join(output_path, self.csv_file)
            new_file = not os.path.isfile(path)
            with open(path, "a", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                if new_file:
                    writer.writerow(["epoch", "steps", *metrics])
                writer.writerow([epoch, steps, *metrics.values()])
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        if hasattr(model, "model_card_data"):
            self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics
