"""The distillation pipeline on a tiny LLM: config round trips, training, evaluation, saving, resuming, CLI."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import re
import shutil

import pytest
import torch
from conftest import error_lines
from datasets import Dataset

from d2llm_st.evaluation import build_evaluator, evaluate
from d2llm_st.training import (
    DatasetConfig,
    DistillConfig,
    EvalSetConfig,
    EvaluationConfig,
    FalseNegativeConfig,
    StudentConfig,
    TeacherConfig,
    TrainingConfig,
    distill,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread; two threads on a busy 2-core machine spin and wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_jsonl_gz(path: str, rows: list[dict]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return path


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory) -> dict[str, str]:
    return write_eval_data(tmp_path_factory.mktemp("eval-data"))


def write_eval_data(root) -> dict[str, str]:
    """Tiny STS / NLI / answer-selection files in the shared data formats (words from the tiny vocabulary)."""
    sts = write_jsonl_gz(
        str(root / "sts" / "dev.jsonl.gz"),
        [
            {"sentence1": "the cat sat on the mat", "sentence2": "a cat sat on a mat", "score": 5.0},
            {"sentence1": "the dog ran", "sentence2": "a dog ran fast", "score": 4.0},
            {"sentence1": "the man cooks food", "sentence2": "the chef cooks pizza", "score": 3.0},
            {"sentence1": "rain in winter", "sentence2": "the team play football", "score": 0.5},
            {"sentence1": "the bird flew", "sentence2": "the fish swam in the river", "score": 1.0},
        ],
    )
    nli = write_jsonl_gz(
        str(root / "nli" / "dev.jsonl.gz"),
        [
            {"premise": "the boy play football", "hypothesis": "the boy play a game", "label": "entailment"},
            {"premise": "the woman drives a car", "hypothesis": "the woman is on the road", "label": "entailment"},
            {"premise": "the cat sat", "hypothesis": "the cat ran", "label": "contradiction"},
            {"premise": "the sun is hot", "hypothesis": "the sun is cold", "label": "contradiction"},
            {"premise": "the dog ran", "hypothesis": "the dog is fast", "label": "neutral"},
        ],
    )
    beir = root / "qa"
    write_jsonl_gz(
        str(beir / "corpus.jsonl.gz"),
        [
            {"_id": "d1", "title": "", "text": "paris is the capital of france"},
            {"_id": "d2", "title": "", "text": "the river sea water"},
            {"_id": "d3", "title": "", "text": "the drug decreases the disease"},
            {"_id": "d4", "title": "", "text": "the gene and the cell"},
        ],
    )
    write_jsonl_gz(
        str(beir / "queries.jsonl.gz"),
        [{"_id": "q1", "text": "what is the capital of france"}, {"_id": "q2", "text": "which drug"}],
    )
    for folder, rows in (
        ("qrels", [("q1", "d1", 1), ("q2", "d3", 1)]),
        ("candidates", [("q1", "d1", 1), ("q1", "d2", 0), ("q2", "d3", 1), ("q2", "d4", 0), ("q2", "d2", 0)]),
    ):
        os.makedirs(beir / folder, exist_ok=True)
        with open(beir / folder / "dev.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows))
    return {"sts": sts, "nli": nli, "qa": str(beir)}


NLI_ROWS = {
    "anchor": ["the boy play football", "the woman drives a car", "the cat sat on the mat", "the chef cooks pizza"],
    "positive": ["the boy play a game", "the woman is on the road", "a cat sat", "a man cooks food"],
    "negative_1": ["the boy is in the kitchen", "the woman eat bread", "the dog ran", "the chef is cold"],
    "negative_2": ["rain and sun", "the bird flew", "the sky is blue", "the car drives fast"],
}
QA_ROWS = {
    "anchor": ["what is the capital of france", "which drug", "where is the river", "who cooks pizza"],
    "positive": ["paris is the capital", "the drug decreases the disease", "the river sea", "the chef cooks pizza"],
    "negative_1": ["the capital of europe", "the gene", "the city", "the food"],
}


def train_datasets(with_features: bool = False) -> dict[str, Dataset]:
    nli_labels = [[0.9, 0.3, 0.05], [0.8, 0.2, 0.1], [0.95, 0.6, 0.02], [0.7, 0.4, 0.1]]
    if with_features:
        generator = torch.Generator().manual_seed(0)
        nli_labels = [[[s, *torch.randn(5, generator=generator).tolist()] for s in row] for row in nli_labels]
    qa_labels = [[0.9, 0.3], [0.8, 0.2], [0.7, 0.1], [0.85, 0.5]]
    return {
        "nli_toy": Dataset.from_dict({**NLI_ROWS, "label": nli_labels}),
        "qa_toy": Dataset.from_dict({**QA_ROWS, "label": qa_labels}),
    }


def make_config(tiny_llama: str, eval_data: dict[str, str], output_dir: str, **training) -> DistillConfig:
    return DistillConfig(
        student=StudentConfig(
            model_name_or_path=tiny_llama,
            lora_r=4,
            lora_dropout=0.0,
            pma_heads=4,
            iem_hidden_dim=16,
            max_seq_length=32,
            query_prompt="query ? ",
            passage_prompt="passage ? ",
            symmetric_prompt="text ? ",
        ),
        teacher=TeacherConfig(model=tiny_llama, batch_size=4),
        datasets=[
            DatasetConfig(name="nli_toy", type="nli", path="unused", num_negatives=2),
            DatasetConfig(name="qa_toy", type="beir", path="unused", num_negatives=1),
        ],
        false_negatives=FalseNegativeConfig(enabled=False),
        training=TrainingConfig(
            output_dir=output_dir,
            **{
                "max_steps": 4,
                "per_device_train_batch_size": 2,
                "save_steps": 2,
                "logging_steps": 1,
                "learning_rate": 1e-2,
                **training,
            },
        ),
        evaluation=EvaluationConfig(
            sets=[
                EvalSetConfig(name="sts_toy", type="sts", path=eval_data["sts"]),
                EvalSetConfig(name="nli_toy", type="nli", path=eval_data["nli"]),
                EvalSetConfig(name="qa_toy", type="answer-selection", path=eval_data["qa"], split="dev"),
            ],
            batch_size=4,
        ),
    )


def test_config_round_trips_and_overrides(tmp_path):
    config = DistillConfig(
        datasets=[DatasetConfig(name="snli", type="nli", path="data/snli.jsonl.gz", builder={"mining": "bm25"})],
        evaluation=EvaluationConfig(sets=[EvalSetConfig(name="stsb", type="sts", path="stsb/dev.jsonl.gz")]),
    )
    for name in ("run.yaml", "run.json"):
        config.save(str(tmp_path / name))
        assert DistillConfig.load(str(tmp_path / name)) == config
    assert DistillConfig.from_yaml(config.to_yaml()) == config

    changed = config.with_overrides(["loss.alpha=0", "datasets.snli.limit=100", "training.bf16=true", "mode=baseline"])
    values = (changed.loss.alpha, changed.datasets[0].limit, changed.training.bf16, changed.mode)
    assert values == (0, 100, True, "baseline")
    assert config.loss.alpha == 1.0 and changed.datasets[0].task == "symmetric"

    with pytest.raises(ValueError, match=r"Unknown key\(s\) \['alhpa'\] in config.loss"):
        DistillConfig.from_dict({"loss": {"alhpa": 1}})
    with pytest.raises(ValueError, match="no key 'alhpa'"):
        config.with_overrides(["loss.alhpa=0"])
    with pytest.raises(ValueError, match="mode must be one of"):
        config.with_overrides(["mode=fast"])
    with pytest.raises(ValueError, match=r"datasets\[0\].type"):
        DistillConfig.from_dict({"datasets": [{"name": "x", "type": "qa", "path": "p"}]})


def test_distill_trains_evaluates_and_saves_a_documented_model(tiny_llama, eval_data, tmp_path):
    from sentence_transformers import SentenceTransformer

    from d2llm_st import D2LLM  # importing d2llm_st registers the modules for plain SentenceTransformer loading

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run"))
    result = distill(config, train_datasets=train_datasets(with_features=True))

    assert result.steps == 4
    assert set(result.scores) == {"sts_toy", "nli_toy", "qa_toy"}
    assert -1 <= result.scores["sts_toy"]["spearman"] <= 1 and 0 <= result.scores["qa_toy"]["ndcg@10"] <= 1
    saved = json.load(open(tmp_path / "run" / "results.json"))
    assert saved["scores"] == result.scores and saved["steps"] == 4
    assert DistillConfig.load(str(tmp_path / "run" / "distill_config.yaml")) == config

    # Every term was logged separately; the dataset with features trained feature imitation too.
    state = json.load(open(tmp_path / "run" / "checkpoint-4" / "trainer_state.json"))
    logged = set().union(*(entry.keys() for entry in state["log_history"]))
    assert {"in_batch", "contrastive_imitation", "rank_imitation_pearson", "word_level", "feature_imitation"} <= logged

    # The saved model reloads both ways and reproduces the reported scores.
    reloaded = D2LLM(result.model_dir, device="cpu")
    plain = SentenceTransformer(result.model_dir, device="cpu")
    assert [type(m).__name__ for m in plain] == ["LLMBackbone", "PMAPooling", "IEM"]
    evaluators = [build_evaluator(**dataclasses.asdict(eval_set)) for eval_set in config.evaluation.sets]
    for name, metrics in evaluate(reloaded, evaluators).items():
        assert metrics == pytest.approx(result.scores[name], abs=1e-5), name
    card = open(os.path.join(result.model_dir, "README.md")).read()
    assert "## D2LLM distillation" in card and "LLMTeacher:" in card
    assert "| nli_toy | nli | symmetric |" in card and "| qa_toy | beir | asymmetric |" in card
    assert f"| qa_toy (dev) | answer-selection | ndcg@10 | {result.scores['qa_toy']['ndcg@10']:.4f} |" in card
    assert "alpha=1.0, beta=1.0, gamma=0.01, eta=0.001" in card and "import d2llm_st" in card
    assert card.index("## D2LLM distillation") < card.index("## Training Details")
    assert "'label': 'passage ? '" not in card  # prompts only for text columns
    first_features = train_datasets(with_features=True)["nli_toy"][0]["label"][0]
    assert str(first_features[:3])[:-1] in card and str(first_features)[:-1] not in card  # features shortened


def test_distill_resumes_from_the_last_checkpoint_after_a_kill(tiny_llama, eval_data, tmp_path, caplog):
    from d2llm_st import D2LLM

    full = distill(make_config(tiny_llama, eval_data, str(tmp_path / "full")), train_datasets(), resume=False)
    # Checkpoints hold what trains (LoRA, PMA, IEM, optimizer), not the frozen base LLM: it is read again from
    # the recorded base model on resume.
    checkpoint = os.path.join(full.output_dir, "checkpoint-2")
    assert not os.path.exists(os.path.join(checkpoint, "model.safetensors"))
    with open(os.path.join(checkpoint, "d2llm_backbone_config.json")) as f:
        assert json.load(f)["base_model_name_or_path"] == os.path.abspath(tiny_llama)
    assert os.path.isfile(os.path.join(checkpoint, "adapter", "adapter_model.safetensors"))
    assert os.path.isfile(os.path.join(full.model_dir, "model.safetensors"))  # the final model is self-contained

    # A run killed between step 2's checkpoint and the end: only checkpoint-2 is on disk. Start it again.
    killed_dir = str(tmp_path / "killed")
    shutil.copytree(full.output_dir, killed_dir)
    for name in ("checkpoint-4", "model", "results.json"):
        path = os.path.join(killed_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    with caplog.at_level(logging.INFO):
        resumed = distill(make_config(tiny_llama, eval_data, killed_dir), train_datasets())
    assert "Resuming from" in caplog.text and "checkpoint-2" in caplog.text
    assert resumed.steps == 4

    full_model, resumed_model = D2LLM(full.model_dir, device="cpu"), D2LLM(resumed.model_dir, device="cpu")
    for (name, a), (_, b) in zip(full_model.named_parameters(), resumed_model.named_parameters()):
        assert torch.equal(a, b), name  # bit-identical: same data order, RNG and optimizer state


def test_baseline_mode_trains_mean_pooling_with_mnrl(tiny_llama, eval_data, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    scales = []
    original_init = MultipleNegativesRankingLoss.__init__

    def recording_init(self, model, scale=20.0, **kwargs):
        scales.append(scale)
        original_init(self, model, scale=scale, **kwargs)

    monkeypatch.setattr(MultipleNegativesRankingLoss, "__init__", recording_init)
    config = make_config(tiny_llama, eval_data, str(tmp_path / "mnrl")).with_overrides(
        ["mode=baseline", "baseline.scale=30"]
    )
    result = distill(config, train_datasets())
    assert scales == [30.0, 30.0]  # one loss per training set, at the configured scale
    assert result.steps == 4 and set(result.scores) == {"sts_toy", "nli_toy", "qa_toy"}
    model = SentenceTransformer(result.model_dir, device="cpu")
    assert [type(m).__name__ for m in model] == ["LLMBackbone", "Pooling"]
    card = open(os.path.join(result.model_dir, "README.md")).read()
    assert "MultipleNegativesRankingLoss" in card and "Baseline" in card


def test_untrained_mode_only_evaluates(tiny_llama, eval_data, tmp_path):
    config = make_config(tiny_llama, eval_data, str(tmp_path / "fresh")).with_overrides(["mode=untrained"])
    result = distill(config)
    assert result.model_dir is None and result.steps == 0
    assert json.load(open(tmp_path / "fresh" / "results.json"))["scores"] == result.scores


def test_train_datasets_must_match_the_config(tiny_llama, eval_data, tmp_path):
    config = make_config(tiny_llama, eval_data, str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="each training set needs its config entry"):
        distill(config, {"nli_toy": train_datasets()["nli_toy"]})


def test_cosine_residual_and_in_batch_hard_negatives_train_and_are_saved(tiny_llama, eval_data, tmp_path):
    from d2llm_st import D2LLM

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run")).with_overrides(
        ["student.iem_cosine_residual=true", "student.iem_cosine_scale=40", "loss.in_batch_hard_negatives=true"]
    )
    result = distill(config, train_datasets())
    reloaded = D2LLM(result.model_dir, device="cpu")
    assert reloaded.iem.cosine_residual and reloaded.iem.cosine_scale == 40
    for branch in (reloaded.iem.symmetric, reloaded.iem.asymmetric):  # started at 40, then trained
        assert branch.cosine_scale.item() != 40.0 and abs(branch.cosine_scale.item() - 40.0) < 1.0
    assert "in-batch tau=1.0 with hard negatives" in open(os.path.join(result.model_dir, "README.md")).read()


def test_cli_runs_a_config_file_with_overrides(tiny_llama, eval_data, tmp_path, capsys):
    from d2llm_st.cli import main

    path = str(tmp_path / "run.yaml")
    make_config(tiny_llama, eval_data, str(tmp_path / "cli")).save(path)
    assert main(["distill", path, "--mode", "untrained", "--set", "evaluation.sets.0.limit=3"]) == 0
    out = capsys.readouterr().out
    assert "mode: untrained" in out and "| sts_toy | spearman |" in out and "| qa_toy | ndcg@10 |" in out
    saved = DistillConfig.load(str(tmp_path / "cli" / "distill_config.yaml"))
    assert saved.mode == "untrained" and saved.evaluation.sets[0].limit == 3


@pytest.mark.parametrize("name", ["smollm2_cpu_small.yaml", "smollm2_gpu.yaml"])
def test_example_configs_load_and_name_existing_data(name, shared_data):
    root = os.path.join(os.path.dirname(__file__), "..")
    config = DistillConfig.load(os.path.join(root, "configs", name))
    assert DistillConfig.from_yaml(config.to_yaml()) == config
    data_root = os.path.join(root, "..", "shared", "data")
    assert os.path.samefile(data_root, shared_data)
    for path in [dataset.path for dataset in config.datasets] + [s.path for s in config.evaluation.sets]:
        assert os.path.exists(os.path.join(root, path)), path


@pytest.fixture(scope="module")
def train_files(tmp_path_factory) -> dict[str, str]:
    """Raw training data in the shared formats: NLI with contradictions per premise, a BEIR set with candidates."""
    root = tmp_path_factory.mktemp("train-data")
    nli_rows = []
    for premise, entailed, contradicted in [
        ("the boy play football", "the boy play a game", ["the boy is in the kitchen", "the boy eat bread"]),
        ("the woman drives a car", "the woman is on the road", ["the woman is cold", "the woman swam"]),
        ("the cat sat on the mat", "a cat sat", ["the cat ran", "the cat flew"]),
        ("the chef cooks pizza", "a man cooks food", ["the chef is in the sea", "the chef sat"]),
        ("the dog ran in the rain", "the dog is wet", ["the dog sat", "the sun is hot"]),
        ("the team play soccer", "people play a game", ["the team eat", "the team sat"]),
    ]:
        nli_rows.append({"premise": premise, "hypothesis": entailed, "label": "entailment"})
        nli_rows += [{"premise": premise, "hypothesis": h, "label": "contradiction"} for h in contradicted]
    nli = write_jsonl_gz(str(root / "nli" / "train.jsonl.gz"), nli_rows)
    beir = root / "qa"
    docs = [
        "paris is the capital of france",
        "the capital of europe",
        "the drug decreases the disease",
        "the gene and the cell",
        "the river sea water",
        "the chef cooks pizza in the kitchen",
        "the team play football",
        "rain in the city",
    ]
    write_jsonl_gz(
        str(beir / "corpus.jsonl.gz"), [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(docs)]
    )
    queries = [
        "what is the capital of france",
        "which drug decreases the disease",
        "who cooks pizza",
        "what is football",
    ]
    write_jsonl_gz(str(beir / "queries.jsonl.gz"), [{"_id": f"q{i}", "text": t} for i, t in enumerate(queries)])
    relevant = {"q0": "d0", "q1": "d2", "q2": "d5", "q3": "d6"}
    for folder in ("qrels", "candidates"):
        os.makedirs(beir / folder, exist_ok=True)
    with open(beir / "qrels" / "train.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in relevant.items()))
    with open(beir / "candidates" / "train.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n{q}\td7\t0\n" for q, d in relevant.items()))
    return {"nli": nli, "qa": str(beir)}


def test_cli_distills_from_raw_data_with_filtering_and_a_shared_score_cache(
    tiny_llama, eval_data, train_files, tmp_path, capsys, caplog
):
    from d2llm_st.cli import main

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run"), max_steps=4)
    config = config.with_overrides(
        [
            f"datasets.nli_toy.path={train_files['nli']}",
            "datasets.nli_toy.builder={mining: none}",
            f"datasets.qa_toy.path={train_files['qa']}",
            "datasets.qa_toy.num_negatives=2",
            f"teacher.cache={tmp_path / 'scores.sqlite'}",
            "false_negatives.enabled=true",
            "false_negatives.update_every_steps=1",
        ]
    )
    path = str(tmp_path / "run.yaml")
    config.save(path)
    assert main(["distill", path]) == 0
    assert "| qa_toy | ndcg@10 |" in capsys.readouterr().out

    assert os.path.exists(tmp_path / "run" / "checkpoint-4" / "false_negative_filter.json")
    card = open(tmp_path / "run" / "model" / "README.md").read()
    assert "Dynamic false-negative filtering (one filter per dataset): mode `drop`; last thresholds: nli_toy" in card
    saved = json.load(open(tmp_path / "run" / "checkpoint-4" / "false_negative_filter.json"))
    assert set(saved) == {"nli_toy", "qa_toy"} and len(saved["nli_toy"]["history"]) >= 1
    assert (
        "| nli_toy | nli | symmetric | train | 6 | 2 |" in card
        and "| qa_toy | beir | asymmetric | train | 4 | 2 |" in card
    )

    # The baseline reads the same teacher scores from the cache: no pair is scored twice.
    with caplog.at_level(logging.INFO):
        assert main(["distill", path, "--mode", "baseline", "--set", f"training.output_dir={tmp_path / 'mnrl'}"]) == 0
    assert "Score cache: 18 of 18 pairs known" in caplog.text and "Score cache: 12 of 12 pairs known" in caplog.text


def load_ablation_script():
    import importlib.util

    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "distill_ablation.py")
    spec = importlib.util.spec_from_file_location("distill_ablation", script)
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    return ablation


@pytest.fixture
def ablation_config(tiny_llama, eval_data, train_files, tmp_path) -> str:
    config = make_config(tiny_llama, eval_data, str(tmp_path / "unused"), max_steps=2).with_overrides(
        [
            f"datasets.nli_toy.path={train_files['nli']}",
            "datasets.nli_toy.builder={mining: none}",
            f"datasets.qa_toy.path={train_files['qa']}",
        ]
    )
    path = str(tmp_path / "run.yaml")
    config.save(path)
    return path


def test_ablation_script_writes_a_table_and_reuses_finished_runs(ablation_config, tmp_path, capsys):
    ablation = load_ablation_script()
    argv = [ablation_config, "--output-dir", str(tmp_path / "ablation"), "--variants", "no_ci", "untrained"]
    assert ablation.main(argv) == 0
    table = open(tmp_path / "ablation" / "ablation.md").read()
    assert table.startswith("| variant | sts_toy spearman | nli_toy auc | qa_toy ndcg@10 | steps | wall s |")
    assert "| no_ci |" in table and "| untrained |" in table and "distill_ablation.py" in table
    assert DistillConfig.load(str(tmp_path / "ablation" / "no_ci" / "distill_config.yaml")).loss.alpha == 0
    capsys.readouterr()
    assert ablation.main(argv) == 0  # finished variants are read back, not re-run
    assert capsys.readouterr().out.split("\n\nCommand")[0] == table.split("\n\nCommand")[0]


def test_ablation_script_runs_variants_in_parallel_from_one_filled_cache(ablation_config, tmp_path):
    ablation = load_ablation_script()
    out = tmp_path / "parallel"
    argv = [ablation_config, "--output-dir", str(out), "--variants", "full", "bidirectional", "untrained"]
    with pytest.raises(SystemExit):  # the DeeLM arm needs its turning point
        ablation.main(argv + ["--jobs", "2"])
    assert ablation.main(argv + ["--jobs", "2", "--bidirectional-from-layer", "1"]) == 0
    table = open(out / "ablation.md").read()
    assert all(f"| {name} |" in table for name in ("full", "bidirectional", "untrained"))
    assert DistillConfig.load(str(out / "bidirectional" / "distill_config.yaml")).student.bidirectional_from_layer == 1
    assert DistillConfig.load(str(out / "full" / "distill_config.yaml")).student.bidirectional_from_layer is None
    for name in ("full", "bidirectional"):  # the parent scored every pair: the runs only read the cache
        log = open(out / f"{name}.log").read()
        lookups = re.findall(r"Score cache: (\d+) of (\d+) pairs known", log)
        assert len(lookups) == 2 and all(known == total for known, total in lookups), log[-2000:]


def test_ablation_script_runs_every_variant_per_seed_and_reports_mean_and_std(
    ablation_config, tmp_path, capsys, monkeypatch
):
    import statistics

    import d2llm_st.training

    ablation = load_ablation_script()
    out = tmp_path / "seeds"
    argv = [ablation_config, "--output-dir", str(out), "--seeds", "1", "2", "--bidirectional-from-layer", "1", "0"]
    argv += ["--variants", "full", "no_word_level", "no_filtering", "bidirectional", "untrained"]
    argv += ["--set", "false_negatives.enabled=true", "--set", "false_negatives.update_every_steps=1"]
    assert ablation.main(argv) == 0
    table = open(out / "ablation.md").read()
    lines = table.splitlines()
    assert lines[0] == "| variant | seeds | sts_toy spearman | nli_toy auc | qa_toy ndcg@10 | steps | wall s |"
    names = ["full", "no_word_level", "no_filtering", "bidirectional_1", "bidirectional_0", "untrained"]
    assert [line.split(" | ")[0].removeprefix("| ") for line in lines[2:8]] == names
    assert all(line.split(" | ")[1] == "1, 2" and line.count("±") == 3 for line in lines[2:8])

    def run_config(name: str, seed: int) -> DistillConfig:
        return DistillConfig.load(str(out / name / f"seed-{seed}" / "distill_config.yaml"))

    for seed in (1, 2):
        assert {run_config(name, seed).training.seed for name in names} == {seed}
        assert {run_config(name, seed).teacher.cache for name in names} == {str(out / "teacher_scores.sqlite")}
    assert run_config("no_word_level", 1).loss.word_level_weight == 0 and run_config("full", 1).loss.word_level_weight
    assert not run_config("no_filtering", 2).false_negatives.enabled and run_config("full", 2).false_negatives.enabled
    assert [run_config(f"bidirectional_{k}", 1).student.bidirectional_from_layer for k in (1, 0)] == [1, 0]
    assert run_config("full", 1).student.bidirectional_from_layer is None

    # mean +- sample std over the seeds in the table, every seed's value (of every metric) in ablation.json
    summary = json.load(open(out / "ablation.json"))
    assert summary["seeds"] == [1, 2] and summary["headline"]["qa_toy"] == "ndcg@10"
    values = {
        str(seed): json.load(open(out / "full" / f"seed-{seed}" / "results.json"))["scores"]["sts_toy"]["spearman"]
        for seed in (1, 2)
    }
    figure = summary["variants"]["full"]["metrics"]["sts_toy"]["spearman"]
    assert figure["values"] == values and values["1"] != values["2"]  # the seed changes the run
    assert figure["mean"] == pytest.approx(statistics.fmean(values.values()))
    assert figure["std"] == pytest.approx(statistics.stdev(values.values()))
    assert f"| full | 1, 2 | {figure['mean']:.4f} ± {figure['std']:.4f} |" in table
    assert set(summary["variants"]["full"]["metrics"]["nli_toy"]) >= {"auc", "accuracy", "average_precision"}

    # Finished runs are read back: nothing trains again.
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(d2llm_st.training, "distill", refuse)
    capsys.readouterr()
    assert ablation.main(argv) == 0
    assert capsys.readouterr().out.split("\nmean ±")[0] == table.split("\nmean ±")[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_mixed_precision_falls_back_to_float32_without_a_gpu(tiny_llama, eval_data, tmp_path, caplog):
    from d2llm_st.training.distill import training_arguments

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run"), bf16=True, gradient_checkpointing=True)
    with caplog.at_level(logging.WARNING):
        args = training_arguments(config, prompts={})
    assert not args.bf16 and not args.fp16 and args.gradient_checkpointing
    assert "none here supports bfloat16" in caplog.text


def test_a_missing_teacher_is_named_with_the_fix(tiny_llama, eval_data, tmp_path):
    config = make_config(tiny_llama, eval_data, str(tmp_path / "run")).with_overrides(
        [
            f"teacher.model={tmp_path / 'no-teacher-here'}",
            f"datasets.nli_toy.path={eval_data['nli']}",  # the data paths are checked first
            f"datasets.qa_toy.path={eval_data['qa']}",
        ]
    )
    with pytest.raises(FileNotFoundError, match="teacher.model=.*no-teacher-here.*teacher-train"):
        distill(config)
    with pytest.raises(FileNotFoundError, match=r"datasets\[0\].path: no such file or folder: nowhere"):
        distill(config.with_overrides(["datasets.nli_toy.path=nowhere"]))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_config_values_are_coerced_to_their_declared_types_or_rejected_by_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  learning_rate: 1e-3\n  max_steps: '5'\nstudent:\n  lora_r: 4.0\n")
    config = DistillConfig.load(str(path))
    assert config.training.learning_rate == 0.001 and type(config.training.learning_rate) is float  # YAML: a str
    assert (config.training.max_steps, config.student.lora_r) == (5, 4)
    assert type(config.training.max_steps) is int and type(config.student.lora_r) is int
    changed = config.with_overrides(["training.learning_rate=1e-2", "student.lora_target_modules=q_proj"])
    assert changed.training.learning_rate == 0.01 and type(changed.training.learning_rate) is float
    assert DistillConfig.from_yaml(changed.to_yaml()) == changed

    path.write_text("training:\n  learning_rate: 1e-3\n  max_steps: 2: 3\n")
    with pytest.raises(ValueError, match=r"run\.yaml:3: not valid YAML \(mapping values are not allowed here\)"):
        DistillConfig.load(str(path))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.learning_rate=abc", "training.learning_rate: expected a number, got 'abc'"),
        ("training.learning_rate=-1e-3", r"training.learning_rate must be > 0, got -0.001"),
        ("training.learning_rate=.inf", "training.learning_rate: expected a number, got inf"),
        ("training.max_steps=-5", r"training.max_steps must be -1 \(train for num_train_epochs\) or >= 1, got -5"),
        ("training.max_steps=0", r"training.max_steps must be -1 .* got 0"),
        ("training.per_device_train_batch_size=0", "training.per_device_train_batch_size must be >= 1, got 0"),
        ("training.warmup_steps=1.5", r"training.warmup_steps must be a fraction of the steps in \[0, 1\) .*got 1.5"),
        ("training.bf16=maybe", "training.bf16: expected true or false, got 'maybe'"),
        ("student.pma_heads=2.5", "student.pma_heads: expected a whole number, got 2.5"),
        ("student.iem_hidden_dim=0", "student.iem_hidden_dim must be >= 1, got 0"),
        ("student.max_seq_length=-1", "student.max_seq_length must be >= 1, got -1"),
        ("student.lora_target_modules=[1]", "student.lora_target_modules: expected a list of strings or a string"),
        ("datasets.nli_toy.limit=0", r"datasets\[0\].limit must be >= 1, got 0"),
        ("datasets.nli_toy.num_negatives=0", r"datasets\[0\].num_negatives must be >= 1, got 0"),
        ("loss.temperature=0", "loss.temperature must be > 0, got 0.0"),
        ("loss.alpha=-1", "loss.alpha must be >= 0, got -1.0"),
        ("teacher.batch_size=0", "teacher.batch_size must be >= 1, got 0"),
        ("teacher.kind=bert", "teacher.kind must be one of"),
        ("evaluation.sets.sts_toy.limit=-3", r"evaluation.sets\[0\].limit must be >= 1, got -3"),
    ],
)
def test_config_rejects_a_bad_value_naming_its_key(tiny_llama, eval_data, tmp_path, override, message):
    from d2llm_st.errors import UserError

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run"))
    with pytest.raises(UserError, match=message):
        config.with_overrides([override])


def test_a_finished_run_is_read_back_resumed_at_its_last_step_or_refused(tiny_llama, eval_data, tmp_path, caplog):
    from d2llm_st import D2LLM
    from d2llm_st.errors import UserError

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run"), max_steps=2)
    run = tmp_path / "run"
    first = distill(config, train_datasets())
    trained = {name: p.detach().clone() for name, p in D2LLM(first.model_dir, device="cpu").named_parameters()}
    written = {name: os.path.getmtime(run / name) for name in ("results.json", "distill_config.yaml", "model")}

    # The same config again: reported as finished, nothing trained or rewritten.
    again = distill(config, train_datasets())
    assert again.already_finished and (again.steps, again.scores) == (2, first.scores)
    assert {name: os.path.getmtime(run / name) for name in written} == written
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]

    # Killed during the final evaluation or save: checkpoint-2 is at max_steps, so it is loaded, not trained on.
    os.remove(run / "results.json")
    shutil.rmtree(run / "model")
    with caplog.at_level(logging.INFO):
        resumed = distill(config, train_datasets())
    assert "at the last step (2): loading it" in caplog.text
    assert resumed.steps == 2 and not resumed.already_finished and json.load(open(run / "results.json"))["steps"] == 2
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    reloaded = dict(D2LLM(resumed.model_dir, device="cpu").named_parameters())
    assert all(torch.equal(reloaded[name], value) for name, value in trained.items())

    # Another config is refused, naming the differing keys; so is any run with resuming off.
    changed = config.with_overrides(["loss.alpha=0", "training.max_steps=1"])
    with pytest.raises(UserError, match=r"different config: loss.alpha \(1.0 -> 0.0\); training.max_steps \(2 -> 1\)"):
        distill(changed, train_datasets())
    with pytest.raises(UserError, match="resuming is off"):
        distill(config, train_datasets(), resume=False)
    assert DistillConfig.load(str(run / "distill_config.yaml")) == config

    # overwrite starts fresh: the old checkpoints go, the teacher score cache stays.
    assert (run / "teacher_scores.sqlite").exists()
    fresh = distill(changed, train_datasets(), overwrite=True)
    assert fresh.steps == 1 and not fresh.already_finished
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"]
    assert DistillConfig.load(str(run / "distill_config.yaml")).loss.alpha == 0
    assert (run / "teacher_scores.sqlite").exists()


def write_finished_run(config: DistillConfig) -> None:
    """The files a finished run leaves (no weights needed: refusing or reporting one reads only these)."""
    run = config.training.output_dir
    config.save(os.path.join(run, "distill_config.yaml"))
    os.makedirs(os.path.join(run, "checkpoint-4"))
    scores = {"sts_toy": {"spearman": 0.5}, "nli_toy": {"auc": 0.75}, "qa_toy": {"ndcg@10": 0.25}}
    with open(os.path.join(run, "results.json"), "w") as f:
        json.dump({"mode": "distill", "steps": 4, "scores": scores, "train_metrics": {}, "model_dir": None}, f)


def run_cli(*args: str, timeout: float = 120, **env: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "d2llm_st.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def test_cli_refuses_another_config_in_a_finished_folder_and_reports_the_same_one(tiny_llama, eval_data, tmp_path):
    config = make_config(tiny_llama, eval_data, str(tmp_path / "run"))
    write_finished_run(config)
    path = str(tmp_path / "run.yaml")
    config.save(path)
    before = open(tmp_path / "run" / "results.json").read()

    refused = run_cli("distill", path, "--set", "loss.alpha=0")
    assert refused.returncode == 2 and refused.stdout == "", refused.stderr
    lines = error_lines(refused.stderr)
    assert len(lines) == 1 and "Traceback" not in refused.stderr
    assert lines[0].startswith("d2llm distill: error: ") and "loss.alpha (1.0 -> 0.0)" in refused.stderr
    assert "--overwrite" in refused.stderr

    no_resume = run_cli("distill", path, "--no-resume")
    assert no_resume.returncode == 2 and "resuming is off" in no_resume.stderr

    finished = run_cli("--log-level", "WARNING", "distill", path)
    assert finished.returncode == 0, finished.stderr
    assert "steps: 4" in finished.stdout and "already finished" in finished.stdout
    assert "| nli_toy | auc | 0.7500 |" in finished.stdout
    assert open(tmp_path / "run" / "results.json").read() == before


def _keyword_parameters(function, leave_out: set[str] = frozenset()) -> dict:
    """``{name: default}`` of a callable's keyword parameters (``inspect._empty`` when there is none)."""
    import inspect

    parameters = inspect.signature(function).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in {"self", "model", *leave_out}
    }


