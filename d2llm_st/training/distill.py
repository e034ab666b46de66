"""The distillation pipeline behind ``d2llm distill``: teacher scores -> student training -> evaluation -> save.

:func:`distill` runs one :class:`~d2llm_st.training.config.DistillConfig`:

1. load the teacher and build each training set (``anchor, positive, negative_1..K, label``) with the
   teacher's scores (and features), cached on disk by the teacher's score cache;
2. build the student and one :class:`~d2llm_st.losses.D2LLMDistillLoss` per dataset (each dataset is one
   task, so each batch uses one IEM branch), and train them together with ``SentenceTransformerTrainer``
   (multi-dataset batch sampler), resuming from the newest checkpoint in the output folder if there is one
   (a checkpoint at the last step is loaded, not trained further);
3. evaluate on the configured sets (IEM scores) and save the model with its card and a ``results.json``.

``mode="baseline"`` trains the same backbone with mean pooling and ``MultipleNegativesRankingLoss`` on
the same rows for the same steps (cosine scores); ``mode="untrained"`` only evaluates the fresh student.

Before anything is built, :func:`~d2llm_st.training.runs.check_output_dir` decides what a previous run in the
output folder means: the same config resumes it (or reports it finished), another config is refused.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import transformers
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import BatchSamplers
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import get_last_checkpoint

from d2llm_st.errors import UserError
from d2llm_st.losses import D2LLMDistillLoss
from d2llm_st.model import D2LLM, PROMPT_NAMES
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.modules import LLMBackbone
from d2llm_st.training.callbacks import FalseNegativeFilterCallback
from d2llm_st.training.collator import D2LLMDataCollator
from d2llm_st.training.config import BASELINE_NEEDS_LORA, TEACHER_HINT, DatasetConfig, DistillConfig, StudentConfig
from d2llm_st.training.evaluation import build_evaluator, evaluate
from d2llm_st.training.model_card import DistillationCardData, add_card_section
from d2llm_st.training.runs import CONFIG_NAME, MODEL_DIR, RESULTS_NAME, check_output_dir
from d2llm_st.training.trainer import D2LLMTrainer

if TYPE_CHECKING:
    from datasets import Dataset

    from d2llm_st.teacher.base import Teacher

logger = logging.getLogger(__name__)


@dataclass
class DistillResult:
    """What a run produced: the saved model folder (``None`` for ``untrained``), the scores and the step count.

    ``already_finished`` marks a run that had finished in its output folder before: read back, not re-run.
    """

    output_dir: str
    model_dir: str | None
    scores: dict[str, dict[str, float]]
    steps: int
    train_metrics: dict[str, float] = field(default_factory=dict)
    already_finished: bool = False


def _model_kwargs(config: StudentConfig) -> dict[str, Any] | None:
    return {"dtype": getattr(torch, config.dtype)} if config.dtype else None


def build_student(config: StudentConfig) -> D2LLM:
    """A fresh D2LLM student from the config (PMA and IEM randomly initialised from the current seed)."""
    return D2LLM.from_llm(
        config.model,
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        lora_target_modules=config.lora_target_modules,
        pma_heads=config.pma_heads,
        pma_seeds=config.pma_seeds,
        pma_attention_scale=config.pma_attention_scale,
        iem_hidden_dim=config.iem_hidden_dim,
        iem_dropout=config.iem_dropout,
        iem_cosine_residual=config.iem_cosine_residual,
        iem_cosine_scale=config.iem_cosine_scale,
        max_seq_length=config.max_seq_length,
        bidirectional_from_layer=config.bidirectional_from_layer,
        query_prompt=config.query_prompt,
        passage_prompt=config.passage_prompt,
        symmetric_prompt=config.symmetric_prompt,
        model_kwargs=_model_kwargs(config),
    )


def build_baseline(config: StudentConfig) -> SentenceTransformer:
    """The comparison model: the student's backbone (same LoRA, prompts) with mean pooling instead of PMA + IEM."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    if config.lora_r is None:
        raise UserError(BASELINE_NEEDS_LORA)
    backbone = LLMBackbone(
        config.model,
        max_seq_length=config.max_seq_length,
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        lora_target_modules=config.lora_target_modules,
        bidirectional_from_layer=config.bidirectional_from_layer,
        model_kwargs=_model_kwargs(config),
    )
    prompts = {
        PROMPT_NAMES[role]: prompt
        for role, prompt in (
            ("query", config.query_prompt),
            ("passage", config.passage_prompt),
            ("symmetric", config.symmetric_prompt),
        )
        if prompt is not None
    }
    pooling = Pooling(backbone.get_embedding_dimension(), pooling_mode="mean")
    # encode() without a prompt name (how bi-encoders embed symmetric texts) then uses the symmetric prompt.
    default_prompt = PROMPT_NAMES["symmetric"] if PROMPT_NAMES["symmetric"] in prompts else None
    return SentenceTransformer(modules=[backbone, pooling], prompts=prompts, default_prompt_name=default_prompt)


