"""What a distillation run tells the model card: the distillation fields of ``D2LLMModelCardData``.

sentence-transformers' card already states the architecture, usage, training arguments and loss configs; a run
adds what it alone knows (which teacher was distilled, from which data, with which D2LLM loss terms and
false-negative thresholds, and the evaluation scores of the saved model) as card fields, which the card template
renders when the model is saved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from d2llm_st.evaluation.factory import headline_metric
from d2llm_st.model_card import D2LLMModelCardData
from d2llm_st.training.config import DistillConfig


def record_distillation(
    card_data: D2LLMModelCardData,
    config: DistillConfig,
    *,
    teacher: str | None,
    teacher_identity: str | None,
    dataset_rows: Mapping[str, int],
    scores: Mapping[str, Mapping[str, float]],
    steps: int,
    thresholds: Mapping[str, float] | None = None,
    primary_metrics: Mapping[str, str] | None = None,
    processes: int = 1,
) -> None:
    """Fill the distillation fields of ``card_data`` (a model's ``model_card_data``) from a finished run.

    Args:
        card_data: The model's card data.
        config: The run's config.
        teacher: The teacher's name (``teacher.model``), when the run loaded it.
        teacher_identity: The teacher's score-cache identity (or the identities ``d2llm mine`` recorded with the
            rows the run read).
        dataset_rows: Training rows per dataset name.
        scores: ``{eval set name: {metric: value}}`` of the saved model.
        steps: Optimizer steps trained.
        thresholds: The last false-negative threshold of each filter (by filter name).
        primary_metrics: The ``primary_metric`` of each eval set's evaluator, the figure the card reports
            (default: the primary metric of the set type's evaluator class).
        processes: How many processes trained the model (DDP); the card mentions it when more than one.
    """
    if not isinstance(card_data, D2LLMModelCardData):
        raise TypeError(f"The model's card data is a {type(card_data).__name__}, not a D2LLMModelCardData.")
    distilling = config.mode == "distill"
    card_data.distillation_mode = config.mode
    card_data.teacher = teacher if distilling else None
    card_data.teacher_identity = teacher_identity if distilling else None
    card_data.student_backbone = config.student.model_name_or_path
    card_data.student_lora_r = config.student.lora_r
    card_data.training_steps = steps
    card_data.training_processes = processes if processes > 1 else None
    card_data.distillation_datasets = [
        {
            "name": dataset.name,
            "type": dataset.type,
            "task": dataset.task,
            "split": dataset.split,
            "rows": dataset_rows.get(dataset.name, "?"),
            "num_negatives": dataset.num_negatives,
        }
        for dataset in config.datasets
    ]
    card_data.distillation_losses = dataclasses.asdict(config.loss) if distilling else None
    filtering = distilling and config.false_negatives.enabled
    card_data.false_negative_filter = (
        {"mode": config.false_negatives.mode, "thresholds": dict(thresholds or {})} if filtering else None
    )
    card_data.distillation_scores = headline_scores(config, scores, primary_metrics)


def headline_scores(
    config: DistillConfig,
    scores: Mapping[str, Mapping[str, float]],
    primary_metrics: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``[{name, split, type, metric, value}]``: each eval set's headline figure, its evaluator's primary metric
    (``primary_metrics`` by set name, else the set type's default, :func:`~d2llm_st.evaluation.headline_metric`)."""
    rows = []
    for eval_set in config.evaluation.sets:
        metric = (primary_metrics or {}).get(eval_set.name) or headline_metric(eval_set.type)
        value = scores.get(eval_set.name, {}).get(metric)
        if value is not None:
            rows.append(
                {
                    "name": eval_set.name,
                    "split": eval_set.split,
                    "type": eval_set.type,
                    "metric": metric,
                    "value": value,
                }
            )
    return rows
