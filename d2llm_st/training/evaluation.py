"""The evaluation step of a distillation run: the config's eval sets as :mod:`d2llm_st.evaluation` evaluators.

The evaluators score a D2LLM with its IEM and a plain bi-encoder (the MNRL baseline) with cosine, so the
student, the baseline and the untrained student are measured by the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from d2llm_st.evaluation import IEMBinaryClassificationEvaluator, IEMRerankingEvaluator, IEMSimilarityEvaluator
from d2llm_st.training.config import EvalSetConfig

logger = logging.getLogger(__name__)

HEADLINE_METRICS = {"sts": "spearman", "nli": "auc", "answer_selection": "ndcg@10"}
"""The figure each eval set type is reported by: STS Spearman, NLI AUC, answer selection NDCG@10."""


def build_evaluator(config: EvalSetConfig, batch_size: int = 32) -> BaseEvaluator:
    """The evaluator of one eval set (``limit`` keeps a fixed random subset of pairs / questions)."""
    kwargs = dict(name=config.name, batch_size=batch_size, show_progress_bar=False)
    if config.type == "sts":
        return IEMSimilarityEvaluator.from_file(config.path, limit=config.limit, **kwargs)
    if config.type == "nli":
        return IEMBinaryClassificationEvaluator.from_nli_file(config.path, limit=config.limit, **kwargs)
    if config.type == "answer_selection":
        return IEMRerankingEvaluator.from_beir(config.path, split=config.split, limit=config.limit, **kwargs)
    raise ValueError(f"Unknown evaluation set type {config.type!r}.")


def evaluate(model: Any, evaluators: Sequence[BaseEvaluator]) -> dict[str, dict[str, float]]:
    """``{set name: {metric: value}}``: a D2LLM is scored by its IEM, any other bi-encoder by cosine."""
    results = {}
    for evaluator in evaluators:
        prefix = f"{evaluator.name}_"
        metrics = evaluator(model)
        results[evaluator.name] = {key.removeprefix(prefix): float(value) for key, value in metrics.items()}
    return results
