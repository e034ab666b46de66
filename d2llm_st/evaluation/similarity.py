"""STS evaluation: how well pair scores correlate with graded human similarity judgements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from d2llm_st.data.readers import read_sts
from d2llm_st.evaluation.base import PairEvaluator, evaluation_subset
from d2llm_st.evaluation.metrics import correlation
from d2llm_st.tasks import Task, check_task


class IEMSimilarityEvaluator(PairEvaluator):
    """Spearman and Pearson correlation of pair scores with gold similarity scores (STS-B, SICK-R).

    The IEM counterpart of sentence-transformers' ``EmbeddingSimilarityEvaluator``: a D2LLM is scored with its
    symmetric IEM branch (order-insensitive) instead of cosine. Other models are scored their own way (see
    :class:`~d2llm_st.evaluation.base.PairEvaluator`). The primary metric is ``spearman``.

    Args:
        sentences1, sentences2: The two sides of each pair.
        scores: Gold similarity per pair (any scale; correlation ignores it).
        task: ``"symmetric"`` (default, as in D2LLM) or ``"asymmetric"``.
        name: Prefix of the returned metric names (e.g. ``"stsb-test"``).

    Example::

        evaluator = IEMSimilarityEvaluator.from_file("data/sts/stsb/test.jsonl.gz", name="stsb-test")
        evaluator(d2llm_model)  # {"stsb-test_spearman": ..., "stsb-test_pearson": ...}
    """

    csv_name = "iem_similarity_evaluation"
    PRIMARY_METRIC = "spearman"

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        scores: Sequence[float],
        task: Task = "symmetric",
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        write_csv: bool = True,
    ) -> None:
        super().__init__(name, batch_size, show_progress_bar, write_csv)
        if not len(sentences1) == len(sentences2) == len(scores) or not len(scores):
            raise ValueError(
                f"sentences1, sentences2 and scores must be non-empty and of equal length, got {len(sentences1)}, "
                f"{len(sentences2)} and {len(scores)}."
            )
        self.pairs = list(zip(sentences1, sentences2))
        self.gold = [float(score) for score in scores]
        self.task = check_task(task)
        self.primary_metric = self.PRIMARY_METRIC

    @classmethod
    def from_file(cls, path: str, limit: int | None = None, **kwargs: Any) -> IEMSimilarityEvaluator:
        """From an STS file (``sentence1``, ``sentence2``, ``score``); ``limit`` keeps a fixed random subset."""
        rows = evaluation_subset(read_sts(path), limit, "pairs")
        return cls([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [r["score"] for r in rows], **kwargs)

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict:
        scores = self.scorer(model).score_pairs(self.pairs, self.task)
        return self.finish(model, correlation(scores, self.gold), output_path, epoch, steps)

    @property
    def description(self) -> str:
        return "Semantic Similarity (IEM)"

    def get_config_dict(self) -> dict[str, Any]:
        return {"task": self.task}
