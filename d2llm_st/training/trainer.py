"""``D2LLMTrainer``: sentence-transformers' trainer with checkpoints that hold what trains (written by rank 0 alone),
and DDP steps that keep every process on one dataset.

A checkpoint of :class:`~sentence_transformers.SentenceTransformerTrainer` is a full ``save_pretrained``
folder, so every one would carry the frozen base LLM (540 MB for SmolLM2-135M, gigabytes for larger LLMs).
Here an :class:`~d2llm_st.modules.LLMBackbone` saves its LoRA adapter and a reference to its base weights
instead (:attr:`~d2llm_st.modules.LLMBackbone.save_base_weights` ``= False``), unless those weights changed
(a trained or merged backbone); PMA, IEM and the optimizer state are saved as usual, and resuming reads the
base weights again from the reference.

Under several processes (``torchrun`` / ``accelerate launch``: DDP), the trainer's data loader gives process ``r``
batches ``r, r + N, r + 2N, ...`` of the batch sampler. sentence-transformers' multi-dataset samplers interleave
datasets batch by batch, so the processes of one step would hold batches of different datasets (different tasks,
numbers of negatives and losses), and in-batch candidates gathered across them would mix tasks or fail on their
shapes. :class:`AlignedMultiDatasetBatchSampler` hands out a dataset's batches ``N`` at a time, so at every step all
processes train on one dataset, as one process does with a batch ``N`` times larger. Each checkpoint also records
the number of processes (:class:`WorldSizeCallback`), so a run is resumed only with the same global batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from itertools import accumulate

from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.base.sampler import MultiDatasetBatchSamplers, MultiDatasetDefaultBatchSampler
from torch.utils.data import BatchSampler, ConcatDataset, SubsetRandomSampler
from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import ExportableState

from d2llm_st.modules import LLMBackbone

MODES = ("proportional", "round_robin")


class AlignedMultiDatasetBatchSampler(MultiDatasetDefaultBatchSampler):
    """sentence-transformers' proportional or round-robin multi-dataset sampling, a dataset's batches
    ``world_size`` at a time.

    The choice of dataset is made per group of ``world_size`` consecutive batches of that dataset; the data loader of
    each of ``world_size`` processes takes one batch of every group, so all processes train on the same dataset at
    each step. With ``world_size = 1`` it yields exactly what ``ProportionalBatchSampler`` / ``RoundRobinBatchSampler``
    yield; with ``world_size = N`` and batches of ``B``, the same datasets in the same order (and with
    sentence-transformers' batch samplers the same rows per step) as one process with batches of ``N x B``, when each
    dataset's rows divide into whole global batches. A dataset's last batches that do not fill a group are left out
    of the epoch.

    Args:
        dataset, batch_samplers, generator, seed: As for sentence-transformers' multi-dataset samplers.
        world_size: The number of processes.
        mode: ``"proportional"`` (every dataset's groups, in a seeded random order) or ``"round_robin"`` (one group
            of each dataset in turn, until one runs out).
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator=None,
        seed: int = 0,
        world_size: int = 1,
        mode: str = "proportional",
    ) -> None:
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}.")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        self.world_size, self.mode = world_size, mode

    def _groups(self) -> list[int]:
        return [len(sampler) // self.world_size for sampler in self.batch_samplers]

    def __iter__(self) -> Iterator[list[int]]:
        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        offsets = [0, *accumulate(len(dataset) for dataset in self.dataset.datasets)]
        groups = self._groups()
        if self.mode == "proportional":
            order = SubsetRandomSampler(
                [index for index, count in enumerate(groups) for _ in range(count)], generator=self.generator
            )
        else:
            order = [index for _ in range(min(groups)) for index in range(len(groups))]
        iterators = [iter(sampler) for sampler in self.batch_samplers]
        for index in order:
            group = []
            for _ in range(self.world_size):
                batch = next(iterators[index], None)
                if batch is None:  # a sampler that gave fewer batches than its length promised
                    break
                group.append([row + offsets[index] for row in batch])
            if len(group) == self.world_size:
                yield from group

    def __len__(self) -> int:
        groups = self._groups()
        total = sum(groups) if self.mode == "proportional" else min(groups) * len(groups)
        return total * self.world_size


class WorldSizeCallback(TrainerCallback, ExportableState):
    """Records the number of processes and the batch size per process in every checkpoint (``trainer_state.json``,
    ``stateful_callbacks``): a run resumes only with the same global batch (:func:`checkpoint_world_size`).

    Under several processes it also holds every process at each checkpoint until rank 0 has written all of it (the
    trainer's files and the other callbacks' ``on_save`` files: it is added last), so a process that dies during the
    next steps cannot take the checkpoint down half-written with it.
    """

    def __init__(
        self,
        world_size: int = 1,
        per_device_train_batch_size: int | None = None,
        wait: Callable[[], None] | None = None,
    ) -> None:
        self.world_size = world_size
        self.per_device_train_batch_size = per_device_train_batch_size
        self.wait = wait

    def on_save(self, args, state, control, **kwargs):
        if self.world_size > 1 and self.wait is not None:
            self.wait()

    def state(self) -> dict:
        return {
            "args": {"world_size": self.world_size, "per_device_train_batch_size": self.per_device_train_batch_size},
            "attributes": {},
        }


def checkpoint_world_size(checkpoint: str) -> int:
    """How many processes trained ``checkpoint`` (1 for a checkpoint that does not say: a run from before)."""
    with open(os.path.join(checkpoint, TRAINER_STATE_NAME), encoding="utf-8") as f:
        callbacks = json.load(f).get("stateful_callbacks") or {}
    record = callbacks.get(WorldSizeCallback.__name__)
    if isinstance(record, list):
        record = record[0] if record else None
    return int(((record or {}).get("args") or {}).get("world_size", 1))


class D2LLMTrainer(SentenceTransformerTrainer):
    """A ``SentenceTransformerTrainer`` whose checkpoints leave out unchanged base LLM weights, whose processes train
    on one dataset per step (:class:`AlignedMultiDatasetBatchSampler`) and whose checkpoints record the number of
    processes (:class:`WorldSizeCallback`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        wait = self.accelerator.wait_for_everyone
        self.add_callback(WorldSizeCallback(self.args.world_size, self.args.per_device_train_batch_size, wait))

    def get_multi_dataset_batch_sampler(
        self, dataset: ConcatDataset, batch_samplers: list[BatchSampler], generator=None, seed: int | None = 0
    ) -> BatchSampler:
        """One process: sentence-transformers' sampler. Several: the same sampling, one dataset per step."""
        choice = self.args.multi_dataset_batch_sampler
        if self.args.world_size > 1 and choice in (
            MultiDatasetBatchSamplers.PROPORTIONAL,
            MultiDatasetBatchSamplers.ROUND_ROBIN,
        ):
            return AlignedMultiDatasetBatchSampler(
                dataset,
                batch_samplers,
                generator=generator,
                seed=seed,
                world_size=self.args.world_size,
                mode=MultiDatasetBatchSamplers(choice).value,
            )
        return super().get_multi_dataset_batch_sampler(dataset, batch_samplers, generator=generator, seed=seed)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        # transformers 5 calls _save in every process and lets only the writer (rank 0) through; sentence-transformers'
        # _save assumes it runs on rank 0 alone, so without this check every process would write the same files.
        if not self.args.should_save:
            return
        backbones = [module for module in self.model.modules() if isinstance(module, LLMBackbone)]
        previous = [backbone.save_base_weights for backbone in backbones]
        for backbone in backbones:
            backbone.save_base_weights = False
        try:
            super()._save(output_dir, state_dict=state_dict)
        finally:
            for backbone, setting in zip(backbones, previous):
                backbone.save_base_weights = setting
