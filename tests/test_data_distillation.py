"""Distillation data: rows built from real NLI / BEIR files, hard-negative mining, false-negative filtering."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from d2llm_st.data import (
    build_distillation_dataset,
    mine_negative_ids,
    mine_negatives,
    read_beir,
)
from d2llm_st.teacher import LLMTeacher
from d2llm_st.training import DynamicFalseNegativeFilter

CORPUS = [
    "the cat sat on the mat",
    "a cat and a dog on the sofa",
    "the stock market fell today",
    "paris is the capital of france",
    "football team score goal",
]


def test_filter_removes_exactly_the_negatives_above_theta():
    fn_filter = DynamicFalseNegativeFilter(quantile=0.5)
    negatives = np.array([[0.1, 0.55, 0.9], [0.61, 0.2, 0.59]])
    assert not fn_filter.mask(negatives).any()  # no threshold before the first update
    theta = fn_filter.update(np.array([0.4, 0.6, 0.8]))
    assert theta == pytest.approx(0.6)
    np.testing.assert_array_equal(fn_filter.mask(negatives), negatives > 0.6)


def test_theta_moves_with_the_positive_distribution():
    fn_filter = DynamicFalseNegativeFilter(quantile=0.5, window=3)
    low = fn_filter.update(np.array([0.2, 0.3, 0.4]))
    high = fn_filter.update(np.array([0.8, 0.9, 0.95]))
    assert low == pytest.approx(0.3) and high == pytest.approx(0.9) and high > low
    assert DynamicFalseNegativeFilter(quantile=0.5, margin=0.05).update(np.array([0.5])) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="mode"):
        DynamicFalseNegativeFilter(mode="keep")


@pytest.mark.parametrize("method", ["bm25", "bi-encoder"])
def test_mining_returns_hard_non_positive_negatives(method, minilm):
    mined = mine_negatives(["a cat on the mat"], CORPUS, [{0}], 2, method=method, model=minilm)
    assert len(mined[0]) == 2 and 0 not in mined[0]
    if method == "bi-encoder":
        assert mined[0][0] == 1  # the other cat sentence is the hardest negative
    skipped = mine_negatives(["a cat on the mat"], CORPUS, [{0}], 2, method=method, model=minilm, range_min=2)
    assert not set(skipped[0]) & set(mined[0][:1])
    with pytest.raises(ValueError, match="range_min"):
        mine_negatives(["x"], CORPUS, [set()], 1, range_min=3, range_max=3)


def test_mine_negative_ids_on_beir(shared_data):
    data = read_beir(f"{shared_data}/ir/scifact", "test")
    queries = dict(list(data.queries.items())[:5])
    mined = mine_negative_ids(queries, data.corpus, data.qrels, 3)
    for query_id, negatives in mined.items():
        assert len(negatives) == 3 and not set(negatives) & set(data.qrels[query_id])


def test_build_rows_from_real_nli_and_beir(tiny_llama, shared_data, tmp_path):
    teacher = LLMTeacher(tiny_llama, device="cpu", cache=str(tmp_path / "cache.sqlite"))
    nli = build_distillation_dataset(
        "nli", f"{shared_data}/nli/snli/dev.jsonl.gz", teacher=teacher, num_negatives=2, limit=12
    )
    assert nli.column_names == ["anchor", "positive", "negative_1", "negative_2", "label"]
    assert len(nli) == 12 and all(len(label) == 3 for label in nli["label"])
    row = nli[0]
    expected = teacher.score(
        [(row["anchor"], row[c]) for c in ("positive", "negative_1", "negative_2")], task="symmetric"
    ).scores
    np.testing.assert_allclose(row["label"], expected, atol=1e-5)
    assert row["positive"] not in (row["negative_1"], row["negative_2"])

    ir = build_distillation_dataset(
        "beir", f"{shared_data}/ir/wikiqa", split="dev", teacher=teacher, num_negatives=2, limit=6, return_features=True
    )
    assert np.asarray(ir["label"]).shape == (6, 3, 1 + 32)
    with pytest.raises(ValueError, match="teacher"):
        build_distillation_dataset("nli", f"{shared_data}/nli/snli/dev.jsonl.gz")
    with pytest.raises(ValueError, match="Unknown dataset kind"):
        build_distillation_dataset("csv", "x", teacher=teacher)


def test_cli_teacher_score_and_mine(tiny_llama, shared_data, tmp_path, capsys):
    from datasets import load_from_disk

    from d2llm_st.cli import main

    data = f"{shared_data}/nli/snli/dev.jsonl.gz"
    cache = str(tmp_path / "scores.sqlite")
    args = ["--teacher", tiny_llama, "--kind", "nli", "--data", data, "--limit", "20", "--cache", cache]
    assert main(["teacher-score", *args, "--output", str(tmp_path / "scores.jsonl")]) == 0
    assert "auc=" in capsys.readouterr().out
    assert len((tmp_path / "scores.jsonl").read_text().splitlines()) == 20
    assert main(["mine", *args, "--num-negatives", "2", "--output", str(tmp_path / "rows")]) == 0
    rows = load_from_disk(str(tmp_path / "rows"))
    assert rows.column_names == ["anchor", "positive", "negative_1", "negative_2", "label"]


def test_mining_window_sampling_and_exclusions():
    anchors = ["cat sat on the mat"]
    corpus = [f"cat sat {word}" for word in ("mat", "sofa", "tree", "road", "river", "sea")] + ["dog ran"]
    ranked = mine_negatives(anchors, corpus, [set()], 6, range_max=6)[0]
    assert ranked[0] == 0 and set(ranked) == set(range(6))  # the doc sharing "mat" ranks first
    top = mine_negatives(anchors, corpus, [{0}], 2, exclude=[{ranked[1]}])[0]
    assert top == [i for i in ranked if i not in (0, ranked[1])][:2]
    window = [i for i in ranked if i != 0][1:5]
    sampled = [
        mine_negatives(anchors, corpus, [{0}], 2, range_min=1, range_max=5, sampling="random", seed=s)[0]
        for s in range(6)
    ]
    assert all(set(s) <= set(window) and s == sorted(s, key=window.index) for s in sampled)
    assert len({tuple(s) for s in sampled}) > 1  # the seed changes the sample
    assert sampled[0] == mine_negatives(anchors, corpus, [{0}], 2, range_min=1, range_max=5, sampling="random")[0]
    with pytest.raises(ValueError, match="Unknown mining method"):
        mine_negatives(anchors, corpus, [set()], 1, method="tf-idf")


def test_rows_feed_the_sentence_transformers_collator(tiny_llama, shared_data, tmp_path):
    """``label`` is the only non-text column: ST's collator hands it to the loss as a [B, K+1(, 1+H)] tensor."""
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.pad_token = tokenizer.eos_token

    def preprocess(texts, prompt=None, task=None):
        return tokenizer(texts, padding=True, return_tensors="pt")

    teacher = LLMTeacher(tiny_llama, device="cpu", cache=str(tmp_path / "cache.sqlite"))
    rows = build_distillation_dataset(
        "beir", f"{shared_data}/ir/wikiqa", split="dev", teacher=teacher, num_negatives=3, limit=4
    )
    batch = SentenceTransformerDataCollator(preprocess_fn=preprocess)([rows[i] for i in range(4)])
    assert batch["label"].shape == (4, 4)
    assert {"anchor_input_ids", "positive_input_ids", "negative_3_input_ids"} <= set(batch)
    # WikiQA rows take the question's incorrect candidates as negatives before mining.
    data = read_beir(f"{shared_data}/ir/wikiqa", "dev")
    text_to_query = {text: qid for qid, text in data.queries.items()}
    row = rows[0]
    wrong = {data.corpus[d] for d, g in data.candidates[text_to_query[row["anchor"]]].items() if g == 0}
    assert row["negative_1"] in wrong