def column_prompts(config: DistillConfig, columns: list[str], task: str) -> dict[str, str]:
    """The prompt of each text column: symmetric sets use the symmetric prompt everywhere; asymmetric sets the
    query prompt for the anchor and the passage prompt for the candidates (as ``D2LLM.predict`` does)."""
    student = config.student
    prompts = {}
    for column in columns:
        if column == "label":
            continue
        if task == "symmetric":
            prompt = student.symmetric_prompt
        else:
            prompt = student.query_prompt if column == "anchor" else student.passage_prompt
        if prompt is not None:
            prompts[column] = prompt
    return prompts


def load_teacher_from_config(config: DistillConfig):
    """The configured teacher, with its score cache in the output folder unless the config names one."""
    from d2llm_st.teacher import load_teacher

    teacher_config = config.teacher
    cache = teacher_config.cache or os.path.join(config.training.output_dir, "teacher_scores.sqlite")
    kwargs: dict[str, Any] = {"cache": cache}
    if teacher_config.max_length is not None:
        kwargs["max_length"] = teacher_config.max_length
    if teacher_config.dtype != "auto":
        kwargs["dtype"] = teacher_config.dtype
    try:
        return load_teacher(
            resolve_model_path(teacher_config.model, "teacher.model"), kind=teacher_config.kind, **kwargs
        )
    except (UserError, OSError) as error:  # a wrong name or folder; transformers says so with an OSError
        raise UserError(
            f"Could not load the teacher teacher.model={teacher_config.model!r}: {error} {TEACHER_HINT}"
        ) from error


def build_training_dataset(dataset: DatasetConfig, teacher: Teacher, with_features: bool, batch_size: int) -> Dataset:
    """One training set (anchor, positive, negative_1..K, label), built by ``d2llm_st.data``."""
    from d2llm_st.data import build_distillation_dataset

    return build_distillation_dataset(
        kind=dataset.type,
        path=dataset.path,
        split=dataset.split,
        teacher=teacher,
        num_negatives=dataset.num_negatives,
        limit=dataset.limit,
        return_features=with_features,
        batch_size=batch_size,
        **dataset.builder,
    )


def make_loss(model: D2LLM, config: DistillConfig, task: str, teacher: Teacher | None) -> D2LLMDistillLoss:
    """One dataset's :class:`D2LLMDistillLoss`, with its own false-negative filter (scores differ per task)."""
    loss = config.loss
    false_negative_filter = None
    if config.false_negatives.enabled:
        from d2llm_st.data.false_negatives import DynamicFalseNegativeFilter

        false_negative_filter = DynamicFalseNegativeFilter(
            mode=config.false_negatives.mode, **config.false_negatives.options
        )
    return D2LLMDistillLoss(
        model,
        task=task,
        alpha=loss.alpha,
        beta=loss.beta,
        gamma=loss.gamma,
        eta=loss.eta,
        temperature=loss.temperature,
        in_batch_temperature=loss.in_batch_temperature,
        in_batch_hard_negatives=loss.in_batch_hard_negatives,
        easy_negative_score=loss.easy_negative_score,
        false_negative_filter=false_negative_filter,
        teacher=teacher,
        word_level_weight=loss.word_level_weight,
        word_level_temperature=loss.word_level_temperature,
        train_backbone=loss.train_backbone,
    )


