"""Sharded teacher scoring and corpus encoding: two real CPU processes (gloo) under torchrun and accelerate launch.

The multi-process tests start ``tests/dist_worker.py`` (the ``d2llm`` CLI with hooks that count the teacher's and the
encoder's work, kill a rank with SIGKILL, stall one, or move one to another folder) on the tiny fixtures, one thread
per process, each launch under a timeout. The in-process tests cover the pieces: sharding, the launch variables, the
cache merge, resuming a multi-process run in one process, and the output folder checks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
import torch
from conftest import WORDS
from test_distill import make_config, write_eval_data, write_jsonl_gz

from d2llm_st import D2LLM, distributed
from d2llm_st.cli import main
from d2llm_st.corpus import encode_corpus, load_corpus_embeddings, read_manifest, shard_path
from d2llm_st.distributed import Distributed, DistributedError
from d2llm_st.errors import UserError
from d2llm_st.evaluation import build_evaluator, evaluate
from d2llm_st.teacher import LLMTeacher, ScoreCache, sharded
from d2llm_st.teacher.cache import cache_key
from d2llm_st.training import DistillConfig, distill

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "dist_worker.py")
LAUNCH_TIMEOUT = 150  # seconds per launch of two processes on one shared core; they take ~15-25 s


def sentence(rng: random.Random, length: int) -> str:
    return " ".join(rng.choice(WORDS[:80]) for _ in range(length))


@pytest.fixture(scope="module")
def nli_file(tmp_path_factory) -> tuple[str, int]:
    """40 NLI rows, 8 of them repeats: (path, number of distinct pairs)."""
    rng = random.Random(0)
    rows = [
        {
            "premise": sentence(rng, 6),
            "hypothesis": sentence(rng, 4),
            "label": rng.choice(["entailment", "contradiction"]),
        }
        for _ in range(32)
    ]
    rows += rows[:8]
    path = tmp_path_factory.mktemp("nli") / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path), len({(row["premise"], row["hypothesis"]) for row in rows})


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> str:
    rng = random.Random(1)
    rows = [
        {"_id": f"doc-{i}", "title": "the city" if i % 4 == 0 else "", "text": sentence(rng, 3 + i % 7)}
        for i in range(23)
    ]
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def student(tiny_llama, tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=16, passage_prompt="passage : ", device="cpu")
    path = str(tmp_path_factory.mktemp("student"))
    model.save_pretrained(path)
    return path


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def launch(args: list[str], cwd, launcher: str = "torchrun", **env: str) -> subprocess.CompletedProcess:
    """Two processes of the d2llm CLI (through the worker), one thread each, gloo; killed after LAUNCH_TIMEOUT."""
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        command += ["--master_addr", "127.0.0.1", "--master_port", free_port()]
    else:  # accelerate on CPU: --multi_gpu is its torchrun-backed launcher; the workers find no GPU and use gloo
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
        command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        command += ["--main_process_port", free_port()]
    python_path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    environment = {
        **os.environ,
        "PYTHONPATH": python_path,
        "OMP_NUM_THREADS": "1",
        "D2LLM_NUM_THREADS": "1",
        "D2LLM_DIST_TIMEOUT": "60",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    return subprocess.run(
        [*command, WORKER, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT
    )


def counted(folder, what: str) -> int:
    """Items the workers computed (teacher pairs or encoded passages), from the hooks' count files."""
    total = 0
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), encoding="ascii") as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith(what + " "))
    return total


def rows(path: str) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0]


def stored_scores(cache: str) -> int:
    """Entries in the cache and in the shard files beside it (what a killed run kept)."""
    folder = sharded.shard_folder(cache)
    shards = [os.path.join(folder, name) for name in os.listdir(folder)] if os.path.isdir(folder) else []
    return sum(rows(path) for path in [cache, *shards] if path.endswith(".sqlite"))


def rank_errors(result: subprocess.CompletedProcess, command: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(f"d2llm {command}: error: ")]


# --- two processes -------------------------------------------------------------------------------------------