def test_nli_rows_never_mine_another_positive_of_the_premise(tiny_llama, tmp_path):
    premise = "the man cooks pizza in the kitchen"
    rows = [
        {"premise": premise, "hypothesis": "a man cooks pizza", "label": "entailment"},
        {"premise": premise, "hypothesis": "the man cooks food in the kitchen", "label": "entailment"},
        {"premise": premise, "hypothesis": "a woman plays football", "label": "contradiction"},
        {"premise": "a dog ran", "hypothesis": "an animal ran", "label": "entailment"},
        {"premise": "a dog ran", "hypothesis": "the man cooks pizza in a kitchen", "label": "contradiction"},
        {"premise": "the sun is hot", "hypothesis": "it is cold", "label": "contradiction"},
        {"premise": "the sun is hot", "hypothesis": "summer sun is hot", "label": "entailment"},
    ]
    path = tmp_path / "nli.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    teacher = LLMTeacher(tiny_llama, device="cpu")
    built = build_distillation_dataset("nli", str(path), teacher=teacher, num_negatives=2)
    for row in built:
        if row["anchor"] == premise:
            assert row["negative_1"] == "a woman plays football"  # the contradiction comes first
            assert {row["negative_2"]} & {"a man cooks pizza", "the man cooks food in the kitchen"} == set()


def test_cli_mine_keeps_a_finished_output(tiny_llama, shared_data, tmp_path, capsys):
    from d2llm_st.cli import main

    output = str(tmp_path / "rows")
    args = ["mine", "--teacher", tiny_llama, "--kind", "beir", "--data", f"{shared_data}/ir/wikiqa", "--split", "dev"]
    args += ["--limit", "3", "--num-negatives", "2", "--output", output]
    assert main(args) == 0 and "3 rows" in capsys.readouterr().out
    assert main(args) == 0 and "nothing to do" in capsys.readouterr().out
    assert main([*args, "--overwrite", "--method", "none"]) == 0 and "3 rows" in capsys.readouterr().out
    assert not os.path.exists(f"{output}.tmp")


def test_limit_is_checked_before_any_data_is_read(tmp_path):
    for limit in (0, -3):  # a sample of 0 rows used to be blamed on "no row has 3 negatives"
        with pytest.raises(ValueError, match=f"limit must be >= 1 \\(or None for all rows\\), got {limit}"):
            build_distillation_dataset("nli", str(tmp_path / "not-read.jsonl"), teacher=object(), limit=limit)
