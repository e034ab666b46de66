"""Training rows for D2LLM distillation: (anchor, positive, K hard negatives) + the teacher's scores.

Columns of the returned ``datasets.Dataset`` (what :class:`~d2llm_st.losses.D2LLMDistillLoss` reads):

- ``anchor``, ``positive``, ``negative_1`` ... ``negative_K``: texts;
- ``label``: the teacher's ``P(yes)`` for (anchor, positive), (anchor, negative_1), ... : ``K + 1`` floats;
  with ``return_features=True`` a ``[K + 1][1 + H]`` nested list instead: per candidate
  ``[score, feature_1 .. feature_H]``, the teacher's final hidden state for feature imitation.

Where the rows come from:

- ``nli``: anchor = premise, positive = an entailed hypothesis, negatives = the premise's contradicted
  hypotheses first (hard negatives by construction), then mined from all hypotheses.
- ``sts``: anchor / positive = a pair with normalised score >= ``positive_threshold``; negatives mined.
- ``beir``: anchor = query, positive = each qrels-relevant passage, negatives = the query's incorrect
  answer-selection candidates first (when the set has ``candidates/``), then mined from the corpus.

Saved rows (``d2llm mine``): :func:`save_distillation_rows` writes a ``datasets`` folder plus
``d2llm_rows.json`` (kind, task, K, teacher, whether features are stored), and :func:`load_distillation_rows`
reads it back with checks, which is how ``d2llm distill`` trains on a dataset whose ``path`` is such a folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

from d2llm_st.data.mining import mine_negatives
from d2llm_st.data.readers import read_beir, read_nli, read_sts
from d2llm_st.data.sampling import subsample, subsample_indices
from d2llm_st.errors import UserError
from d2llm_st.tasks import check_dataset_kind, dataset_task

logger = logging.getLogger(__name__)

ROWS_INFO_NAME = "d2llm_rows.json"
"""What a saved folder of distillation rows says about itself (see :func:`save_distillation_rows`)."""


def _nli_groups(path: str) -> list[tuple[str, str, list[str]]]:
    by_premise: dict[str, dict[str, list[str]]] = {}
    for row in read_nli(path):
        by_premise.setdefault(row["premise"], {}).setdefault(row["label"], []).append(row["hypothesis"])
    return [
        (premise, positive, labels.get("contradiction", []))
        for premise, labels in by_premise.items()
        for positive in labels.get("entailment", [])
    ]


def _sts_groups(path: str, positive_threshold: float) -> list[tuple[str, str, list[str]]]:
    return [
        (row["sentence1"], row["sentence2"], [])
        for row in read_sts(path, normalize=True)
        if row["score"] >= positive_threshold
    ]


def _beir_groups(path: str, split: str) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
    data = read_beir(path, split)
    groups = []
    for query_id, query in data.queries.items():
        relevant = [doc for doc, grade in data.qrels[query_id].items() if grade > 0 and doc in data.corpus]
        wrong = [data.corpus[d] for d, g in data.candidates.get(query_id, {}).items() if g <= 0 and d in data.corpus]
        groups += [(query, data.corpus[doc], wrong) for doc in relevant]
    return groups, list(data.corpus.values())


def build_distillation_dataset(
    kind: str,
    path: str,
    split: str = "train",
    teacher: Any = None,
    num_negatives: int = 3,
    limit: int | None = None,
    return_features: bool = False,
    batch_size: int | None = None,
    mining: str = "bm25",
    mining_model: Any = None,
    range_min: int = 0,
    range_max: int = 50,
    sampling: str = "top",
    mining_cache: str | None = None,
    positive_threshold: float = 0.8,
    seed: int = 0,
    show_progress_bar: bool | None = None,
):
    """Build scored training rows (see the module docstring for the columns).

    Args:
        kind: ``nli`` or ``sts`` (a data file) or ``beir`` (a BEIR folder).
        path, split: Where the data is (``split`` selects ``qrels/<split>.tsv`` for ``beir``).
        teacher: Any :class:`~d2llm_st.teacher.Teacher` (its score cache makes rebuilding cheap).
        num_negatives: ``K``. Anchors that cannot get ``K`` negatives are left out, with a warning.
        limit: Keep at most this many anchor / positive pairs (:func:`~d2llm_st.data.sampling.subsample`).
        return_features: Also store the teacher's features in ``label`` (for feature imitation).
        batch_size: Teacher batch size (``None``: the teacher's default).
        mining: ``bm25``, ``bi-encoder`` (needs ``mining_model``) or ``none`` (only the data's own negatives).
        range_min, range_max: Mine negatives from ranks ``[range_min, range_max)``.
        sampling: ``top`` (hardest mined negatives) or ``random`` (a seeded sample of the rank window).
        mining_cache: Bi-encoder mining only: a folder where embeddings are cached (a re-run skips encoding).
        positive_threshold: ``sts`` only: minimum normalised score of a positive pair.
    """
    from datasets import Dataset

    task = dataset_task(kind)
    if teacher is None:
        raise ValueError("build_distillation_dataset needs a teacher to score the (anchor, candidate) pairs.")
    if num_negatives < 1:
        raise UserError(f"num_negatives must be >= 1, got {num_negatives}.")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be >= 1 (or None for all rows), got {limit}.")
    if kind == "nli":
        groups = _nli_groups(path)
        corpus = list(dict.fromkeys(candidate for _, positive, wrong in groups for candidate in [positive, *wrong]))
    elif kind == "sts":
        groups = _sts_groups(path, positive_threshold)
        corpus = list(dict.fromkeys(text for anchor, positive, _ in groups for text in (anchor, positive)))
    else:
        groups, corpus = _beir_groups(path, split)
    positives_of: dict[str, set[str]] = {}
    for anchor, positive, _ in groups:  # every positive of an anchor, so none is mined as its negative
        positives_of.setdefault(anchor, set()).add(positive)
    groups = subsample(groups, limit, seed=seed, what=f"{kind} anchors")

    negatives = [list(dict.fromkeys(wrong))[:num_negatives] for _, _, wrong in groups]
    need = [i for i, found in enumerate(negatives) if len(found) < num_negatives]
    if mining != "none" and need:
        index = {text: i for i, text in enumerate(corpus)}
        mined = mine_negatives(
            [groups[i][0] for i in need],
            corpus,
            [{index[text] for text in positives_of[groups[i][0]] if text in index} for i in need],
            num_negatives,
            method=mining,
            range_min=range_min,
            range_max=range_max,
            model=mining_model,
            sampling=sampling,
            exclude=[{index[text] for text in negatives[i] if text in index} for i in need],
            seed=seed,
            cache_folder=mining_cache,
            show_progress_bar=show_progress_bar,
        )
        for i, extra in zip(need, mined):
            negatives[i] += [corpus[j] for j in extra][: num_negatives - len(negatives[i])]
    complete = [i for i, found in enumerate(negatives) if len(found) == num_negatives]
    if len(complete) < len(groups):
        logger.warning(
            f"{len(groups) - len(complete)} of {len(groups)} {kind} anchors have fewer than {num_negatives} "
            f"negatives and were left out (raise range_max, or use mining='bm25' / 'bi-encoder')."
        )
    if not groups:
        raise UserError(f"{path} has no usable {kind} rows (anchors with a positive).")
    if not complete:
        raise UserError(
            f"No {kind} row in {path} has {num_negatives} negatives: lower num_negatives, raise range_max, or "
            "use mining='bm25' / 'bi-encoder'."
        )

    rows = [(groups[i][0], [groups[i][1], *negatives[i]]) for i in complete]
    pairs = [(anchor, candidate) for anchor, candidates in rows for candidate in candidates]
    score_kwargs = {} if batch_size is None else {"batch_size": batch_size}
    output = teacher.score(
        pairs, task=task, return_features=return_features, show_progress_bar=show_progress_bar, **score_kwargs
    )
    width = num_negatives + 1
    columns: dict[str, list] = {"anchor": [anchor for anchor, _ in rows], "positive": [c[0] for _, c in rows]}
    for k in range(num_negatives):
        columns[f"negative_{k + 1}"] = [candidates[k + 1] for _, candidates in rows]
    scores = output.scores.reshape(len(rows), width)
    if return_features:
        features = output.features.reshape(len(rows), width, -1)
        columns["label"] = [
            [[float(scores[r, c]), *features[r, c].tolist()] for c in range(width)] for r in range(len(rows))
        ]
    else:
        columns["label"] = scores.tolist()
    logger.info(f"Built {len(rows)} {kind} distillation rows with {num_negatives} negatives each from {path}")
    return Dataset.from_dict(columns)


def row_columns(num_negatives: int) -> list[str]:
    """The columns of distillation rows with ``K = num_negatives``: anchor, positive, negative_1..K, label."""
    return ["anchor", "positive", *(f"negative_{k + 1}" for k in range(num_negatives)), "label"]


def is_distillation_rows(path: str) -> bool:
    """Whether ``path`` is a folder of rows saved by :func:`save_distillation_rows` (``d2llm mine``)."""
    return os.path.isfile(os.path.join(path, ROWS_INFO_NAME))


def save_distillation_rows(dataset, path: str, kind: str, teacher: Any = None, **info: Any) -> dict[str, Any]:
    """Save rows built by :func:`build_distillation_dataset` to the folder ``path``, atomically.

    The ``datasets`` folder (``save_to_disk``) gets a ``d2llm_rows.json`` beside it: ``kind``, its ``task``,
    ``num_negatives``, whether the labels hold teacher ``features``, the ``rows`` count, the ``teacher``'s identity
    and any further ``info`` (e.g. the source data and mining settings). It is written to ``path.tmp`` and renamed
    when complete, so a kill never leaves a half-written folder at ``path``.

    Returns:
        What ``d2llm_rows.json`` holds.
    """
    kind = check_dataset_kind(kind)
    negatives = [column for column in dataset.column_names if column.startswith("negative_")]
    if dataset.column_names != row_columns(len(negatives)):
        raise ValueError(f"Distillation rows have columns {row_columns(len(negatives))}, got {dataset.column_names}.")
    first = dataset[0]["label"] if len(dataset) else []
    rows_info = {
        "kind": kind,
        "task": dataset_task(kind),
        "num_negatives": len(negatives),
        "features": bool(first) and isinstance(first[0], list),
        "rows": len(dataset),
        "teacher": getattr(teacher, "identity", teacher),
        **info,
    }
    staging = f"{os.path.normpath(path)}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(staging)
    with open(os.path.join(staging, ROWS_INFO_NAME), "w", encoding="utf-8") as f:
        json.dump(rows_info, f, indent=2)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(staging, path)
    return rows_info


def distillation_rows_info(path: str) -> dict[str, Any]:
    """What ``d2llm_rows.json`` of a folder of saved rows says (kind, task, ``num_negatives``, teacher, ...).

    Raises:
        UserError: ``path`` is not such a folder.
    """
    if not is_distillation_rows(path):
        raise UserError(
            f"{path} is not a folder of distillation rows ({ROWS_INFO_NAME} is missing): write one with "
            "`d2llm mine --output`, or give a raw nli / sts file or BEIR folder."
        )
    with open(os.path.join(path, ROWS_INFO_NAME), encoding="utf-8") as f:
        return json.load(f)


def load_distillation_rows(
    path: str, kind: str | None = None, num_negatives: int | None = None, limit: int | None = None, seed: int = 0
):
    """Read rows saved by :func:`save_distillation_rows` (``d2llm mine --output``), checked against what the
    caller expects.

    Args:
        path: The folder.
        kind: The expected dataset kind (``nli``, ``sts``, ``beir``); another kind is refused.
        num_negatives: The expected ``K``; another is refused.
        limit: Keep a seeded subset of this many rows (:func:`~d2llm_st.data.sampling.subsample`).
        seed: The seed of that subset.

    Returns:
        ``(dataset, info)``: the ``datasets.Dataset`` and what ``d2llm_rows.json`` says.

    Raises:
        UserError: not such a folder, or its kind or ``K`` differ from the expected ones (the message names both).
    """
    from datasets import load_from_disk

    rows_info = distillation_rows_info(path)
    if kind is not None and check_dataset_kind(kind) != rows_info["kind"]:
        raise UserError(f"{path} holds {rows_info['kind']} rows (mined with --kind {rows_info['kind']}), not {kind}.")
    if num_negatives is not None and num_negatives != rows_info["num_negatives"]:
        raise UserError(
            f"{path} holds rows with {rows_info['num_negatives']} negatives, not num_negatives={num_negatives}: "
            f"set num_negatives to {rows_info['num_negatives']}, or mine again with --num-negatives {num_negatives}."
        )
    dataset = load_from_disk(path)
    if limit is not None and limit < len(dataset):
        dataset = dataset.select(subsample_indices(len(dataset), limit, seed=seed))
    logger.info(f"Read {len(dataset)} {rows_info['kind']} distillation rows from {path}")
    return dataset, rows_info
