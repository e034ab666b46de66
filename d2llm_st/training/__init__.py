"""Training D2LLM students: run configs, the distillation pipeline, the collator, callbacks and the card section.

- :class:`DistillConfig` (config.py): a whole run, round-tripping to YAML / JSON.
- :func:`distill` (distill.py): teacher scores -> training -> evaluation -> saved model (``d2llm distill``).
- :class:`D2LLMDataCollator` (collator.py): keeps the raw texts that word-level distillation needs.
- :class:`FalseNegativeFilterCallback` (callbacks.py): re-estimates the false-negative threshold.

The exports load on first use, so reading a config (``d2llm_st.training.config``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "callbacks": ["FalseNegativeFilterCallback"],
    "collator": ["D2LLMDataCollator"],
    "config": [
        "DatasetConfig",
        "DistillConfig",
        "EvalSetConfig",
        "EvaluationConfig",
        "FalseNegativeConfig",
        "LossConfig",
        "StudentConfig",
        "TeacherConfig",
        "TrainingConfig",
    ],
    "distill": ["DistillResult", "build_baseline", "build_student", "distill"],
}
_EXPORTS = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}
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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
