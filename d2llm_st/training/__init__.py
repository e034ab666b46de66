"""Training D2LLM students: run configs, the distillation pipeline, the collator, the filter and the card fields.

- :class:`DistillConfig` (config.py): a whole run, round-tripping to YAML / JSON; its sections are the
  constructors' own arguments.
- :func:`distill` (distill.py): teacher scores -> training -> evaluation -> saved model (``d2llm distill``), and
  the pieces it is built from (:func:`build_student`, :func:`build_baseline`, :func:`load_teacher_from_config`,
  :func:`build_training_datasets`, :func:`training_arguments`).
- :class:`D2LLMDataCollator` (collator.py) with :class:`WordAlignment` (word_alignment.py): the word-level
  alignment, prepared once per batch.
- :class:`DynamicFalseNegativeFilter` and :class:`FalseNegativeFilterCallback` (false_negatives.py): the
  false-negative filter, its state and its trainer callback.
- :func:`record_distillation` (model_card.py): the distillation facts as model card fields.

The exports load on first use, so reading a config (``d2llm_st.training.config``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from d2llm_st.training.collator import D2LLMDataCollator
    from d2llm_st.training.config import (
        BaselineConfig,
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
    from d2llm_st.training.distill import (
        DistillResult,
        build_baseline,
        build_student,
        build_training_dataset,
        build_training_datasets,
        distill,
        load_teacher_from_config,
        training_arguments,
    )
    from d2llm_st.training.false_negatives import DynamicFalseNegativeFilter, FalseNegativeFilterCallback
    from d2llm_st.training.model_card import record_distillation
    from d2llm_st.training.word_alignment import WordAlignment

_MODULES = {
    "collator": ["D2LLMDataCollator"],
    "config": [
        "BaselineConfig",
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
    "distill": [
        "DistillResult",
        "build_baseline",
        "build_student",
        "build_training_dataset",
        "build_training_datasets",
        "distill",
        "load_teacher_from_config",
        "training_arguments",
    ],
    "false_negatives": ["DynamicFalseNegativeFilter", "FalseNegativeFilterCallback"],
    "model_card": ["record_distillation"],
    "word_alignment": ["WordAlignment"],
}
_EXPORTS = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}
__all__ = [
    "BaselineConfig",
    "D2LLMDataCollator",
    "DatasetConfig",
    "DistillConfig",
    "DistillResult",
    "DynamicFalseNegativeFilter",
    "EvalSetConfig",
    "EvaluationConfig",
    "FalseNegativeConfig",
    "FalseNegativeFilterCallback",
    "LossConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrainingConfig",
    "WordAlignment",
    "build_baseline",
    "build_student",
    "build_training_dataset",
    "build_training_datasets",
    "distill",
    "load_teacher_from_config",
    "record_distillation",
    "training_arguments",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    # Every export of that module at once: importing d2llm_st.training.distill binds the package attribute
    # ``distill`` to the submodule, which must not hide the function of the same name.
    for export in _MODULES[module.__name__.rsplit(".", 1)[1]]:
        globals()[export] = getattr(module, export)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
