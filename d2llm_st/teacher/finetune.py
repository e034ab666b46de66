"""LoRA fine-tuning of a causal LM teacher to answer "yes" for positives and "no" for negatives.

The loss is the cross-entropy of the two-way softmax the teacher scores with,
``BCE(sigmoid(logit_yes - logit_no), target)``, so the tuned model's ``P(yes)`` is exactly what
:class:`~d2llm_st.teacher.LLMTeacher` reads; soft targets (STS) work the same way. The training loop is Hugging
Face's ``Trainer`` (:class:`~d2llm_st.teacher.trainer.YesNoTrainer`, which says why that trainer).

Trainer checkpoints (adapter, optimizer, scheduler, RNG, step) go to ``output_dir/checkpoint-<step>`` every
``checkpoint_every`` steps, with ``d2llm_teacher_run.json`` (model, data and config of the run); running the same
call again resumes from the newest complete one, bit for bit, and refuses one of another run. The result is saved
like any Hugging Face model (LoRA merged) or as a peft adapter, plus ``d2llm_teacher.json`` (templates, answer
words, max length, training config) so :class:`~d2llm_st.teacher.LLMTeacher` scores it the same way; the
checkpoints are then removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from d2llm_st.data.pairs import LabelledPair
from d2llm_st.errors import UserError
from d2llm_st.runtime import cpu_dtype
from d2llm_st.teacher.llm_teacher import TEACHER_CONFIG_NAME, LLMTeacher
from d2llm_st.teacher.templates import PromptTemplate

logger = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR naming
RUN_NAME = "d2llm_teacher_run.json"
"""Beside each checkpoint: the model, data and config of the run it belongs to (a resume must match them)."""


@dataclass
class TeacherTrainingConfig:
    """Hyper-parameters of :func:`finetune_teacher` (round-trips to JSON)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    epochs: int = 1
    max_steps: int | None = None
    warmup_ratio: float = 0.05
    max_length: int = 160
    seed: int = 42
    checkpoint_every: int = 50
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TeacherTrainingConfig:
        return cls(**values)


