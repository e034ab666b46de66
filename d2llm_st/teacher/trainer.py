"""The yes/no teacher's trainer: Hugging Face's ``Trainer`` with the teacher's own loss.

Why ``transformers.Trainer`` with a ``compute_loss`` override, and not sentence-transformers' CrossEncoder
trainer over a causal-LM ``LogitScore`` model: the teacher is scored by
:meth:`~d2llm_st.teacher.LLMTeacher.answer_logits`, i.e. through its own prompt templates (one per task, through
the chat template or not), its answer words resolved to single tokens, left padding with position ids from the
mask, and the logit margin at the last prompt position. Training through that very function keeps what is trained
identical to what is scored, and the result stays a causal-LM folder (merged, or a peft adapter) plus
``d2llm_teacher.json``, which :class:`~d2llm_st.teacher.LLMTeacher` loads and fingerprints as before. A
``CrossEncoder`` would format pairs with its own template (``query`` / ``document`` chat roles) and save a
CrossEncoder folder: another input and another artefact for the same ``BCE(sigmoid(logit_yes - logit_no))`` loss.

The maintained parts come from the ``Trainer``: optimizer (AdamW), linear warmup schedule, gradient accumulation
and clipping, checkpoints with optimizer / scheduler / RNG state, resuming mid-epoch, progress bar and logging.
What is d2llm's: the loss (:func:`yes_no_loss`), the batches (each epoch a permutation seeded by
``seed + epoch``, :class:`EpochPermutationSampler`, so a resumed run sees the same order), and the precision
policy (bf16 autocast around the teacher's forward, as :func:`~d2llm_st.teacher.finetune.finetune_teacher`
decides, instead of the Trainer's own mixed precision).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from d2llm_st.teacher.llm_teacher import EncodedPair, LLMTeacher

logger = logging.getLogger(__name__)


def yes_no_loss(teacher: LLMTeacher, model: torch.nn.Module, batch: Sequence[EncodedPair], targets: torch.Tensor):
    """``BCE(sigmoid(logit_yes - logit_no), target)`` of one micro-batch: the cross-entropy of the two-way softmax
    the teacher scores with, so the tuned model's ``P(yes)`` is exactly what the teacher reads (soft targets, e.g.
    normalised STS scores, work the same way)."""
    margin, _, _, _ = teacher.answer_logits(model, batch)
    return torch.nn.functional.binary_cross_entropy_with_logits(margin, targets.to(margin.device))


class PairDataset(torch.utils.data.Dataset):
    """Encoded pairs and their target ``P(yes)``: item ``i`` is ``(encoded[i], target[i])``."""

    def __init__(self, encoded: Sequence[EncodedPair], targets: Sequence[float]) -> None:
        if len(encoded) != len(targets):
            raise ValueError(f"{len(encoded)} encoded pairs but {len(targets)} targets.")
        self.encoded = list(encoded)
        self.targets = torch.tensor(list(targets), dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> tuple[EncodedPair, torch.Tensor]:
        return self.encoded[index], self.targets[index]


def collate_pairs(items: Sequence[tuple[EncodedPair, torch.Tensor]]) -> dict[str, Any]:
    """A batch: the encoded pairs (padded by the teacher in :func:`yes_no_loss`) and their targets."""
    return {"encoded": [item[0] for item in items], "targets": torch.stack([item[1] for item in items])}


class EpochPermutationSampler(torch.utils.data.Sampler[int]):
    """Each epoch a fresh permutation of the pairs, from ``torch.randperm`` seeded by ``seed + epoch``.

    The order depends only on the seed and the epoch (the Trainer calls :meth:`set_epoch`), so a run resumed in
    the middle of an epoch sees the batches the uninterrupted run saw.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class YesNoTrainer(Trainer):
    """``transformers.Trainer`` that trains a (LoRA-adapted) causal LM as the yes/no ``teacher``.

    Args:
        teacher: The :class:`~d2llm_st.teacher.LLMTeacher` whose templates and answer words define the score;
            ``model`` is its (peft-wrapped) model.
        autocast_dtype: Run each forward under ``torch.autocast`` in this dtype (``None``: no autocast).
        **kwargs: ``Trainer`` arguments (``model``, ``args``, ``train_dataset``, ``callbacks``, ...); the data
            collator defaults to :func:`collate_pairs`.
    """

    def __init__(self, teacher: LLMTeacher, autocast_dtype: torch.dtype | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("data_collator", collate_pairs)
        super().__init__(**kwargs)
        self.teacher = teacher
        self.autocast_dtype = autocast_dtype

    def _get_train_sampler(self, train_dataset=None) -> torch.utils.data.Sampler:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        return EpochPermutationSampler(len(dataset), self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        device_type = torch.device(self.teacher.device).type
        autocast = (
            torch.autocast(device_type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            loss = yes_no_loss(self.teacher, model, inputs["encoded"], inputs["targets"])
        return (loss, None) if return_outputs else loss


class LogLines(TrainerCallback):
    """The Trainer's training logs as Python log lines, ``step N/total loss L lr R`` (instead of printed dicts)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            learning_rate = logs.get("learning_rate", 0.0)
            logger.info(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} lr {learning_rate:.2e}")
