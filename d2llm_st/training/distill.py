"""The distillation pipeline behind ``d2llm distill``: teacher scores -> student training -> evaluation -> save.

:func:`distill` runs one :class:`~d2llm_st.training.config.DistillConfig`:

1. load the teacher and build each training set (``anchor, positive, negative_1..K, label``) with the
   teacher's scores (and features), cached on disk by the teacher's score cache, or read rows that
   ``d2llm mine`` saved;
2. build the student (``D2LLM.from_llm(**student)``, which decides what trains) and one
   ``D2LLMDistillLoss(model, task, filter, **loss)`` per dataset (each dataset is one task, so each batch uses one
   IEM branch), and train them together with ``SentenceTransformerTrainer`` (``training`` section as its
   arguments, multi-dataset batch sampler, the word-level alignment prepared in the collator, the false-negative
   filters updated by their callback), resuming from the newest checkpoint in the output folder if there is one
   (a checkpoint at the last step is loaded, not trained further);
3. evaluate on the configured sets (:func:`d2llm_st.evaluation.build_evaluator`, IEM scores) and save the model
   with its card (the distillation facts are card fields) and a ``results.json``.

``mode="baseline"`` trains the same backbone with mean pooling and ``MultipleNegativesRankingLoss`` on
the same rows for the same steps (cosine scores); ``mode="untrained"`` only evaluates the fresh student.

Before anything is built, :func:`~d2llm_st.training.runs.check_output_dir` decides what a previous run in the
output folder means: the same config resumes it (or reports it finished), another config is refused.

Under ``torchrun`` / ``accelerate launch`` (``N`` processes, docs/scaling.md) the same function runs in every
process (:func:`d2llm_st.distributed.setup` joins them; without launch variables it is one process):

- rank 0 alone judges the output folder (which every process must see) and the newest checkpoint (resumed only
  with the same number of processes), writes the config, and tells the others;
- the teacher scores (and features) are shared out before training (:class:`~d2llm_st.teacher.sharded.ShardedTeacher`:
  each distinct pair scored once, by one process, into the one cache), and every process builds the same training
  rows from them (checked);
- every process trains on its share of each step's batches (DDP through the trainer, one dataset per step,
  :class:`~d2llm_st.training.trainer.D2LLMTrainer`); ``loss.gather_across_devices`` / ``baseline.gather_across_devices``
  score the in-batch candidates of all processes; the false-negative filters update from all processes' scores;
  rank 0 writes the checkpoints;
- rank 0 evaluates and saves the model, its card and ``results.json`` while the others wait, and every process
  returns the same :class:`DistillResult`.
"""

from __future__ import annotations

import dataclasses
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

from d2llm_st import distributed
from d2llm_st.distributed import Distributed, digest
from d2llm_st.errors import UserError
from d2llm_st.evaluation.factory import build_evaluator, evaluate, headline_metric
from d2llm_st.losses import D2LLMDistillLoss
from d2llm_st.model import D2LLM
from d2llm_st.model_card import D2LLMModelCardData
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.modules import LLMBackbone
from d2llm_st.tasks import column_role, prompt_name, role_prompts
from d2llm_st.teacher.sharded import ShardedTeacher
from d2llm_st.training.collator import D2LLMDataCollator
from d2llm_st.training.config import BASELINE_NEEDS_LORA, TEACHER_HINT, DatasetConfig, DistillConfig, StudentConfig
from d2llm_st.training.false_negatives import DynamicFalseNegativeFilter, FalseNegativeFilterCallback
from d2llm_st.training.model_card import record_distillation
from d2llm_st.training.runs import CHECKPOINT, CONFIG_NAME, MODEL_DIR, RESULTS_NAME, check_output_dir
from d2llm_st.training.trainer import D2LLMTrainer, checkpoint_world_size
from d2llm_st.training.word_alignment import WordAlignment

if TYPE_CHECKING:
    from datasets import Dataset

    from d2llm_st.teacher.base import Teacher

logger = logging.getLogger(__name__)


@dataclass
class DistillResult:
    """What a run produced: the saved model folder (``None`` for ``untrained``), the scores and the step count.

    ``already_finished`` marks a run that had finished in its output folder before: read back, not re-run.
    ``primary_metrics`` names each eval set's headline figure (its evaluator's ``primary_metric``).
    """

    output_dir: str
    model_dir: str | None
    scores: dict[str, dict[str, float]]
    steps: int
    train_metrics: dict[str, float] = field(default_factory=dict)
    already_finished: bool = False
    primary_metrics: dict[str, str] = field(default_factory=dict)