def _fields(section) -> dict:
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(section)
    }


def test_config_sections_are_the_constructors_signatures():
    """student = D2LLM.from_llm, loss = D2LLMDistillLoss, baseline = MNRL, training = ST training arguments,
    evaluation.sets[] = build_evaluator: the same names and (but for the model) the same defaults."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from d2llm_st import D2LLM
    from d2llm_st.losses import D2LLMDistillLoss
    from d2llm_st.model_paths import BUNDLED_SMOLLM2
    from d2llm_st.training import BaselineConfig, LossConfig

    student = _keyword_parameters(D2LLM.from_llm)
    assert student.pop("model_name_or_path") is inspect_empty()  # required there; bundled:smollm2 in a config
    assert _fields(StudentConfig) == {"model_name_or_path": BUNDLED_SMOLLM2, **student}
    assert _fields(LossConfig) == _keyword_parameters(D2LLMDistillLoss, {"task", "false_negative_filter"})
    baseline = _keyword_parameters(MultipleNegativesRankingLoss)
    assert all(baseline[name] == default for name, default in _fields(BaselineConfig).items())
    evaluator = _keyword_parameters(build_evaluator, {"first_stage", "batch_size", "show_progress_bar", "write_csv"})
    evaluator.update(type="sts", path="", split="dev")  # a config's defaults: dev split (build_evaluator: test)
    assert _fields(EvalSetConfig) == {**evaluator, "name": ""}
    training = {name for name in _fields(TrainingConfig) if name != "extra"}
    argument_names = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments) if f.init}
    assert training <= argument_names, training - argument_names


def inspect_empty():
    import inspect

    return inspect.Parameter.empty


def test_the_sections_build_their_objects_with_fields(tiny_llama, eval_data, tmp_path):
    from d2llm_st.training import build_student, training_arguments
    from d2llm_st.training.distill import make_loss

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run"), warmup_steps=0.25).with_overrides(
        [
            "loss.alpha=0.5",
            "student.pma_output_dim=8",
            "student.train_backbone=true",
            "training.extra={adam_beta2: 0.99}",
        ]
    )
    model = build_student(config.student)
    assert model.pma.get_embedding_dimension() == 8 and all(p.requires_grad for p in model.parameters())
    loss = make_loss(model, config, "symmetric")
    assert (loss.alpha, loss.task, loss.word_level_weight) == (0.5, "symmetric", 0.1)
    args = training_arguments(config, prompts={})
    assert args.warmup_steps == 0.25 and args.per_device_train_batch_size == 2 and args.adam_beta2 == 0.99
    assert args.get_warmup_steps(8) == 2  # a fraction of the steps, as warmup_ratio was
    with pytest.raises(ValueError, match=r"training.extra: \['warmup_rato'\] are not"):
        training_arguments(config.with_overrides(["training.extra={warmup_rato: 0.1}"]), prompts={})


@pytest.mark.parametrize(
    ("section", "old", "new"),
    [
        ("student", "model: bundled:smollm2", "student.model -> student.model_name_or_path"),
        ("student", "dtype: bfloat16", "student.dtype -> student.model_kwargs"),
        ("loss", "train_backbone: true", "loss.train_backbone -> student.train_backbone"),
        ("loss", "baseline_scale: 40", "loss.baseline_scale -> baseline.scale"),
        ("training", "batch_size: 8", "training.batch_size -> training.per_device_train_batch_size"),
        ("training", "warmup_ratio: 0.1", "training.warmup_ratio -> training.warmup_steps"),
    ],
)
def test_an_old_config_is_refused_naming_the_renamed_key(tmp_path, section, old, new):
    from d2llm_st.errors import UserError

    path = tmp_path / "old.yaml"
    path.write_text(f"{section}:\n  {old}\n")
    with pytest.raises(UserError, match=f"Renamed key\\(s\\) in config.{section}: {re.escape(new)}"):
        DistillConfig.load(str(path))
    key = new.split(" -> ")[0]
    with pytest.raises(UserError, match=f"it was renamed {re.escape(new.split(' -> ')[1])}"):
        DistillConfig().with_overrides([f"{key}=1"])


def test_an_old_eval_set_type_is_refused_with_its_spelling():
    from d2llm_st.errors import UserError

    with pytest.raises(UserError, match=r"evaluation.sets\[0\].type: .*'answer_selection': it is spelled 'answer-sel"):
        DistillConfig.from_dict({"evaluation": {"sets": [{"name": "qa", "type": "answer_selection", "path": "p"}]}})


def test_mined_rows_are_a_training_set_for_distill(tiny_llama, eval_data, train_files, tmp_path, capsys):
    """`d2llm mine` writes rows; `d2llm distill` trains on them when a dataset's path is that folder (no teacher
    needed without word-level distillation), and checks their kind and K."""
    from d2llm_st.cli import main
    from d2llm_st.data import load_distillation_rows

    mined = str(tmp_path / "mined-nli")
    mine = ["mine", "--teacher", tiny_llama, "--kind", "nli", "--data", train_files["nli"], "--num-negatives", "2"]
    assert main([*mine, "--method", "none", "--output", mined]) == 0
    rows, info = load_distillation_rows(mined)
    assert (info["kind"], info["task"], info["num_negatives"], len(rows)) == ("nli", "symmetric", 2, 6)
    assert info["teacher"].startswith("LLMTeacher:")

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run"), max_steps=2).with_overrides(
        [
            f"datasets.nli_toy.path={mined}",
            f"datasets.qa_toy.path={train_files['qa']}",
            "datasets.qa_toy.num_negatives=2",
            "loss.word_level_weight=0",
            f"teacher.cache={tmp_path / 'scores.sqlite'}",
        ]
    )
    path = str(tmp_path / "run.yaml")
    config.save(path)
    assert main(["distill", path]) == 0
    card = open(tmp_path / "run" / "model" / "README.md").read()
    assert "| nli_toy | nli | symmetric | train | 6 | 2 |" in card and "| qa_toy | beir | asymmetric |" in card

    # Only mined rows and no word level: the teacher is not needed at all.
    only_mined = config.with_overrides(
        ["datasets.qa_toy.path=" + mined, "datasets.qa_toy.type=nli", f"training.output_dir={tmp_path / 'run2'}"]
    ).with_overrides([f"teacher.model={tmp_path / 'no-teacher-here'}"])
    result = distill(only_mined)
    assert result.steps == 2
    card = open(os.path.join(result.model_dir, "README.md")).read()
    assert f"- **Teacher:** `{info['teacher']}` (the teacher that scored the rows)" in card

    from d2llm_st.errors import UserError

    with pytest.raises(UserError, match="holds rows with 2 negatives, not num_negatives=3"):
        distill(
            only_mined.with_overrides(
                ["datasets.nli_toy.num_negatives=3", "training.output_dir=" + str(tmp_path / "x")]
            )
        )
    with pytest.raises(UserError, match="holds nli rows .* not beir"):
        distill(only_mined.with_overrides(["datasets.nli_toy.type=beir", "training.output_dir=" + str(tmp_path / "y")]))


def test_model_card_is_rendered_from_the_card_data_fields(tiny_llama, eval_data, tmp_path):
    """The distillation facts are D2LLMModelCardData fields, rendered by the card template (one mechanism)."""
    from d2llm_st import D2LLM
    from d2llm_st.model_card import TEMPLATE_PATH, D2LLMModelCardData
    from d2llm_st.training import record_distillation

    config = make_config(tiny_llama, eval_data, str(tmp_path / "run")).with_overrides(["false_negatives.enabled=true"])
    model = D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=16, device="cpu")
    assert (
        isinstance(model.model_card_data, D2LLMModelCardData) and model.model_card_data.template_path == TEMPLATE_PATH
    )
    scores = {"sts_toy": {"spearman": 0.25, "pearson": 0.5}, "nli_toy": {"auc": 0.75}, "qa_toy": {"ndcg@10": 0.5}}
    record_distillation(
        model.model_card_data,
        config,
        teacher="runs/teacher",
        teacher_identity="LLMTeacher:x",
        dataset_rows={"nli_toy": 4, "qa_toy": 4},
        scores=scores,
        steps=7,
        thresholds={"nli_toy": 0.8125},
    )
    data = model.model_card_data
    assert (data.distillation_mode, data.teacher_identity, data.training_steps, data.student_lora_r) == (
        "distill",
        "LLMTeacher:x",
        7,
        4,
    )
    assert data.distillation_scores[2] == {
        "name": "qa_toy",
        "split": "dev",
        "type": "answer-selection",
        "metric": "ndcg@10",
        "value": 0.5,
    }
    assert data.false_negative_filter == {"mode": "drop", "thresholds": {"nli_toy": 0.8125}}
    model.save_pretrained(str(tmp_path / "model"))
    card = open(tmp_path / "model" / "README.md").read()
    assert card.startswith("---\n") and "## D2LLM distillation" in card and "- **Training steps:** 7" in card
    assert "- **Teacher:** `runs/teacher` (`LLMTeacher:x`)" in card
    assert "| sts_toy (dev) | sts | spearman | 0.2500 |" in card and "last thresholds: nli_toy 0.8125." in card
    assert "pip install -U sentence-transformers d2llm" in card
    plain = D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=16, device="cpu")  # not from d2llm distill
    plain.save_pretrained(str(tmp_path / "plain"))
    assert "D2LLM distillation" not in open(tmp_path / "plain" / "README.md").read()
