"""NLI evaluation: do pair scores separate entailment from contradiction?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from d2llm_st.data.readers import read_nli
from d2llm_st.evaluation.base import PairEvaluator, evaluation_subset
from d2llm_st.evaluation.metrics import binary_classification
from d2llm_st.tasks import Task, check_task


class IEMBinaryClassificationEvaluator(PairEvaluator):
    """ROC AUC, average precision and accuracy of pair scores for binary labels.

    The IEM counterpart of sentence-transformers' ``BinaryClassificationEvaluator``. For NLI,
    :meth:`from_nli_file` keeps entailment (1) and contradiction (0) pairs and drops neutral ones, as
    D2LLM's NLI evaluation does. The primary metric is ``auc`` (the NLI figure d2llm reports; sentence-transformers'
    evaluator leads with average precision, which is reported too).

    Args:
        sentences1, sentences2: The two sides of each pair (premise, hypothesis).
        labels: 1 (positive: entailment / paraphrase) or 0 per pair; both must occur.
        task: ``"symmetric"`` (default) or ``"asymmetric"``.
        name: Prefix of the returned metric names (e.g. ``"snli-test"``).
        threshold: A score threshold chosen elsewhere (e.g. the ``accuracy_threshold`` of a dev split): the
            result then also holds ``accuracy_at_threshold``, the accuracy of calling a pair positive when its
            score is ``>=`` it. ``accuracy`` is always the best accuracy over every threshold of these scores, and
            ``accuracy_threshold`` that threshold (see :func:`~d2llm_st.evaluation.metrics.binary_classification`).
    """

    csv_name = "iem_binary_classification_evaluation"
    PRIMARY_METRIC = "auc"

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        labels: Sequence[int],
        task: Task = "symmetric",
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        write_csv: bool = True,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, batch_size, show_progress_bar, write_csv)
        if not len(sentences1) == len(sentences2) == len(labels):
            raise ValueError(
                f"sentences1, sentences2 and labels must have equal length, got {len(sentences1)}, "
                f"{len(sentences2)} and {len(labels)}."
            )
        if set(labels) != {0, 1}:
            raise ValueError(f"labels must contain both 0 and 1 and nothing else, got {sorted(set(labels))}.")
        self.pairs = list(zip(sentences1, sentences2))
        self.labels = [int(label) for label in labels]
        self.task = check_task(task)
        self.threshold = None if threshold is None else float(threshold)
        self.primary_metric = self.PRIMARY_METRIC

    @classmethod
    def from_nli_file(cls, path: str, limit: int | None = None, **kwargs: Any) -> IEMBinaryClassificationEvaluator:
        """Entailment (1) vs contradiction (0) pairs of an NLI file; ``limit`` keeps a fixed random subset."""
        rows = [row for row in read_nli(path) if row["label"] != "neutral"]
        rows = evaluation_subset(rows, limit, "entailment/contradiction pairs")
        labels = [int(row["label"] == "entailment") for row in rows]
        return cls([r["premise"] for r in rows], [r["hypothesis"] for r in rows], labels, **kwargs)

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict:
        scores = self.scorer(model).score_pairs(self.pairs, self.task)
        return self.finish(model, binary_classification(scores, self.labels, self.threshold), output_path, epoch, steps)

    @property
    def description(self) -> str:
        return "Binary Classification (IEM)"

    def get_config_dict(self) -> dict[str, Any]:
        return {"task": self.task} if self.threshold is None else {"task": self.task, "threshold": self.threshold}