def build_student(config: StudentConfig) -> D2LLM:
    """A fresh D2LLM student, ``D2LLM.from_llm(**student)`` (PMA and IEM randomly initialised from the current seed).

    The section is the method's own keyword arguments; ``train_backbone`` decides what trains.
    """
    return D2LLM.from_llm(**dataclasses.asdict(config))


def build_baseline(config: StudentConfig) -> SentenceTransformer:
    """The comparison model: the student's backbone (same LoRA, prompts) with mean pooling instead of PMA + IEM."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    if config.lora_r is None and not config.train_backbone:
        raise UserError(BASELINE_NEEDS_LORA)
    backbone = LLMBackbone(
        config.model_name_or_path,
        max_seq_length=config.max_seq_length,
        padding_side=config.padding_side,
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        lora_target_modules=config.lora_target_modules,
        bidirectional_from_layer=config.bidirectional_from_layer,
        train_base_weights=config.train_backbone,
        model_kwargs=config.model_kwargs,
    )
    prompts = role_prompts(config.query_prompt, config.passage_prompt, config.symmetric_prompt)
    pooling = Pooling(backbone.get_embedding_dimension(), pooling_mode="mean")
    # encode() without a prompt name (how bi-encoders embed symmetric texts) then uses the symmetric prompt.
    symmetric = prompt_name("symmetric")
    return SentenceTransformer(
        modules=[backbone, pooling],
        prompts=prompts,
        default_prompt_name=symmetric if symmetric in prompts else None,
        device=config.device,
        model_card_data=D2LLMModelCardData(),
    )


def column_prompts(config: DistillConfig, columns: list[str], task: str) -> dict[str, str]:
    """The prompt of each text column, by its role (:func:`d2llm_st.tasks.column_role`): symmetric sets use the
    symmetric prompt everywhere; asymmetric sets the query prompt for the anchor and the passage prompt for the
    candidates (as ``D2LLM.predict`` does)."""
    student = config.student
    by_role = {"query": student.query_prompt, "passage": student.passage_prompt, "symmetric": student.symmetric_prompt}
    prompts = {}
    for column in columns:
        if column == "label":
            continue
        prompt = by_role[column_role(column, task)]
        if prompt is not None:
            prompts[column] = prompt
    return prompts


def teacher_cache_path(config: DistillConfig) -> str:
    """The run's teacher score cache: ``teacher.cache``, else ``teacher_scores.sqlite`` in the output folder."""
    return config.teacher.cache or os.path.join(config.training.output_dir, "teacher_scores.sqlite")


def load_teacher_from_config(config: DistillConfig, dist: Distributed | None = None) -> Teacher:
    """The configured teacher (``teacher`` section), with its score cache in the output folder unless the config
    names one (``teacher.cache``).

    Args:
        config: The run.
        dist: With several processes, the teacher is loaded on this process's device and without a cache (the
            processes score into shard files that rank 0 merges into the cache: :class:`ShardedTeacher`).

    Raises:
        UserError: the name does not resolve or the folder is not a teacher; the message says how to get one.
    """
    from d2llm_st.teacher import load_teacher

    teacher_config = config.teacher
    several = dist is not None and dist.is_distributed
    kwargs: dict[str, Any] = {"device": dist.device} if several else {"cache": teacher_cache_path(config)}
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


def build_training_dataset(
    dataset: DatasetConfig, teacher: Teacher | None, with_features: bool, batch_size: int
) -> Dataset:
    """One training set (``anchor, positive, negative_1..K, label``) of a config's ``datasets`` entry.

    A ``path`` that is a folder written by ``d2llm mine`` (:func:`~d2llm_st.data.is_distillation_rows`) is read
    as it is (its kind and ``num_negatives`` must match the entry; ``limit`` keeps a seeded subset); anything else is
    raw data, built and scored with ``teacher`` by :func:`~d2llm_st.data.build_distillation_dataset` (``builder``
    holds its further arguments).
    """
    from d2llm_st.data import build_distillation_dataset, is_distillation_rows, load_distillation_rows

    if is_distillation_rows(dataset.path):
        rows, _ = load_distillation_rows(
            dataset.path,
            kind=dataset.type,
            num_negatives=dataset.num_negatives,
            limit=dataset.limit,
            seed=dataset.builder.get("seed", 0),
        )
        return rows
    if teacher is None:
        raise ValueError(f"datasets entry {dataset.name!r} is raw data: building its rows needs a teacher.")
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