def _training_datasets(
    config: DistillConfig, train_datasets: dict[str, Dataset] | None, teacher: Teacher | None
) -> dict[str, Dataset]:
    """The given training sets (checked against the config), or the config's, built with the teacher."""
    if train_datasets is None:
        with_features = config.mode == "distill" and config.teacher.features and config.loss.eta > 0
        return {
            dataset.name: build_training_dataset(dataset, teacher, with_features, config.teacher.batch_size)
            for dataset in config.datasets
        }
    expected = [dataset.name for dataset in config.datasets]
    if sorted(train_datasets) != sorted(expected):
        raise ValueError(
            f"train_datasets has {sorted(train_datasets)} but config.datasets names {sorted(expected)}: each "
            "training set needs its config entry (it gives the task)."
        )
    return dict(train_datasets)


def mixed_precision(bf16: bool, fp16: bool) -> tuple[bool, bool]:
    """The trainer's ``(bf16, fp16)`` autocast flags where a CUDA device supports them, else off, with a warning.

    On the CPU these flags would autocast PMA, IEM and the loss too; there the backbone's bf16 comes from the
    CPU policy instead (:mod:`d2llm_st.runtime`: bf16 base weights and bf16 autocast in the backbone only).
    """
    cuda = torch.cuda.is_available()
    if bf16 and not (cuda and torch.cuda.is_bf16_supported()):
        logger.warning(
            "training.bf16 is for CUDA devices and none here supports bfloat16: trainer autocast off. On the CPU "
            "the LLM backbone follows the CPU dtype policy (D2LLM_CPU_DTYPE, docs/cpu.md)."
        )
        bf16 = False
    if fp16 and not cuda:
        logger.warning("training.fp16 is on but there is no CUDA device: training in float32.")
        fp16 = False
    return bf16, fp16


def training_arguments(
    config: DistillConfig, prompts: dict[str, dict[str, str]]
) -> SentenceTransformerTrainingArguments:
    training = config.training
    bf16, fp16 = mixed_precision(training.bf16, training.fp16)
    return SentenceTransformerTrainingArguments(
        output_dir=training.output_dir,
        max_steps=training.max_steps,
        num_train_epochs=training.num_train_epochs,
        per_device_train_batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        warmup_steps=training.warmup_ratio,  # a float below 1 is a fraction of the steps (transformers 5)
        weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm,
        bf16=bf16,
        fp16=fp16,
        gradient_checkpointing=training.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if training.gradient_checkpointing else None,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=training.save_total_limit,
        logging_steps=training.logging_steps,
        seed=training.seed,
        data_seed=training.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=training.multi_dataset_batch_sampler,
        prompts=prompts,
        report_to="none",
        eval_strategy="no",
        **training.extra,
    )