def _data_fingerprint(pairs: Sequence[LabelledPair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps([pair.text_a, pair.text_b, pair.label, pair.task]).encode())
    return digest.hexdigest()[:16]


def _checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """``(step, path)`` of the trainer checkpoints in ``output_dir``, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(match.group(1)), name) for name in os.listdir(output_dir) if (match := CHECKPOINT.match(name))]
    return [(step, os.path.join(output_dir, name)) for step, name in sorted(found)]


def _last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint whose trainer state was written (the Trainer writes it after the weights, optimizer
    and RNG state); newer, half-written ones (a kill during a save) are removed, so the Trainer never reads them."""
    from transformers.trainer import TRAINER_STATE_NAME

    complete: tuple[int, str] | None = None
    for step, path in _checkpoints(output_dir):
        if os.path.isfile(os.path.join(path, TRAINER_STATE_NAME)):
            complete = (step, path)
    for step, path in _checkpoints(output_dir):
        if complete is None or step > complete[0]:
            logger.warning(f"{path} is incomplete (killed while saving?): removed")
            shutil.rmtree(path, ignore_errors=True)
    return complete[1] if complete else None


def _check_run(output_dir: str, run: dict[str, Any], checkpoint: str | None) -> None:
    """Record the run in ``output_dir``, or, when resuming from ``checkpoint``, refuse a run of another model, data
    or config."""
    path = os.path.join(output_dir, RUN_NAME)
    if checkpoint is not None:
        saved = None
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        if saved != run:
            raise UserError(
                f"{checkpoint} holds a training run with another model, data or config; use a new output_dir or "
                "delete its checkpoint-* folders to start over."
            )
        return
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(run, f, indent=2)


def finetune_teacher(
    model_name_or_path: str,
    pairs: Sequence[LabelledPair],
    output_dir: str,
    config: TeacherTrainingConfig | None = None,
    templates: Mapping[str, PromptTemplate] | None = None,
    use_chat_template: bool | None = None,
    answer_words: tuple[str, str] | None = None,
    device: str | None = None,
    dtype: str | torch.dtype = "auto",
    merge: bool = True,
    show_progress_bar: bool | None = None,
) -> str:
    """LoRA-tune ``model_name_or_path`` on labelled pairs and save the teacher to ``output_dir``.

    Args:
        model_name_or_path: A causal LM (hub id or folder), or a teacher folder saved before (trained further).
        pairs: Training pairs; ``task`` picks the template of each (mixing tasks in one run is fine).
        output_dir: Where the teacher is saved; ``output_dir/checkpoint-<step>`` hold the resumable training state
            until it is.
        config: Hyper-parameters (:class:`TeacherTrainingConfig`).
        templates, use_chat_template, answer_words: As in :class:`~d2llm_st.teacher.LLMTeacher`; saved with the model.
        device, dtype: Where and in which precision to train. ``"auto"`` keeps float32 weights (and LoRA
            optimizer state) and runs the forward under bfloat16 autocast on a supporting GPU: pure bfloat16
            weights made the loss NaN within 30 steps on an H100 (together with SDPA, see below). On a CPU with
            bf16 instructions (:mod:`d2llm_st.runtime`) the frozen base weights are bf16, LoRA stays float32,
            and the forward runs under bf16 autocast; the saved (merged) teacher is then bf16.
        merge: Save the LoRA merged into a full model (loadable by any HF tool); ``False`` saves the peft adapter.
        show_progress_bar: Show a progress bar over optimizer steps (default: when logging at INFO).

    Returns:
        ``output_dir``, loadable with ``LLMTeacher(output_dir)``.
    """
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import TrainingArguments
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_callback import PrinterCallback, TrainerState

    from d2llm_st.teacher.trainer import LogLines, PairDataset, YesNoTrainer

    config = config or TeacherTrainingConfig()
    if not pairs:
        raise UserError("pairs is empty: pass at least one LabelledPair to fine-tune the teacher on.")
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
    torch.manual_seed(config.seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    device_type = torch.device(device).type
    # "auto": float32 master weights under bf16 autocast on a GPU; on a CPU with bf16 instructions the frozen
    # base weights are stored in bf16 (casting float32 weights at every call costs what bf16 saves there),
    # with float32 LoRA weights and optimizer state.
    cpu_bf16 = dtype == "auto" and device_type == "cpu" and cpu_dtype() == torch.bfloat16
    cuda_bf16 = dtype == "auto" and device_type == "cuda" and torch.cuda.is_bf16_supported()
    teacher = LLMTeacher(
        model_name_or_path,
        templates=templates,
        use_chat_template=use_chat_template,
        answer_words=answer_words,
        max_length=config.max_length,
        device=device,
        dtype=(torch.bfloat16 if cpu_bf16 else torch.float32) if dtype == "auto" else dtype,
        # Left-padded rows are fully masked; SDPA's fused CUDA kernels return NaN there, and NaN * 0 in the
        # backward pass poisons every gradient. Eager attention keeps those rows finite.
        model_kwargs={"attn_implementation": "eager"},
    )
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
    )
    model = get_peft_model(teacher.model, lora)
    model.train()
    encoded = teacher.encode_batch([(p.text_a, p.text_b) for p in pairs], [p.task for p in pairs])

    micro_batches_per_epoch = math.ceil(len(pairs) / config.batch_size)
    steps_per_epoch = math.ceil(micro_batches_per_epoch / config.gradient_accumulation_steps)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    checkpoint = _last_complete_checkpoint(output_dir)
    _check_run(
        output_dir, {"config": config.to_dict(), "data": _data_fingerprint(pairs), "base": teacher.identity}, checkpoint
    )
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_steps=total_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=int(config.warmup_ratio * total_steps),  # whole steps, rounded down
        max_grad_norm=1.0,
        optim="adamw_torch",
        seed=config.seed,
        logging_steps=config.log_every,
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=1,
        use_cpu=device_type == "cpu",
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        disable_tqdm=not show_progress_bar,
        report_to="none",
    )
    trainer = YesNoTrainer(
        teacher,
        autocast_dtype=torch.bfloat16 if cpu_bf16 or cuda_bf16 else None,
        model=model,
        args=args,
        train_dataset=PairDataset(encoded, [p.label for p in pairs]),
        callbacks=[LogLines()],
    )
    trainer.remove_callback(PrinterCallback)  # logs go to Python logging (LogHistory), not print()
    logger.info(
        f"Fine-tuning {model_name_or_path} as a yes/no teacher on {len(pairs)} pairs: {total_steps} steps of "
        f"{config.batch_size} x {config.gradient_accumulation_steps} pairs, LoRA r={config.lora_r}"
    )
    state = trainer.state
    if checkpoint is not None:
        state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
        logger.info(f"Resuming teacher fine-tuning from step {state.global_step} of {total_steps} ({checkpoint})")
    if checkpoint is not None and state.global_step >= total_steps:
        # Killed while saving the result: load the last checkpoint (the Trainer would train one more step).
        trainer._load_from_checkpoint(checkpoint)
    else:
        trainer.train(resume_from_checkpoint=checkpoint)
        state = trainer.state

    model.eval()
    os.makedirs(output_dir, exist_ok=True)
    if merge:
        model.merge_and_unload().save_pretrained(output_dir)
    else:
        model.save_pretrained(output_dir)
    teacher.tokenizer.save_pretrained(output_dir)
    with open(os.path.join(output_dir, TEACHER_CONFIG_NAME), "w") as f:
        json.dump(
            {
                **teacher.settings(),
                "base_model": model_name_or_path,
                "training": {
                    **config.to_dict(),
                    "num_pairs": len(pairs),
                    "steps": total_steps,
                    "log": [
                        {"step": entry["step"], "loss": entry["loss"], "lr": entry.get("learning_rate")}
                        for entry in state.log_history
                        if "loss" in entry
                    ],
                },
            },
            f,
            indent=2,
        )
    for _, path in _checkpoints(output_dir):
        shutil.rmtree(path, ignore_errors=True)
    os.remove(os.path.join(output_dir, RUN_NAME))
    logger.info(f"Saved the fine-tuned teacher to {output_dir}")
    return output_dir