def test_teacher_score_kill_one_rank_and_resume_under_accelerate(tiny_llama, nli_file, tmp_path):
    data, distinct = nli_file
    cache, output = tmp_path / "scores.sqlite", tmp_path / "scores.jsonl"
    args = ["teacher-score", "--teacher", tiny_llama, "--kind", "nli", "--data", data, "--batch-size", "2"]
    args += ["--cache", str(cache), "--output", str(output)]
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()

    start = time.perf_counter()
    killed = launch(
        args, tmp_path, D2LLM_TEST_COUNT_DIR=str(first), D2LLM_TEST_KILL_RANK="1", D2LLM_TEST_KILL_AFTER="2"
    )
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert not output.exists()
    kept = stored_scores(str(cache))
    assert 4 <= kept < distinct  # rank 1 committed 2 batches of 2 before it died; rank 0 its batches so far

    resumed = launch(args, tmp_path, launcher="accelerate", D2LLM_TEST_COUNT_DIR=str(second))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    wall = time.perf_counter() - start
    assert counted(second, "teacher") == distinct - kept  # nothing committed is scored again, nothing is lost
    assert counted(first, "teacher") >= kept
    assert rows(str(cache)) == distinct and not os.listdir(sharded.shard_folder(str(cache)))
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 40 and resumed.stdout.count("scored 40 pairs") == 1  # rank 0 alone writes and prints

    # The scores are what one process gives.
    pairs = [(row["text_a"], row["text_b"]) for row in lines]
    alone = LLMTeacher(tiny_llama, device="cpu").score(pairs, "symmetric", batch_size=2).scores
    np.testing.assert_allclose([row["score"] for row in lines], alone, atol=2e-3)
    print(f"kill + resume of 2 processes: {wall:.1f} s")


def test_encode_kill_one_rank_and_resume(student, corpus_file, tmp_path):
    output, first, second = tmp_path / "embeddings", tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    args = ["encode", "--model", student, "--corpus", corpus_file, "--output", str(output), "--shard-size", "3"]

    killed = launch(
        args, tmp_path, D2LLM_TEST_COUNT_DIR=str(first), D2LLM_TEST_KILL_RANK="1", D2LLM_TEST_KILL_AFTER="1"
    )
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert read_manifest(str(output))["complete"] is False
    written = sorted(name for name in os.listdir(output) if name.endswith(".safetensors"))
    assert "shard-00001.safetensors" in written and "shard-00003.safetensors" not in written  # rank 1: 1 of 4
    kept = sum(min(3, 23 - 3 * int(name[6:11])) for name in written)

    resumed = launch(args, tmp_path, D2LLM_TEST_COUNT_DIR=str(second))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert counted(second, "encode") == 23 - kept and counted(first, "encode") == kept
    assert "23 passage embeddings (32 dims) in 8 shard(s)" in resumed.stdout

    loaded = load_corpus_embeddings(str(output))
    assert loaded.manifest["complete"] and loaded.ids == [f"doc-{i}" for i in range(23)]
    model = D2LLM(student, device="cpu")
    texts = [json.loads(line) for line in open(corpus_file, encoding="utf-8")]
    texts = [f"{row['title']}. {row['text']}" if row["title"] else row["text"] for row in texts]
    expected = model.encode_texts(texts, "passage", convert_to_tensor=False)
    np.testing.assert_allclose(loaded.embeddings, expected, atol=2e-2, rtol=2e-2)  # bf16 backbone, other batches