def wants_teacher_features(config: DistillConfig) -> bool:
    """Whether the training rows should carry teacher features (feature imitation is on)."""
    return config.mode == "distill" and config.teacher.features and config.loss.eta > 0


def build_training_datasets(config: DistillConfig, teacher: Teacher | None = None) -> dict[str, Dataset]:
    """Every training set of ``config.datasets`` by name (:func:`build_training_dataset`); ``teacher`` scores the
    raw ones (a benchmark can call this to fill the shared score cache first)."""
    return {
        dataset.name: build_training_dataset(
            dataset, teacher, wants_teacher_features(config), config.teacher.batch_size
        )
        for dataset in config.datasets
    }


def make_loss(model: D2LLM, config: DistillConfig, task: str) -> D2LLMDistillLoss:
    """One dataset's ``D2LLMDistillLoss(model, task=..., false_negative_filter=..., **loss)``, with its own filter
    (teacher scores of different tasks are not on one scale)."""
    false_negative_filter = None
    if config.false_negatives.enabled:
        false_negative_filter = DynamicFalseNegativeFilter(
            mode=config.false_negatives.mode, **config.false_negatives.options
        )
    return D2LLMDistillLoss(
        model, task=task, false_negative_filter=false_negative_filter, **dataclasses.asdict(config.loss)
    )


