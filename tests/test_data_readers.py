"""Readers: every shared data file loads; HF datasets objects, integer NLI labels and bad rows are handled."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from d2llm_st.data import beir_pairs, nli_pairs, read_beir, read_nli, read_rows, read_sts, sts_pairs


def test_every_shared_data_file_loads(shared_data):
    for name, split, rows in [("stsb", "dev", 1500), ("sick", "test", 4927)]:
        sts = read_sts(f"{shared_data}/sts/{name}/{split}.jsonl.gz")
        assert len(sts) == rows and min(r["score"] for r in sts) == 0.0 and max(r["score"] for r in sts) == 1.0
    for name, split, rows in [("snli", "dev", 9842), ("snli", "train", 19995), ("sick", "dev", 500)]:
        assert len(read_nli(f"{shared_data}/nli/{name}/{split}.jsonl.gz")) == rows
    wikiqa = read_beir(f"{shared_data}/ir/wikiqa", "dev")
    assert len(wikiqa.queries) == 126 and sum(map(len, wikiqa.candidates.values())) == 1130
    pairs = beir_pairs(wikiqa)
    assert sum(p.label for p in pairs) == 140 and len(pairs) == 1130 and {p.task for p in pairs} == {"asymmetric"}
    scifact = read_beir(f"{shared_data}/ir/scifact", "test")
    assert len(scifact.corpus) == 5183 and len(scifact.queries) == 300 and not scifact.candidates


def test_hf_datasets_objects_folders_and_integer_labels(tmp_path, caplog):
    from datasets import Dataset

    hf = Dataset.from_dict(
        {"premise": ["a", "b", "c", "d"], "hypothesis": ["w", "x", "y", "z"], "label": [0, 1, 2, -1]}
    )
    with caplog.at_level("WARNING"):
        rows = read_nli(hf)
    assert [r["label"] for r in rows] == ["entailment", "neutral", "contradiction"]
    assert "skipped 1 rows labelled -1" in caplog.text
    hf.save_to_disk(str(tmp_path / "nli"))
    assert read_nli(str(tmp_path / "nli")) == rows
    assert [(p.label, p.task) for p in nli_pairs(rows)] == [(1.0, "symmetric"), (0.0, "symmetric")]
    assert [p.label for p in nli_pairs(rows, neutral="negative")] == [1.0, 0.0, 0.0]

    csv_path = tmp_path / "nli.csv"
    csv_path.write_text("premise,hypothesis,label\na,w,2\nb,x,entailment\n")
    assert [r["label"] for r in read_nli(str(csv_path))] == ["contradiction", "entailment"]

    sts_path = tmp_path / "sts.jsonl.gz"
    with gzip.open(sts_path, "wt") as f:
        for score in (1, 3, 5):
            f.write(json.dumps({"sentence1": "a", "sentence2": "b", "score": score}) + "\n")
    assert [p.label for p in sts_pairs(read_sts(str(sts_path)))] == [0.0, 0.5, 1.0]


def test_reader_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"premise": "a", "hypothesis": "b", "label": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="row 0 has label 'maybe'"):
        read_nli(str(bad))
    bad.write_text(json.dumps({"premise": "a", "label": "entailment"}) + "\n")
    with pytest.raises(ValueError, match="row 0 has no hypothesis"):
        read_nli(str(bad))
    with pytest.raises(FileNotFoundError):
        read_rows(str(tmp_path / "missing.jsonl"))
    with pytest.raises(TypeError, match="Dataset"):
        read_rows(42)
    os.makedirs(tmp_path / "beir")
    with pytest.raises(FileNotFoundError, match="qrels"):
        read_beir(str(tmp_path / "beir"), "dev")


def test_a_broken_line_is_named_by_file_and_line(tmp_path):
    from d2llm_st.errors import UserError

    path = tmp_path / "pairs.jsonl"
    good = '{"premise": "a", "hypothesis": "b", "label": "entailment"}'
    path.write_text(f"{good}\n\n{good}\n" + '{"premise": "a", oops\n')
    with pytest.raises(UserError, match=r"pairs.jsonl:4: not valid JSON \(Expecting property name .*column 18\)"):
        read_nli(str(path))
    path.write_text(f"{good}\n[1, 2]\n")
    with pytest.raises(UserError, match=r"pairs.jsonl:2: expected a JSON object per line, got list"):
        read_nli(str(path))


def test_bad_values_and_columns_name_the_file(tmp_path):
    from d2llm_st.errors import UserError

    sts = tmp_path / "sts.jsonl"
    sts.write_text('{"sentence1": "a", "sentence2": "b", "score": "high"}\n')
    with pytest.raises(UserError, match=r"sts.jsonl: row 0 has score 'high', not a number"):
        read_sts(str(sts))
    sts.write_text("")
    with pytest.raises(UserError, match="sts.jsonl has no rows"):
        read_sts(str(sts))
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "y"}\n')
    (beir / "qrels" / "test.tsv").write_text("qid\tdoc\tscore\nq1\td1\t1\n")
    with pytest.raises(UserError, match=r"test.tsv has no corpus-id, query-id column"):
        read_beir(str(beir))
