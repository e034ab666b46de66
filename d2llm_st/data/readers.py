"""Readers for the formats users have: STS / NLI pairs (jsonl, jsonl.gz, csv, HF datasets) and BEIR IR folders.

Every reader returns plain Python rows (dicts), validates the fields it needs, and names the
missing field and file in its error (a :class:`~d2llm_st.errors.UserError`); a line that is not valid JSON is
named by file and line number.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from d2llm_st.errors import UserError

logger = logging.getLogger(__name__)

NLI_LABELS = ("entailment", "neutral", "contradiction")
# Hugging Face SNLI / MultiNLI / GLUE class ids; -1 marks pairs without a gold label.
NLI_LABEL_IDS = {0: "entailment", 1: "neutral", 2: "contradiction"}


def _open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def read_rows(path: Any) -> list[dict]:
    """Rows of a ``.jsonl`` / ``.jsonl.gz`` / ``.csv`` / ``.tsv`` file, a saved HF ``datasets`` folder, or a
    ``datasets.Dataset`` object (e.g. from ``load_dataset``)."""
    if not isinstance(path, str):
        if not hasattr(path, "column_names"):
            raise TypeError(f"Expected a data file, a datasets folder or a Dataset, got {type(path).__name__}.")
        return [dict(row) for row in path]
    if os.path.isdir(path):
        from datasets import load_from_disk

        return [dict(row) for row in load_from_disk(path)]
    if not os.path.exists(path):
        raise FileNotFoundError(f"No data file at {path}.")
    name = path[:-3] if path.endswith(".gz") else path
    with _open_text(path) as f:
        if name.endswith((".csv", ".tsv")):
            return list(csv.DictReader(f, delimiter="\t" if name.endswith(".tsv") else ","))
        return [_json_row(line, path, number) for number, line in enumerate(f, start=1) if line.strip()]


def _json_row(line: str, path: str, number: int) -> dict:
    """One JSON-lines row; a broken or non-object line is a :class:`UserError` naming ``path:number``."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{number}: not valid JSON ({error.msg}, column {error.colno}).") from None
    if not isinstance(row, dict):
        raise UserError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}.")
    return row


def _require(rows: list[dict], fields: Iterable[str], source: str) -> None:
    for i, row in enumerate(rows):
        missing = [name for name in fields if row.get(name) in (None, "")]
        if missing:
            raise UserError(f"{source}: row {i} has no {', '.join(missing)} (fields found: {sorted(row)}).")


def read_sts(path: str, normalize: bool = True) -> list[dict]:
    """STS rows ``{sentence1, sentence2, score}``; with ``normalize`` the score is min-max scaled to [0, 1]."""
    rows = read_rows(path)
    if not rows:
        raise UserError(f"{path} has no rows.")
    _require(rows, ("sentence1", "sentence2", "score"), path)
    scores = []
    for i, row in enumerate(rows):
        try:
            scores.append(float(row["score"]))
        except (TypeError, ValueError):
            raise UserError(f"{path}: row {i} has score {row['score']!r}, not a number.") from None
    low, high = min(scores), max(scores)
    return [
        {
            "sentence1": row["sentence1"],
            "sentence2": row["sentence2"],
            "score": (score - low) / (high - low) if normalize and high > low else score,
        }
        for row, score in zip(rows, scores)
    ]


def read_nli(path: Any) -> list[dict]:
    """NLI rows ``{premise, hypothesis, label}`` with label in entailment / neutral / contradiction.

    Integer labels (also as strings, e.g. from a csv) follow the Hugging Face convention 0 / 1 / 2 =
    entailment / neutral / contradiction; rows labelled -1 (no gold label) are skipped with a warning.
    """
    rows = read_rows(path)
    source = path if isinstance(path, str) else type(path).__name__
    _require(rows, ("premise", "hypothesis", "label"), source)
    out, unlabelled = [], 0
    for i, row in enumerate(rows):
        label = row["label"]
        if isinstance(label, str) and label.lstrip("-").isdigit():
            label = int(label)
        if label == -1:
            unlabelled += 1
            continue
        label = NLI_LABEL_IDS.get(label, label) if isinstance(label, int) else label
        if label not in NLI_LABELS:
            raise UserError(
                f"{source}: row {i} has label {row['label']!r}; expected one of {NLI_LABELS} or their ids 0 / 1 / 2."
            )
        out.append({"premise": row["premise"], "hypothesis": row["hypothesis"], "label": label})
    if unlabelled:
        logger.warning(f"{source}: skipped {unlabelled} rows labelled -1 (no gold label).")
    return out


