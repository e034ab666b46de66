"""Evaluation: metrics as plain functions, and IEM-aware evaluators that also measure baselines.

Every evaluator follows sentence-transformers' evaluator contract (``SentenceTransformerTrainer(evaluator=...)``
works with a D2LLM) and accepts a D2LLM (IEM scores), a bi-encoder (cosine), a ``CrossEncoder`` or a teacher,
so all of them are measured by the same code and the same metric functions. :func:`build_evaluator` is the one way
to build one from an eval set type and its data (``d2llm eval``, ``d2llm distill`` and the benchmarks use it), and
:func:`headline_metric` names the figure each result is reported by: the evaluator's own ``primary_metric``.
"""

from d2llm_st.evaluation.binary_classification import IEMBinaryClassificationEvaluator
from d2llm_st.evaluation.factory import EVALUATOR_CLASSES, build_evaluator, evaluate, headline_metric, pairs_file
from d2llm_st.evaluation.information_retrieval import IEMInformationRetrievalEvaluator
from d2llm_st.evaluation.metrics import binary_classification, correlation, ranking
from d2llm_st.evaluation.reranking import IEMRerankingEvaluator
from d2llm_st.evaluation.scorers import (
    BiEncoderScorer,
    CrossEncoderScorer,
    D2LLMScorer,
    EmbeddingScorer,
    Scorer,
    TeacherScorer,
    as_scorer,
    detect_model_type,
    load_scorer,
)
from d2llm_st.evaluation.similarity import IEMSimilarityEvaluator

__all__ = [
    "EVALUATOR_CLASSES",
    "BiEncoderScorer",
    "CrossEncoderScorer",
    "D2LLMScorer",
    "EmbeddingScorer",
    "IEMBinaryClassificationEvaluator",
    "IEMInformationRetrievalEvaluator",
    "IEMRerankingEvaluator",
    "IEMSimilarityEvaluator",
    "Scorer",
    "TeacherScorer",
    "as_scorer",
    "binary_classification",
    "build_evaluator",
    "correlation",
    "detect_model_type",
    "evaluate",
    "headline_metric",
    "load_scorer",
    "pairs_file",
    "ranking",
]
