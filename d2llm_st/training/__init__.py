"""Training D2LLM students: run configs, the distillation pipeline, the collator, callbacks and the card section.

- :class:`DistillConfig` (config.py): a whole run, round-tripping to YAML / JSON.
- :func:`distill` (distill.py): teacher scores -> training -> evaluation -> saved model (``d2llm distill``).
- :class:`D2LLMDataCollator` (collator.py): keeps the raw texts that word-level distillation needs.
- :class:`FalseNegativeFilterCallback` (callbacks.py): re-estimates the false-negative threshold.
"""

from d2llm_st.training.callbacks import FalseNegativeFilterCallback
from d2llm_st.training.collator import D2LLMDataCollator
from d2llm_st.training.config import (
    DatasetConfig,
    DistillConfig,
    EvalSetConfig,
    EvaluationConfig,
    FalseNegativeConfig,
    LossConfig,
    StudentConfig,
    TeacherConfig,
    TrainingConfig,
)
from d2llm_st.training.distill import DistillResult, build_baseline, build_student, distill

__all__ = [
    "D2LLMDataCollator",
    "DatasetConfig",
    "DistillConfig",
    "DistillResult",
    "EvalSetConfig",
    "EvaluationConfig",
    "FalseNegativeConfig",
    "FalseNegativeFilterCallback",
    "LossConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrainingConfig",
    "build_baseline",
    "build_student",
    "distill",
]
