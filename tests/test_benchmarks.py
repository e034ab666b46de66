"""The benchmark scripts run end to end on tiny inputs and write what the docs are built from."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from d2llm_st import D2LLM

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


def run_script(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, name), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_speed_benchmark_writes_json_table_and_plot(tiny_llama, tmp_path):
    out = tmp_path / "speed"
    stdout = run_script(
        "speed.py",
        *("--device", "cpu", "--shapes", "tiny", "--tokenizer", tiny_llama, "--n", "3", "12"),
        *("--corpus-size", "4", "--passage-tokens", "12", "--query-tokens", "10", "--repeats", "2"),
        *("--output-dir", str(out)),
    )
    result = json.loads((out / "speed.json").read_text())
    run = result["runs"][0]
    assert result["machine"]["device"] == "cpu" and "speed.py" in result["machine"]["command"]
    assert [row["n"] for row in run["rerank"]] == [3, 12]
    for row in run["rerank"]:
        assert row["ce_ms"] > 0 and row["d2llm_fast_ms"] > 0 and row["iem_ms"] > 0
        assert row["speedup"] == pytest.approx(row["ce_ms"] / row["d2llm_fast_ms"])
    assert run["corpus"]["passages_per_s"] > 0
    assert run["fast_vs_plain_relative_error"] < 1e-5  # float32 on the CPU: the fast path is the plain one
    assert "| tiny | 12 |" in stdout and (out / "benchmark_latency.png").stat().st_size > 10_000
    report = run_script("speed.py", "--report", str(out / "speed.json"), "--plot", str(tmp_path / "p.png"))
    assert "| tiny | 3 |" in report and (tmp_path / "p.png").exists()


def test_untrained_similarity_reports_each_similarity(tiny_llama, shared_data, tmp_path):
    out = tmp_path / "untrained.json"
    stdout = run_script(
        "untrained_similarity.py",
        *("--model", tiny_llama, "--data", os.path.join(shared_data, "sts", "stsb", "dev.jsonl.gz")),
        *("--limit", "40", "--pma-heads", "4", "--iem-hidden-dim", "16", "--output", str(out)),
    )
    result = json.loads(out.read_text())
    spearman = result["spearman"]
    assert result["pairs"] == 40 and "untrained_similarity.py" in result["machine"]["command"]
    assert len(spearman) == 4 and all(-100 <= value <= 100 for value in spearman.values())
    assert len(set(spearman.values())) == 4  # four different similarities, not one computed four times
    assert "| cosine of PMA embeddings |" in stdout


def test_quality_table_runs_every_cell(tiny_llama, minilm, shared_data, tmp_path):
    torch.manual_seed(0)
    student = tmp_path / "student"
    D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=16, device="cpu").save_pretrained(str(student))
    out = tmp_path / "quality"
    args = ["--data", shared_data, "--output-dir", str(out), "--student", str(student), "--bi-encoder", minilm]
    args += ["--tasks", "stsb", "scifact", "--limit", "20", "--limit-queries", "3", "--max-corpus", "30"]
    stdout = run_script("quality_table.py", *args, "--candidate-k", "5", "--device", "cpu")
    table = (out / "quality_table.md").read_text()
    assert table in stdout + "\n" and "Quick check on subsets" in table
    assert "| D2LLM student (IEM): `student` |" in table and "| BERT bi-encoder (cosine): `model` |" in table
    cell = json.loads((out / "student-scifact.json").read_text())
    assert cell["settings"]["first_stage"] == minilm and cell["settings"]["candidate_k"] == 5
    assert cell["command"] in table and "--first-stage" in cell["command"]
    assert f"{100 * cell['metrics']['ndcg@10']:.1f}" in table


PUBLIC_PACKAGES = (
    "d2llm_st",
    "d2llm_st.data",
    "d2llm_st.deelm",
    "d2llm_st.evaluation",
    "d2llm_st.losses",
    "d2llm_st.modules",
    "d2llm_st.teacher",
    "d2llm_st.training",
)
"""Packages whose ``__all__`` is public API."""
PUBLIC_MODULES = (
    "d2llm_st.cli",
    "d2llm_st.errors",
    "d2llm_st.evaluation.metrics",
    "d2llm_st.gguf",
    "d2llm_st.inference",
    "d2llm_st.model_paths",
    "d2llm_st.runtime",
    "d2llm_st.tasks",
)
"""Modules documented in docs/api.md as a whole (their names without a leading underscore are public)."""


def test_benchmarks_and_examples_use_the_public_api():
    import ast
    import importlib

    folders = [BENCHMARKS, os.path.join(os.path.dirname(__file__), "..", "examples")]
    internal = []
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("d2llm_st"):
                    for alias in node.names:
                        if node.module in PUBLIC_PACKAGES:
                            public = alias.name in importlib.import_module(node.module).__all__
                        else:
                            public = node.module in PUBLIC_MODULES and not alias.name.startswith("_")
                        if not public:
                            internal.append(f"{name}: from {node.module} import {alias.name}")
                elif isinstance(node, ast.Import):
                    internal += [f"{name}: import {a.name}" for a in node.names if a.name.startswith("d2llm_st.")]
    assert not internal, internal


@pytest.mark.slow
def test_cpu_speed_benchmark_times_each_pass_against_the_bare_bf16_backbone(smollm2, tmp_path):
    out = tmp_path / "speed"
    stdout = run_script(
        "speed.py",
        *("--device", "cpu", "--n", "10", "--corpus-size", "4", "--encode-batch-size", "2"),
        *("--passage-tokens", "16", "--query-tokens", "12", "--repeats", "2", "--ce-max-n", "10"),
        *("--dtype", "float32", "--output-dir", str(out)),
    )
    result = json.loads((out / "speed-cpu-float32.json").read_text())
    run = result["runs"][0]
    assert result["cpu"] and run["dtype"] == "float32" and run["lora_r"] == 8
    assert result["machine"]["load_average"] and result["machine"]["torch_threads"] >= 1
    row = run["rerank"][0]
    for key in ("bare_plain_ms", "d2llm_plain_ms", "bare_fast_ms", "d2llm_fast_ms", "ce_ms"):
        assert row[key] > 0, key
    for key in ("encode_lora", "encode_merged"):
        assert run[key]["bare"] > 0 and run[key]["d2llm"] > 0
    assert run["peak_rss_mib_inference"] > 100
    assert "| rerank N=10: FastReranker (ms) |" in stdout and "float32 / bare bf16" in stdout
    report = run_script("speed.py", "--report", str(out / "speed-cpu-float32.json"))
    assert "corpus encoding, LoRA merged (passages/s)" in report
