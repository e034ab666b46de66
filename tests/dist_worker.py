"""One process of a ``torchrun`` / ``accelerate launch`` run of the ``d2llm`` CLI, with hooks for the multi-process
tests (tests/test_distributed.py). Not a test module itself.

Environment (all optional):
  D2LLM_TEST_COUNT_DIR   each process appends what it computes to ``<dir>/<pid>.txt``: one line per teacher batch
                         (``teacher <pairs>``, ``attention <pairs>`` for word-level attention maps), per corpus shard
                         written (``encode <passages>``) and per training step (``step 1``).
  D2LLM_TEST_KILL_RANK   this rank kills itself with SIGKILL ...
  D2LLM_TEST_KILL_AFTER  ... when it is about to compute its batch / shard number KILL_AFTER + 1, or
  D2LLM_TEST_KILL_STEPS  ... when it is about to train step KILL_STEPS + 1 (``d2llm distill``).
  D2LLM_TEST_STALL_RANK  this rank hangs (stuck, not dead) instead of computing its first batch / shard.
  D2LLM_TEST_CHDIR_RANK  this rank works in the folder D2LLM_TEST_CHDIR, so a relative path means another folder.
"""

from __future__ import annotations

import os
import signal
import sys
import time

RANK = int(os.environ.get("RANK", "0"))


def _before(done: int) -> None:
    if os.environ.get("D2LLM_TEST_KILL_RANK") == str(RANK) and done == int(os.environ.get("D2LLM_TEST_KILL_AFTER", -1)):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("D2LLM_TEST_STALL_RANK") == str(RANK):
        time.sleep(3600)


def _record(what: str, count: int) -> None:
    folder = os.environ.get("D2LLM_TEST_COUNT_DIR")
    if folder:
        with open(os.path.join(folder, f"{os.getpid()}.txt"), "a", encoding="ascii") as f:
            f.write(f"{what} {count}\n")


def install_hooks() -> None:
    import d2llm_st.corpus as corpus
    from d2llm_st.teacher.llm_teacher import LLMTeacher

    score_batches = LLMTeacher._score_batches

    def counted_batches(self, pairs, task, batch_size, return_features, return_attention):
        batches = score_batches(self, pairs, task, batch_size, return_features, return_attention)
        if return_attention:  # word-level distillation during training: counted apart, never killed here
            for batch in batches:
                _record("attention", len(batch[0]))
                yield batch
            return
        done = 0
        while True:
            _before(done)  # the previous batch is committed by now
            try:
                batch = next(batches)
            except StopIteration:
                return
            _record("teacher", len(batch[0]))
            done += 1
            yield batch

    encode_shard = corpus._encode_shard
    shards_done = [0]

    def counted_shard(model, scan, index, folder, role, batch_size, shard_size, show_progress_bar):
        _before(shards_done[0])
        encode_shard(model, scan, index, folder, role, batch_size, shard_size, show_progress_bar)
        _record("encode", min(shard_size, scan.count - index * shard_size))
        shards_done[0] += 1

    from d2llm_st.training.trainer import D2LLMTrainer

    training_step = D2LLMTrainer.training_step

    def counted_step(self, *args, **kwargs):
        if os.environ.get("D2LLM_TEST_KILL_RANK") == str(RANK):
            if self.state.global_step == int(os.environ.get("D2LLM_TEST_KILL_STEPS", "-1")):
                os.kill(os.getpid(), signal.SIGKILL)  # the checkpoints of the steps before are written by now
        loss = training_step(self, *args, **kwargs)
        _record("step", 1)
        return loss

    LLMTeacher._score_batches = counted_batches
    corpus._encode_shard = counted_shard
    D2LLMTrainer.training_step = counted_step


if __name__ == "__main__":
    if os.environ.get("D2LLM_TEST_CHDIR_RANK") == str(RANK):
        os.chdir(os.environ["D2LLM_TEST_CHDIR"])
    if any(os.environ.get(f"D2LLM_TEST_{name}") for name in ("COUNT_DIR", "KILL_RANK", "STALL_RANK")):
        install_hooks()  # imports the models' modules: only when a hook is asked for, so other launches start faster
    from d2llm_st.cli import main

    sys.exit(main(sys.argv[1:]))