def distill(
    config: DistillConfig,
    train_datasets: dict[str, Dataset] | None = None,
    teacher: Teacher | None = None,
    resume: bool = True,
    overwrite: bool = False,
) -> DistillResult:
    """Run one distillation (or baseline / untrained evaluation) as configured; see the module docstring.

    Args:
        config: The run.
        train_datasets: Ready training sets by dataset name (rows ``anchor, positive, negative_1..K, label``),
            instead of building them from ``config.datasets`` with the teacher; the names must match
            ``config.datasets`` (which gives each set's task).
        teacher: A loaded teacher instead of ``config.teacher`` (used to build the data and for word-level
            distillation).
        resume: Continue this run from the newest checkpoint in ``training.output_dir`` (or read it back when it
            finished); ``False`` refuses a folder that already holds a run.
        overwrite: Delete a previous run in ``training.output_dir`` first (its teacher score cache is kept).

    Raises:
        UserError: the output folder holds a run with another config (or any run, with ``resume=False``); see
            :func:`~d2llm_st.training.runs.check_output_dir`.
    """
    output_dir = config.training.output_dir
    finished = check_output_dir(config, resume=resume, overwrite=overwrite)
    if finished is not None:
        logger.info(f"{output_dir} already holds this run, finished: nothing to train (--overwrite trains it again)")
        return DistillResult(
            output_dir,
            finished["model_dir"],
            finished["scores"],
            finished["steps"],
            finished.get("train_metrics", {}),
            already_finished=True,
        )
    config.check_inputs(build_data=train_datasets is None, load_teacher=teacher is None)
    os.makedirs(output_dir, exist_ok=True)
    config.save(os.path.join(output_dir, CONFIG_NAME))
    transformers.set_seed(config.training.seed)
    evaluators = [build_evaluator(eval_set, config.evaluation.batch_size) for eval_set in config.evaluation.sets]

    if config.mode == "untrained":
        model = build_student(config.student)
        scores = evaluate(model, evaluators)
        return _finish(config, DistillResult(output_dir, None, scores, steps=0))
    if not config.datasets:
        raise UserError("The config lists no training datasets; add at least one under 'datasets'.")

    distilling = config.mode == "distill"
    word_level = distilling and config.loss.word_level_weight > 0
    if teacher is None and (train_datasets is None or word_level):
        teacher = load_teacher_from_config(config)
    teacher_identity = teacher.identity if teacher is not None else None
    datasets = _training_datasets(config, train_datasets, teacher)
    tasks = {dataset.name: dataset.task for dataset in config.datasets}
    prompts = {name: column_prompts(config, datasets[name].column_names, tasks[name]) for name in datasets}

    transformers.set_seed(config.training.seed)
    callbacks = []
    if distilling:
        model = build_student(config.student)
        losses = {name: make_loss(model, config, tasks[name], teacher if word_level else None) for name in datasets}
        if config.false_negatives.enabled:
            callbacks.append(FalseNegativeFilterCallback(losses, config.false_negatives.update_every_steps))
    else:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        model = build_baseline(config.student)
        datasets = {name: dataset.remove_columns("label") for name, dataset in datasets.items()}
        losses = {name: MultipleNegativesRankingLoss(model, scale=config.loss.baseline_scale) for name in datasets}
    if not word_level:
        teacher = None  # scores are in the datasets; free the teacher's memory for training

    args = training_arguments(config, prompts)
    trainer = D2LLMTrainer(
        model=model,
        args=args,
        train_dataset=datasets,
        loss=losses,
        data_collator=D2LLMDataCollator(
            preprocess_fn=model.preprocess,
            prompts=args.prompts,
            text_columns=("anchor", "positive") if word_level else (),
        ),
        callbacks=callbacks,
    )
    steps, train_metrics = _train(trainer, output_dir, callbacks)

    scores = evaluate(model, evaluators)
    model_dir = os.path.join(output_dir, MODEL_DIR)
    model.save_pretrained(model_dir)
    card = DistillationCardData(
        config=config,
        teacher_identity=teacher_identity if distilling else None,
        dataset_rows={name: len(dataset) for name, dataset in datasets.items()},
        scores=scores,
        steps=steps,
        filter_history=callbacks[0].history if callbacks else {},
    )
    add_card_section(model_dir, card.to_markdown())
    return _finish(config, DistillResult(output_dir, model_dir, scores, steps, train_metrics))


def _train(
    trainer: D2LLMTrainer, output_dir: str, callbacks: list[FalseNegativeFilterCallback]
) -> tuple[int, dict[str, float]]:
    """Train, resuming from the newest checkpoint; ``(steps, train metrics)``.

    A checkpoint already at the run's last step (a kill during the final evaluation or save) is loaded, not
    resumed: the Trainer would run one more optimizer step before checking ``max_steps`` (it skips whole
    epochs on resume, but checks the step budget only after each step).
    """
    checkpoint = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if checkpoint:
        for callback in callbacks:
            callback.load_state(checkpoint)
        state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
        if 0 < state.max_steps <= state.global_step:
            logger.info(f"{checkpoint} is at the last step ({state.global_step}): loading it, not training further")
            trainer._load_from_checkpoint(checkpoint)  # the Trainer's own loader for its checkpoints
            return state.global_step, {}
        logger.info(f"Resuming from {checkpoint}")
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    return train_output.global_step, dict(train_output.metrics)


def _finish(config: DistillConfig, result: DistillResult) -> DistillResult:
    path = os.path.join(config.training.output_dir, RESULTS_NAME)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "mode": config.mode,
                "steps": result.steps,
                "scores": result.scores,
                "train_metrics": result.train_metrics,
                "model_dir": result.model_dir,
            },
            f,
            indent=2,
        )
    logger.info(f"Results written to {path}")
    return result
