"""Evaluation: metrics as plain functions, and IEM-aware evaluators that also measure baselines.

Every evaluator follows sentence-transformers' evaluator contract (``SentenceTransformerTrainer(evaluator=...)``
works with a D2LLM) and accepts a D2LLM (IEM scores), a bi-encoder (cosine), a ``CrossEncoder`` or a teacher,
so all of them are measured by the same code and the same metric functions.
"""

from d2llm_st.evaluation.binary_classification import IEMBinaryClassificationEvaluator
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
    "correlation",
    "detect_model_type",
    "load_scorer",
    "ranking",
]