def _training_datasets(
    config: DistillConfig, train_datasets: dict[str, Dataset] | None, teacher: Teacher | None
) -> dict[str, Dataset]:
    """The given training sets (checked against the config), or the config's, built with the teacher."""
    if train_datasets is None:
        return build_training_datasets(config, teacher)
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
    """``SentenceTransformerTrainingArguments(**training)``: the ``training`` section under its own field names,
    ``extra`` (any other field) on top, ``bf16`` / ``fp16`` where a CUDA device supports them
    (:func:`mixed_precision`), and what every run sets (steps checkpoints, ``data_seed = seed``, the no-duplicates
    batch sampler, the column ``prompts``, no reporting, no in-training evaluation; under ``torchrun`` / ``accelerate
    launch`` without CUDA, ``use_cpu`` and the ``gloo`` DDP backend; ``extra`` may override them).

    Raises:
        UserError: a key of ``training.extra`` that is not a ``SentenceTransformerTrainingArguments`` field.
    """
    fields = dataclasses.asdict(config.training)
    extra = fields.pop("extra")
    valid = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments) if f.init}
    unknown = sorted(set(extra) - valid)
    if unknown:
        raise UserError(f"training.extra: {unknown} are not SentenceTransformerTrainingArguments fields.")
    fields["bf16"], fields["fp16"] = mixed_precision(fields["bf16"], fields["fp16"])
    every_run = dict(
        save_strategy="steps",
        data_seed=fields["seed"],
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts=prompts,
        report_to="none",
        eval_strategy="no",
    )
    if fields["gradient_checkpointing"]:
        every_run["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    if distributed.launched() and not torch.cuda.is_available():
        every_run.update(use_cpu=True, ddp_backend="gloo")  # else the trainer would not run DDP on CPU processes
    return SentenceTransformerTrainingArguments(**{**every_run, **fields, **extra})


def distill(
    config: DistillConfig,
    train_datasets: dict[str, Dataset] | None = None,
    teacher: Teacher | None = None,
    resume: bool = True,
    overwrite: bool = False,
    dist: Distributed | None = None,
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
        dist: The processes of a ``torchrun`` / ``accelerate launch`` run (default: :func:`d2llm_st.distributed.setup`,
            which is one process without launch variables); every process calls ``distill`` with the same
            arguments and gets the same result.

    Raises:
        UserError: the output folder holds a run with another config (or any run, with ``resume=False``; see
            :func:`~d2llm_st.training.runs.check_output_dir`), or its newest checkpoint was trained by another number
            of processes.
        DistributedError: the processes do not share the output folder, build different training rows, or one of
            them died or is stuck.
    """
    dist = distributed.setup() if dist is None else dist
    output_dir = config.training.output_dir
    dist.check_shared_folder(output_dir, "The output folder (training.output_dir)")
    finished = dist.on_main(
        "check the output folder", lambda: check_output_dir(config, resume=resume, overwrite=overwrite)
    )
    if finished is not None:
        logger.info(f"{output_dir} already holds this run, finished: nothing to train (--overwrite trains it again)")
        return DistillResult(
            output_dir,
            finished["model_dir"],
            finished["scores"],
            finished["steps"],
            finished.get("train_metrics", {}),
            already_finished=True,
            primary_metrics=finished.get("primary_metrics")
            or {eval_set.name: headline_metric(eval_set.type) for eval_set in config.evaluation.sets},
        )
    config.check_inputs(build_data=train_datasets is None, load_teacher=teacher is None)
    filtering = config.mode == "distill" and config.false_negatives.enabled
    required = (FalseNegativeFilterCallback.STATE_NAME,) if filtering else ()  # written after the trainer's files
    checkpoint = dist.on_main(
        "check the newest checkpoint", lambda: _resumable_checkpoint(output_dir, dist.world_size, required)
    )
    if dist.is_main:
        os.makedirs(output_dir, exist_ok=True)
        config.save(os.path.join(output_dir, CONFIG_NAME))
    transformers.set_seed(config.training.seed)
    evaluators = [
        build_evaluator(**dataclasses.asdict(eval_set), batch_size=config.evaluation.batch_size)
        for eval_set in config.evaluation.sets
    ]
    primary_metrics = {evaluator.name: headline_metric(evaluator) for evaluator in evaluators}

    if config.mode == "untrained":

        def evaluate_untrained() -> DistillResult:
            scores = evaluate(build_student(config.student), evaluators)
            return _finish(config, DistillResult(output_dir, None, scores, 0, primary_metrics=primary_metrics))

        return dist.on_main("evaluate the untrained student", evaluate_untrained)
    if not config.datasets:
        raise UserError("The config lists no training datasets; add at least one under 'datasets'.")

    distilling = config.mode == "distill"
    word_level = distilling and config.loss.word_level_weight > 0
    scorer = None
    if teacher is None and (word_level or (train_datasets is None and _has_raw_data(config))):
        teacher = load_teacher_from_config(config, dist)
        scorer = ShardedTeacher(teacher, dist, teacher_cache_path(config))
    elif teacher is not None:
        own_cache = teacher.cache.path if teacher.cache is not None else None
        needed = teacher_cache_path(config) if dist.is_distributed else None  # the ranks merge their scores there
        scorer = ShardedTeacher(teacher, dist, own_cache or needed)
    datasets = _training_datasets(config, train_datasets, scorer)
    if dist.is_distributed:
        dist.check_same(
            _rows_digest(datasets),
            "the training rows",
            "Every process must build the same rows: the same data files, limits and seeds.",
        )
    teacher_name = config.teacher.model if teacher is not None or train_datasets is not None else None
    teacher_identity = teacher.identity if teacher is not None else _rows_teachers(config, train_datasets)
    tasks = {dataset.name: dataset.task for dataset in config.datasets}
    prompts = {name: column_prompts(config, datasets[name].column_names, tasks[name]) for name in datasets}

    transformers.set_seed(config.training.seed)
    callbacks = []
    if distilling:
        model = build_student(config.student)
        losses = {name: make_loss(model, config, tasks[name]) for name in datasets}
        if config.false_negatives.enabled:
            filters = {name: loss.false_negative_filter for name, loss in losses.items()}
            callbacks.append(FalseNegativeFilterCallback(filters, config.false_negatives.update_every_steps, dist))
    else:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        model = build_baseline(config.student)
        datasets = {name: dataset.remove_columns("label") for name, dataset in datasets.items()}
        losses = {name: MultipleNegativesRankingLoss(model, **dataclasses.asdict(config.baseline)) for name in datasets}
    word_alignment = None
    if word_level:
        word_alignment = WordAlignment(teacher, model.backbone.tokenizer, model.backbone.max_seq_length, tasks)
    teacher = None  # scores are in the datasets (the word alignment keeps what it needs)

    args = training_arguments(config, prompts)
    trainer = D2LLMTrainer(
        model=model,
        args=args,
        train_dataset=datasets,
        loss=losses,
        data_collator=D2LLMDataCollator(
            preprocess_fn=model.preprocess, prompts=args.prompts, word_alignment=word_alignment
        ),
        callbacks=callbacks,
    )
    steps, train_metrics = _train(trainer, checkpoint, callbacks)

    thresholds = {}
    for callback in callbacks:
        thresholds.update({name: history[-1][1] for name, history in callback.history.items() if history})

    def evaluate_and_save() -> DistillResult:
        scores = evaluate(model, evaluators)
        record_distillation(
            model.model_card_data,
            config,
            teacher=teacher_name,
            teacher_identity=teacher_identity,
            dataset_rows={name: len(dataset) for name, dataset in datasets.items()},
            scores=scores,
            steps=steps,
            thresholds=thresholds,
            primary_metrics=primary_metrics,
            processes=dist.world_size,
        )
        model_dir = os.path.join(output_dir, MODEL_DIR)
        model.save_pretrained(model_dir)
        result = DistillResult(output_dir, model_dir, scores, steps, train_metrics, False, primary_metrics)
        return _finish(config, result)

    # Once, on rank 0; the others wait (D2LLM_DIST_TIMEOUT must cover the evaluation) and get the same result.
    return dist.on_main("evaluate and save the model", evaluate_and_save)


def _has_raw_data(config: DistillConfig) -> bool:
    """Whether a training set must be built from raw data (with the teacher), not read from ``d2llm mine`` rows."""
    from d2llm_st.data import is_distillation_rows

    return any(not is_distillation_rows(dataset.path) for dataset in config.datasets)


def _rows_teachers(config: DistillConfig, train_datasets: dict[str, Dataset] | None) -> str | None:
    """The teacher identity recorded with ``d2llm mine`` rows the run read (``None`` when none says)."""
    from d2llm_st.data import distillation_rows_info, is_distillation_rows

    if train_datasets is not None:
        return None
    identities = []
    for dataset in config.datasets:
        if is_distillation_rows(dataset.path):
            identity = distillation_rows_info(dataset.path).get("teacher")
            if identity and identity not in identities:
                identities.append(identity)
    return ", ".join(identities) or None


def _resumable_checkpoint(output_dir: str, world_size: int, required: tuple[str, ...] = ()) -> str | None:
    """The newest complete checkpoint in ``output_dir`` (``None``: start fresh), if it was trained by ``world_size``
    processes.

    A checkpoint is complete when it holds ``trainer_state.json`` (the trainer writes it after the weights, optimizer
    and RNG states) and the ``required`` files that callbacks write after it; a newer one that a kill left half
    written is passed over, with a warning.

    Raises:
        UserError: it was trained by another number of processes (a different global batch and data order).
    """
    if not os.path.isdir(output_dir):
        return None
    names = [name for name in os.listdir(output_dir) if CHECKPOINT.match(name)]
    checkpoint = None
    for name in sorted(names, key=lambda name: int(name.rsplit("-", 1)[1]), reverse=True):
        path = os.path.join(output_dir, name)
        missing = [file for file in (TRAINER_STATE_NAME, *required) if not os.path.isfile(os.path.join(path, file))]
        if not missing:
            checkpoint = path
            break
        logger.warning(f"{path} is incomplete (no {', '.join(missing)}: stopped while writing it); passing it over")
    if checkpoint is None:
        return None
    trained_by = checkpoint_world_size(checkpoint)
    if trained_by != world_size:
        launch = f"torchrun --nproc_per_node {trained_by} (or the same nodes x processes)" if trained_by > 1 else ""
        how = f"with {launch}" if launch else "in one process (without torchrun / accelerate launch)"
        raise UserError(
            f"{checkpoint} was trained by {trained_by} process(es) but this run has {world_size}: each step's global "
            f"batch is per_device_train_batch_size x processes, so it resumes only with the same number. Run it again "
            f"{how}, or pass --overwrite to start afresh."
        )
    return checkpoint


def _rows_digest(datasets: dict[str, Dataset]) -> str:
    """A digest of the training rows' texts, in order (every process must build the same rows; their teacher scores
    come from the one cache)."""
    parts: list[str] = []
    for name in sorted(datasets):
        dataset = datasets[name]
        parts += [name, str(len(dataset)), ",".join(dataset.column_names)]
        parts += [json.dumps(list(dataset[column])) for column in dataset.column_names if column != "label"]
    return digest(parts)


def _train(
    trainer: D2LLMTrainer, checkpoint: str | None, callbacks: list[FalseNegativeFilterCallback]
) -> tuple[int, dict[str, float]]:
    """Train, resuming from ``checkpoint`` (the newest one, see :func:`_resumable_checkpoint`); ``(steps, train
    metrics)``.

    A checkpoint already at the run's last step (a kill during the final evaluation or save) is loaded, not
    resumed: the Trainer would run one more optimizer step before checking ``max_steps`` (it skips whole
    epochs on resume, but checks the step budget only after each step).
    """
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
                "primary_metrics": result.primary_metrics,
            },
            f,
            indent=2,
        )
    logger.info(f"Results written to {path}")
    return result