@dataclass
class BEIRDataset:
    """A BEIR-layout IR set: ``corpus`` {id: text}, ``queries`` {id: text}, ``qrels`` {query: {doc: grade}}."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    candidates: dict[str, dict[str, int]] = field(default_factory=dict)


def _read_qrels(path: str) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"query-id", "corpus-id", "score"} - set(reader.fieldnames or [])
        if missing:
            raise UserError(f"{path} has no {', '.join(sorted(missing))} column (found: {reader.fieldnames}).")
        for row in reader:
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(float(row["score"]))
    return qrels


def beir_file(folder: str, name: str) -> str:
    """``<folder>/<name>.jsonl.gz`` or ``<folder>/<name>.jsonl``, whichever exists."""
    for candidate in (f"{name}.jsonl.gz", f"{name}.jsonl"):
        if os.path.exists(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    raise FileNotFoundError(f"{folder} has no {name}.jsonl or {name}.jsonl.gz (BEIR layout expected).")


def passage_text(row: dict) -> str:
    """A BEIR corpus row as one passage: ``title + ". " + text`` when it has a title."""
    return f"{row['title']}. {row['text']}" if row.get("title") else row["text"]


def iter_corpus(path: str) -> Iterator[tuple[str, str]]:
    """``(id, passage)`` for each row of a corpus, streamed (a corpus of millions need not fit in memory twice).

    ``path`` is a BEIR folder (its ``corpus.jsonl[.gz]``) or a JSON-lines file (``.jsonl`` / ``.jsonl.gz``) with
    ``_id`` (or ``id``), ``text`` and optionally ``title`` per line; passages are :func:`passage_text`.
    """
    if os.path.isdir(path):
        path = beir_file(path, "corpus")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No corpus file at {path}.")
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = _json_row(line, path, number)
            key = row.get("_id", row.get("id"))
            if key in (None, "") or not isinstance(row.get("text"), str) or not row["text"].strip():
                raise UserError(
                    f"{path}:{number}: a corpus row needs an _id (or id) and a non-empty text (fields found: "
                    f"{sorted(row)})."
                )
            yield str(key), passage_text(row)


def read_beir(folder: str, split: str = "test") -> BEIRDataset:
    """Read ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``, ``qrels/<split>.tsv`` (and ``candidates/<split>.tsv``).

    Passages are ``title + ". " + text`` when a title exists. Only queries that have qrels in the split are kept.
    """

    qrels_path = os.path.join(folder, "qrels", f"{split}.tsv")
    if not os.path.exists(qrels_path):
        raise FileNotFoundError(f"No qrels for split {split!r}: {qrels_path} does not exist.")
    corpus_rows = read_rows(beir_file(folder, "corpus"))
    _require(corpus_rows, ("_id", "text"), "corpus")
    corpus = {str(row["_id"]): passage_text(row) for row in corpus_rows}
    qrels = _read_qrels(qrels_path)
    query_rows = read_rows(beir_file(folder, "queries"))
    _require(query_rows, ("_id", "text"), "queries")
    queries = {str(row["_id"]): row["text"] for row in query_rows if str(row["_id"]) in qrels}
    candidates_path = os.path.join(folder, "candidates", f"{split}.tsv")
    candidates = _read_qrels(candidates_path) if os.path.exists(candidates_path) else {}
    return BEIRDataset(corpus=corpus, queries=queries, qrels=qrels, candidates=candidates)
