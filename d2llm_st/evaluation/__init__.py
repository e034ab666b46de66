"""Evaluation: metrics as plain functions, and IEM-aware evaluators."""

from d2llm_st.evaluation.metrics import binary_classification, correlation, ranking

__all__ = ["binary_classification", "correlation", "ranking"]
