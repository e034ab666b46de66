"""LoRA fine-tuning of a causal LM teacher to answer "yes" for positives and "no" for negatives.

The loss is the cross-entropy of the two-way softmax the teacher scores with,
``BCE(sigmoid(logit_yes - logit_no), target)``, so the tuned model's ``P(yes)`` is exactly what
:class:`~d2llm_st.teacher.LLMTeacher` reads; soft targets (STS) work the same way.

Training checkpoints (adapter, optimizer, scheduler, RNG, step) go to ``output_dir/checkpoint`` every
``checkpoint_every`` steps; running the same call again resumes from there. The result is saved like any
Hugging Face model (LoRA merged) or as a peft adapter, plus ``d2llm_teacher.json`` (templates, answer
words, max length, training config) so :class:`~d2llm_st.teacher.LLMTeacher` scores it the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from d2llm_st.data.pairs import LabelledPair
from d2llm_st.errors import UserError
from d2llm_st.runtime import cpu_dtype
from d2llm_st.teacher.llm_teacher import TEACHER_CONFIG_NAME, EncodedPair, LLMTeacher
from d2llm_st.teacher.templates import PromptTemplate

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"


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


def _epoch_batches(num_pairs: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a permutation seeded by ``(seed, epoch)``, so a resumed run sees the same order."""
    order = torch.randperm(num_pairs, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return [order[start : start + batch_size] for start in range(0, num_pairs, batch_size)]


def _train_step(
    teacher: LLMTeacher, model: torch.nn.Module, batch: Sequence[EncodedPair], targets: torch.Tensor, scale: float
) -> float:
    """Loss of one micro-batch; its gradient (times ``scale``, for accumulation) is added to the parameters."""
    margin, _, _, _ = teacher.answer_logits(model, batch)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(margin, targets.to(margin.device))
    (loss * scale).backward()
    return loss.item()


def _save_checkpoint(path: str, model, optimizer, scheduler, state: dict[str, Any]) -> None:
    """Write to ``path.tmp`` then swap it in, so a kill never leaves a half-written checkpoint behind."""
    staging = f"{path}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, f"{staging}/optim.pt")
    torch.save(torch.get_rng_state(), f"{staging}/rng.pt")
    with open(f"{staging}/state.json", "w") as f:
        json.dump(state, f)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(staging, path)


def _find_checkpoint(path: str) -> str | None:
    for candidate in (path, f"{path}.tmp"):
        if os.path.isfile(os.path.join(candidate, "state.json")):
            return candidate
    return None


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
        output_dir: Where the teacher is saved; ``output_dir/checkpoint`` holds the resumable training state.
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
    from peft import LoraConfig, TaskType, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import get_linear_schedule_with_warmup

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
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=cpu_bf16 or cuda_bf16)
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
    targets = torch.tensor([p.label for p in pairs], dtype=torch.float32)

    micro_batches_per_epoch = math.ceil(len(pairs) / config.batch_size)
    steps_per_epoch = math.ceil(micro_batches_per_epoch / config.gradient_accumulation_steps)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)

    checkpoint_path = os.path.join(output_dir, CHECKPOINT_DIR)
    run_state = {"config": config.to_dict(), "data": _data_fingerprint(pairs), "base": teacher.identity}
    step = 0
    found = _find_checkpoint(checkpoint_path)
    if found is not None:
        with open(os.path.join(found, "state.json")) as f:
            saved = json.load(f)
        if {key: saved.get(key) for key in run_state} != run_state:
            raise UserError(
                f"{found} holds a training run with another model, data or config; use a new output_dir or delete "
                "that checkpoint folder to start over."
            )
        set_peft_model_state_dict(model, load_file(os.path.join(found, "adapter_model.safetensors")))
        optim_state = torch.load(os.path.join(found, "optim.pt"), weights_only=False)
        optimizer.load_state_dict(optim_state["optimizer"])
        scheduler.load_state_dict(optim_state["scheduler"])
        torch.set_rng_state(torch.load(os.path.join(found, "rng.pt"), weights_only=False))
        step = saved["step"]
        logger.info(f"Resuming teacher fine-tuning from step {step} of {total_steps} ({found})")

    logger.info(
        f"Fine-tuning {model_name_or_path} as a yes/no teacher on {len(pairs)} pairs: {total_steps} steps of "
        f"{config.batch_size} x {config.gradient_accumulation_steps} pairs, LoRA r={config.lora_r}"
    )
    progress = tqdm(total=total_steps, initial=step, desc="Teacher fine-tuning", disable=not show_progress_bar)
    running, history = [], []
    while step < total_steps:
        epoch, micro_start = divmod(step * config.gradient_accumulation_steps, micro_batches_per_epoch)
        batches = _epoch_batches(len(encoded), config.batch_size, config.seed, epoch)
        for start in range(micro_start, len(batches), config.gradient_accumulation_steps):
            group = batches[start : start + config.gradient_accumulation_steps]
            loss = 0.0
            for indices in group:
                batch = [encoded[i] for i in indices]
                with autocast:
                    loss += _train_step(teacher, model, batch, targets[indices], 1 / len(group)) / len(group)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running.append(loss)
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}")
            if step % config.log_every == 0 or step == total_steps:
                mean_loss = sum(running) / len(running)
                history.append({"step": step, "loss": mean_loss, "lr": scheduler.get_last_lr()[0]})
                logger.info(f"step {step}/{total_steps} loss {mean_loss:.4f} lr {scheduler.get_last_lr()[0]:.2e}")
                running = []
            if step % config.checkpoint_every == 0 and step < total_steps:
                _save_checkpoint(checkpoint_path, model, optimizer, scheduler, {**run_state, "step": step})
            if step >= total_steps:
                break
    progress.close()

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
                "training": {**config.to_dict(), "num_pairs": len(pairs), "steps": total_steps, "log": history},
            },
            f,
            indent=2,
        )
    shutil.rmtree(checkpoint_path, ignore_errors=True)
    shutil.rmtree(f"{checkpoint_path}.tmp", ignore_errors=True)
    logger.info(f"Saved the fine-tuned teacher to {output_dir}")
    return output_dir