def test_ranks_that_see_different_output_folders_stop_before_loading_anything(student, corpus_file, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["encode", "--model", student, "--corpus", corpus_file, "--output", "node-local/embeddings"]
    start = time.perf_counter()
    result = launch(args, tmp_path, D2LLM_TEST_CHDIR_RANK="1", D2LLM_TEST_CHDIR=str(elsewhere))
    assert result.returncode != 0
    errors = rank_errors(result, "encode")
    assert errors and all("is not one folder shared by all processes" in error for error in errors), result.stderr
    assert "rank 1 on" in errors[0] and "Put it on a filesystem that every node mounts" in errors[0]
    assert not os.path.exists(elsewhere / "node-local" / "embeddings" / "manifest.json")
    assert time.perf_counter() - start < 60


def test_a_stuck_rank_makes_the_other_fail_after_the_timeout_not_hang(tiny_llama, nli_file, tmp_path):
    data, _ = nli_file
    args = ["teacher-score", "--teacher", tiny_llama, "--kind", "nli", "--data", data, "--cache", "s.sqlite"]
    start = time.perf_counter()
    result = launch(args, tmp_path, D2LLM_DIST_TIMEOUT="4", D2LLM_TEST_STALL_RANK="1")
    assert result.returncode != 0
    errors = rank_errors(result, "teacher-score")
    assert len(errors) == 1 and "rank 0 of 2 failed at 'finish teacher scoring" in errors[0], result.stderr
    assert "Ranks 1 failed to pass monitoredBarrier" in errors[0] and "D2LLM_DIST_TIMEOUT" in errors[0]
    assert time.perf_counter() - start < 90  # the launcher then stops the stuck rank


# --- distillation under DDP -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory) -> dict[str, str]:
    return write_eval_data(tmp_path_factory.mktemp("eval-data"))


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory) -> dict[str, Any]:
    """Raw training data whose rows divide into whole global batches of 4: NLI with 8 premises (one entailment and
    two contradictions each: 8 rows of K = 2, 24 pairs) and a BEIR set of 4 queries (one candidate negative each: 4
    rows of K = 1, 8 pairs); every text distinct, so no batch sampler skips a row."""
    rng = random.Random(3)
    texts: list[str] = []
    while len(texts) < 8 * 4 + 4 + 8:
        text = sentence(rng, 5)
        if text not in texts:
            texts.append(text)
    root = tmp_path_factory.mktemp("ddp-data")
    nli = []
    for i in range(8):
        premise, entailed, *contradicted = texts[4 * i : 4 * i + 4]
        nli.append({"premise": premise, "hypothesis": entailed, "label": "entailment"})
        nli += [{"premise": premise, "hypothesis": text, "label": "contradiction"} for text in contradicted]
    nli_path = write_jsonl_gz(str(root / "nli" / "train.jsonl.gz"), nli)
    queries, docs = texts[32:36], texts[36:44]
    beir = root / "qa"
    write_jsonl_gz(
        str(beir / "corpus.jsonl.gz"), [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(docs)]
    )
    write_jsonl_gz(str(beir / "queries.jsonl.gz"), [{"_id": f"q{i}", "text": t} for i, t in enumerate(queries)])
    for folder, lines in (
        ("qrels", [f"q{i}\td{i}\t1" for i in range(4)]),
        ("candidates", [f"q{i}\td{i}\t1\nq{i}\td{i + 4}\t0" for i in range(4)]),
    ):
        os.makedirs(beir / folder)
        (beir / folder / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n")
    return {"nli": nli_path, "qa": str(beir), "pairs": 32}


def ddp_config(tiny_llama, eval_data, ddp_data, output_dir, cache, batch_size: int) -> DistillConfig:
    """4 steps of batch ``batch_size`` per process (an epoch is 3), a checkpoint every 2; in-batch candidates
    gathered; the false-negative filters updated at the epoch's end from the positive scores of steps 1-3, which a
    kill after step 2 splits between a checkpoint and the resumed run (margin 1: they flag nothing, so the terms stay
    comparable)."""
    return make_config(tiny_llama, eval_data, str(output_dir), per_device_train_batch_size=batch_size).with_overrides(
        [
            f"datasets.nli_toy.path={ddp_data['nli']}",
            "datasets.nli_toy.builder={mining: none}",
            f"datasets.qa_toy.path={ddp_data['qa']}",
            "datasets.qa_toy.builder={mining: none}",
            f"teacher.cache={cache}",
            "loss.gather_across_devices=true",
            "loss.word_level_weight=0",
            "false_negatives.enabled=true",
            "false_negatives.options={margin: 1.0}",
        ]
    )


def log_terms(run) -> dict[int, dict[str, float]]:
    with open(os.path.join(run, "checkpoint-4", "trainer_state.json"), encoding="utf-8") as f:
        history = json.load(f)["log_history"]
    return {entry["step"]: entry for entry in history if "loss" in entry}


def test_distill_under_ddp_follows_one_process_resumes_after_a_kill_and_scores_each_pair_once(
    tiny_llama, eval_data, ddp_data, tmp_path, monkeypatch, capsys
):
    """2 processes x batch 2 with gathering = 1 process x batch 4, step by step, across a kill and a resume.

    float32 backbone (D2LLM_CPU_DTYPE): the two runs then differ only by float rounding (the same texts, other
    matrix shapes and a gradient all-reduce), ~1e-7 relative on the loss; bf16 would add ~1e-2. Word level is off:
    its mean over query tokens is taken per process, then across processes, so it weights processes, not tokens,
    alike (as do the RI terms when the filter drops different numbers of negatives per process).
    """
    monkeypatch.setenv("D2LLM_CPU_DTYPE", "float32")
    cache, run = tmp_path / "scores.sqlite", tmp_path / "ddp"
    path = str(tmp_path / "ddp.yaml")
    ddp_config(tiny_llama, eval_data, ddp_data, run, cache, batch_size=2).save(path)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    env = {"D2LLM_CPU_DTYPE": "float32"}
    start = time.perf_counter()

    # Rank 1 is killed (SIGKILL) as it starts step 3; rank 0 fails at once.
    killed = launch(
        ["distill", path],
        tmp_path,
        D2LLM_TEST_COUNT_DIR=str(first),
        D2LLM_TEST_KILL_RANK="1",
        D2LLM_TEST_KILL_STEPS="2",
        **env,
    )
    assert killed.returncode != 0, killed.stderr[-3000:]
    pairs = ddp_data["pairs"]
    assert counted(first, "teacher") == pairs == rows(str(cache))  # every pair scored once, by one process
    assert counted(first, "step") == 4  # 2 steps x 2 processes
    assert (run / "checkpoint-2").is_dir() and not (run / "checkpoint-4").exists() and not (run / "model").exists()

    # Another number of processes would change the global batch: refused, before anything loads.
    capsys.readouterr()
    assert main(["distill", path]) == 2
    error = capsys.readouterr().err
    assert "checkpoint-2 was trained by 2 process(es) but this run has 1" in error and "--overwrite" in error

    resumed = launch(["distill", path], tmp_path, launcher="accelerate", D2LLM_TEST_COUNT_DIR=str(second), **env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    wall = time.perf_counter() - start
    assert counted(second, "teacher") == 0 and counted(second, "step") == 4  # steps 3 and 4, in each process
    assert resumed.stdout.count("| sts_toy | spearman |") == 1  # rank 0 alone reports

    # One process with the global batch: the same losses, step by step, and the same filter thresholds.
    one = ddp_config(tiny_llama, eval_data, ddp_data, tmp_path / "one", cache, batch_size=4)
    reference = distill(one)
    ddp_steps, one_steps = log_terms(run), log_terms(tmp_path / "one")
    assert sorted(ddp_steps) == sorted(one_steps) == [1, 2, 3, 4]
    for step, terms in one_steps.items():
        for name in ("loss", "grad_norm", "in_batch", "contrastive_imitation", "rank_imitation_pearson"):
            assert ddp_steps[step][name] == pytest.approx(terms[name], rel=1e-4, abs=1e-6), (step, name)
    filters = [json.load(open(r / "checkpoint-4" / "false_negative_filter.json")) for r in (run, tmp_path / "one")]
    for name in ("nli_toy", "qa_toy"):  # updated at step 3 from all 3 steps' scores, across the kill
        assert [step for step, _ in filters[0][name]["history"]] == [3]
        np.testing.assert_allclose(filters[0][name]["history"], filters[1][name]["history"], rtol=1e-6)
    # Every process updated its filters from all processes' scores: the ranks logged the same thresholds.
    logged: dict[str, list[str]] = {}
    for line in resumed.stderr.splitlines():
        if "False-negative threshold of" in line:
            rank = line.split("[rank ")[1].split("/")[0]
            logged.setdefault(rank, []).append(line.split("False-negative threshold of ")[1].split(" (")[0])
    assert set(logged) == {"0", "1"} and logged["0"] == logged["1"], logged
    assert [entry.split(":")[0] for entry in logged["0"]] == [  # the epoch's end, then the end of training
        "nli_toy at step 3",
        "qa_toy at step 3",
        "nli_toy at step 4",
    ]

    # The saved model loads in one process and scores what rank 0 reported, and what one process trained.
    results = json.load(open(run / "results.json"))
    model = D2LLM(str(run / "model"), device="cpu")
    batch_size = one.evaluation.batch_size
    evaluators = [build_evaluator(**dataclasses.asdict(s), batch_size=batch_size) for s in one.evaluation.sets]
    for name, metrics in evaluate(model, evaluators).items():
        assert metrics == pytest.approx(results["scores"][name], abs=1e-6), name
        assert metrics == pytest.approx(reference.scores[name], abs=1e-3), name
    card = (run / "model" / "README.md").read_text()
    assert "on 2 processes (DDP" in card and "in-batch candidates gathered across processes" in card
    print(f"distill: 2 processes killed + resumed, and the 1-process reference: {wall:.1f} s")


def test_distill_ranks_that_see_different_output_folders_stop_before_loading_anything(
    tiny_llama, eval_data, ddp_data, tmp_path
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = str(tmp_path / "run.yaml")
    ddp_config(tiny_llama, eval_data, ddp_data, "node-local/run", tmp_path / "s.sqlite", batch_size=2).save(path)
    start = time.perf_counter()
    result = launch(["distill", path], tmp_path, D2LLM_TEST_CHDIR_RANK="1", D2LLM_TEST_CHDIR=str(elsewhere))
    assert result.returncode != 0
    errors = rank_errors(result, "distill")
    message = "d2llm distill: error: The output folder (training.output_dir) node-local/run is not one folder shared"
    assert errors and result.stderr.count(message) == 2, result.stderr[-3000:]  # one line each (they may interleave)
    assert "Loading weights" not in result.stderr and not (elsewhere / "node-local" / "run").exists()
    assert time.perf_counter() - start < 60


# --- one process -----------------------------------------------------------------------------------------------


def test_shards_are_disjoint_and_cover_everything():
    for size in (0, 1, 5, 17):
        for world in (1, 2, 3, 8):
            parts = [distributed.shard(list(range(size)), rank, world) for rank in range(world)]
            assert sorted(sum(parts, [])) == list(range(size))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        distributed.shard([1, 2], 2, 2)


def test_launch_variables_are_checked(monkeypatch):
    for name in distributed.LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.launch_environment() == (0, 1, 0)
    single = distributed.setup()
    assert not single.is_distributed and single.broadcast(3, "x") == 3 and single.all_gather(3, "x") == [3]
    with pytest.raises(UserError, match="boom"):
        single.on_main("x", lambda: (_ for _ in ()).throw(UserError("boom")))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not set: start"):
        distributed.launch_environment()
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(DistributedError, match="RANK=2 is not below WORLD_SIZE=2"):
        distributed.launch_environment()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(UserError, match="D2LLM_DIST_TIMEOUT='soon' must be a number of seconds"):
        distributed.timeout_seconds()


def test_more_processes_than_gpus_on_a_node_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.select_device(1, 4) == "cuda:1"
    with pytest.raises(DistributedError, match="LOCAL_RANK=2 but this node has 2 GPU"):
        distributed.select_device(2, 4)


def test_a_missing_process_fails_the_launch_in_time_with_one_line(tmp_path, corpus_file, student):
    """WORLD_SIZE=2 set, but only this process started (a wrong world size): no hang, one line, status 2."""
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    env.update(MASTER_PORT=free_port(), D2LLM_DIST_TIMEOUT="3", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "d2llm_st.cli", "encode", "--model", student, "--corpus", corpus_file]
    result = subprocess.run(
        [*command, "--output", str(tmp_path / "e")], env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr and error.startswith("d2llm encode: error: rank 0: not all WORLD_SIZE=2")
    assert "1/2 clients joined" in error and "unset WORLD_SIZE to run in one process" in error


def test_aligned_sampler_gives_all_processes_one_dataset_per_step_as_one_process_with_their_batch():
    from accelerate.data_loader import BatchSamplerShard
    from datasets import Dataset
    from sentence_transformers.base.sampler import (
        NoDuplicatesBatchSampler,
        ProportionalBatchSampler,
        RoundRobinBatchSampler,
    )
    from torch.utils.data import ConcatDataset

    from d2llm_st.training.trainer import AlignedMultiDatasetBatchSampler

    sizes = {"a": 16, "b": 8}
    datasets = [Dataset.from_dict({"anchor": [f"{name} {i}" for i in range(size)]}) for name, size in sizes.items()]
    concat = ConcatDataset(datasets)

    def batches(sampler_class, batch_size: int, **kwargs) -> list[list[int]]:
        generator = torch.Generator().manual_seed(42)
        samplers = [
            NoDuplicatesBatchSampler(d, batch_size=batch_size, drop_last=True, generator=generator, seed=42)
            for d in datasets
        ]
        sampler = sampler_class(concat, samplers, generator=generator, seed=42, **kwargs)
        sampler.set_epoch(1)
        assert len(list(sampler)) == len(sampler)
        return list(sampler)

    for mode, original in (("proportional", ProportionalBatchSampler), ("round_robin", RoundRobinBatchSampler)):
        one = batches(AlignedMultiDatasetBatchSampler, 4, mode=mode)
        assert one == batches(original, 4)  # one process: sentence-transformers' own sampling
        two = batches(AlignedMultiDatasetBatchSampler, 2, mode=mode, world_size=2)
        assert [two[i] + two[i + 1] for i in range(0, len(two), 2)] == one  # 2 x 2 rows = the batches of 4
        for rank in (0, 1):  # what accelerate's data loader gives each process: at each step, one dataset for all
            shard = BatchSamplerShard(two, num_processes=2, process_index=rank, even_batches=False)
            assert [batch[0] >= 16 for batch in shard] == [batch[0] >= 16 for batch in one]


def test_distill_with_world_size_2_and_one_process_fails_in_time(
    monkeypatch, tiny_llama, eval_data, ddp_data, tmp_path
):
    """A missing process (a wrong --nproc_per_node / --nnodes): the join times out with one line, no hang."""
    path = str(tmp_path / "run.yaml")
    ddp_config(tiny_llama, eval_data, ddp_data, tmp_path / "run", tmp_path / "s.sqlite", batch_size=2).save(path)
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", free_port())
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "2")
    start = time.perf_counter()
    with pytest.raises(DistributedError, match=r"rank 0: not all WORLD_SIZE=2 processes joined .* 1/2 clients joined"):
        main(["--debug", "distill", path])
    assert time.perf_counter() - start < 30 and not torch.distributed.is_initialized()
    assert not (tmp_path / "run" / "distill_config.yaml").exists()


def test_teacher_score_with_several_processes_needs_a_cache(monkeypatch, tiny_llama, nli_file, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "2")  # were the check late, joining would fail in 2 s, not hang
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    data, _ = nli_file
    assert main(["teacher-score", "--teacher", tiny_llama, "--kind", "nli", "--data", data]) == 2
    assert "With 2 processes, give --cache (or --output)" in capsys.readouterr().err


def test_cache_merge_is_idempotent_and_keeps_features(tmp_path):
    main_cache, other = ScoreCache(str(tmp_path / "a.sqlite")), ScoreCache(str(tmp_path / "b.sqlite"), "DELETE")
    main_cache.put([b"k1", b"k2"], [0.1, 0.2], np.ones((2, 3), dtype=np.float32))
    other.put([b"k2", b"k3"], [0.25, 0.3])
    other.close()
    assert main_cache.merge(str(tmp_path / "b.sqlite")) == 2 == main_cache.merge(str(tmp_path / "b.sqlite"))
    found = main_cache.get([b"k1", b"k2", b"k3"])
    assert len(main_cache) == 3 and found[b"k2"][0] == 0.25 and found[b"k2"][1] is not None
    (tmp_path / "empty.sqlite").write_bytes(b"")  # a rank killed before it created its table
    assert main_cache.merge(str(tmp_path / "empty.sqlite")) == 0
    with pytest.raises(ValueError, match="journal_mode"):
        ScoreCache(str(tmp_path / "c.sqlite"), "MEMORY")


def test_one_process_resumes_a_killed_multi_process_run(tiny_llama, tmp_path):
    """Shard files left by killed ranks are merged first; only the rest is scored (with any number of processes)."""
    rng = random.Random(2)
    pairs = [(sentence(rng, 5), sentence(rng, 4)) for _ in range(9)]
    teacher = LLMTeacher(tiny_llama, device="cpu")
    expected = teacher.score(pairs, "asymmetric", batch_size=4).scores
    cache = str(tmp_path / "scores.sqlite")
    keys = [cache_key(teacher.identity, teacher.template_key("asymmetric"), a, b) for a, b in pairs]
    for rank, part in enumerate([[0, 2], [1, 5, 7]]):
        shard = ScoreCache(sharded.shard_path(cache, rank), "DELETE")
        shard.put([keys[i] for i in part], expected[part])
        shard.close()
    scored: list[int] = []
    original = teacher._score_batches

    def spy(todo, *args, **kwargs):
        scored.append(len(todo))
        return original(todo, *args, **kwargs)

    teacher._score_batches = spy
    output = sharded.score_sharded(teacher, pairs, "asymmetric", dist=Distributed(), cache=cache, batch_size=4)
    assert scored == [4] and rows(cache) == 9 and not os.listdir(sharded.shard_folder(cache))
    np.testing.assert_allclose(output.scores, expected, atol=1e-6)
    assert teacher.cache is None


def test_encode_resumes_checks_the_folder_and_overwrites(student, corpus_file, tmp_path):
    model = D2LLM(student, device="cpu")
    output = str(tmp_path / "embeddings")
    manifest = encode_corpus(model, corpus_file, output, shard_size=5, batch_size=4, show_progress_bar=False)
    assert manifest["complete"] and manifest["num_shards"] == 5 and manifest["prompt"] == "passage : "
    before = load_corpus_embeddings(output).embeddings

    # An interrupted run: a missing shard, a stale temporary file, the manifest not complete.
    os.remove(shard_path(output, 3))
    with open(shard_path(output, 3) + ".tmp", "wb") as f:
        f.write(b"half a shard")
    with open(os.path.join(output, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump({**manifest, "complete": False}, f)
    with pytest.raises(UserError, match="is unfinished .* run the same d2llm encode again"):
        load_corpus_embeddings(output)
    calls: list[int] = []
    original = model.encode_texts
    model.encode_texts = lambda texts, role, **kwargs: calls.append(len(texts)) or original(texts, role, **kwargs)
    encode_corpus(model, corpus_file, output, shard_size=5, batch_size=4, show_progress_bar=False)
    assert calls == [5] and not os.path.exists(shard_path(output, 3) + ".tmp")
    np.testing.assert_allclose(load_corpus_embeddings(output).embeddings, before, atol=1e-6)

    with pytest.raises(UserError, match=r"other settings \(shard_size 5 here vs 4 now\).*--overwrite"):
        encode_corpus(model, corpus_file, output, shard_size=4, show_progress_bar=False)
    manifest = encode_corpus(model, corpus_file, output, shard_size=4, overwrite=True, show_progress_bar=False)
    assert manifest["num_shards"] == 6 and len([n for n in os.listdir(output) if n.startswith("shard-")]) == 6

    duplicated = tmp_path / "duplicated.jsonl"
    duplicated.write_text('{"_id": "a", "text": "the cat"}\n{"id": "a", "text": "the dog"}\n')
    with pytest.raises(UserError, match="the id 'a' appears twice"):
        encode_corpus(model, str(duplicated), str(tmp_path / "d"))


def test_cli_encode_merges_the_lora_adapter_and_keeps_the_vectors(tiny_llama, corpus_file, tmp_path, monkeypatch):
    """`d2llm encode` only encodes, so it folds LoRA into the weights (2x faster in bf16) without moving a vector."""
    from d2llm_st.cli import main

    monkeypatch.setenv("D2LLM_CPU_DTYPE", "float32")
    torch.manual_seed(0)
    model = D2LLM.from_llm(tiny_llama, lora_r=4, pma_heads=4, iem_hidden_dim=16, device="cpu")
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # a trained adapter: merged or not matters
    path = str(tmp_path / "student")
    model.save_pretrained(path)
    merged: list[bool] = []
    from d2llm_st.modules import LLMBackbone

    original = LLMBackbone.merge_lora
    monkeypatch.setattr(LLMBackbone, "merge_lora", lambda self: merged.append(True) or original(self))
    assert main(["encode", "--model", path, "--corpus", corpus_file, "--output", str(tmp_path / "e")]) == 0
    assert merged == [True]
    stored = load_corpus_embeddings(str(tmp_path / "e"))
    from d2llm_st.data.readers import passage_text

    with open(corpus_file, encoding="utf-8") as f:
        texts = {row["_id"]: passage_text(row) for row in map(json.loads, f)}
    expected = D2LLM(path, device="cpu").encode_texts([texts[i] for i in stored.ids], "passage")
    np.testing.assert_allclose(stored.embeddings, np.asarray(expected), atol=1e-4)
