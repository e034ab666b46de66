"""Ranking and classification metrics as plain functions over scores (no model inside).

Used by the evaluators, the teacher reports and the benchmarks, so every number in the docs
is computed one way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr


def correlation(scores: Sequence[float], gold: Sequence[float]) -> dict[str, float]:
    """Spearman and Pearson correlation (x100 is how STS papers report them)."""
    scores, gold = np.asarray(scores, dtype=float), np.asarray(gold, dtype=float)
    return {"spearman": float(spearmanr(scores, gold).statistic), "pearson": float(pearsonr(scores, gold).statistic)}


def binary_classification(
    scores: Sequence[float], labels: Sequence[int], threshold: float | None = None
) -> dict[str, float]:
    """ROC AUC, average precision, and accuracy at the best threshold, for labels in {0, 1}.

    ``accuracy`` is the best accuracy over every cut of these scores (an optimistic figure: the cut is chosen on
    the data it is measured on) and ``accuracy_threshold`` that cut: predict positive when ``score >=`` it (the
    midpoint between the last score called positive and the next lower one). Choose a threshold on a dev split
    and pass it as ``threshold`` to measure a test split fairly: ``accuracy_at_threshold`` is then the accuracy of
    predicting positive when ``score >= threshold``.
    """
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    if labels.min() == labels.max():
        raise ValueError("binary_classification needs both positive (1) and negative (0) labels.")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
    # AUC via ranks (ties get their average rank).
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="mergesort")] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    auc = (ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    true_pos = np.cumsum(sorted_labels)
    precision = true_pos / np.arange(1, len(labels) + 1)
    average_precision = float((precision * sorted_labels).sum() / n_pos)
    # Accuracy when predicting positive for the top-k, over every distinct cut (and k = 0: all negative).
    correct = true_pos + (n_neg - (np.arange(1, len(labels) + 1) - true_pos))
    cuts = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    best_cut = cuts[np.argmax(correct[cuts])]
    if correct[best_cut] > n_neg:
        lower = sorted_scores[best_cut + 1] if best_cut + 1 < len(scores) else sorted_scores[best_cut] - 1.0
        best, best_threshold = float(correct[best_cut]), float((sorted_scores[best_cut] + lower) / 2)
    else:  # calling everything negative is as good as any cut
        best, best_threshold = float(n_neg), float(np.nextafter(sorted_scores[0], np.inf))
    metrics = {
        "auc": float(auc),
        "average_precision": average_precision,
        "accuracy": best / len(labels),
        "accuracy_threshold": best_threshold,
    }
    if threshold is not None:
        metrics["accuracy_at_threshold"] = float(((scores >= float(threshold)) == (labels == 1)).mean())
    return metrics


def ranking(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k: int = 10,
    recall_k: Sequence[int] = (100,),
) -> dict[str, float]:
    """Mean NDCG@k, MRR@k, MAP and Recall@r of a run ``{query: {doc: score}}`` against graded ``qrels``.

    Queries without any relevant document are skipped (as in BEIR / pytrec_eval).
    """
    totals = {f"ndcg@{k}": 0.0, f"mrr@{k}": 0.0, "map": 0.0, **{f"recall@{r}": 0.0 for r in recall_k}}
    n_queries = 0
    for query_id, relevant in qrels.items():
        relevant = {doc: grade for doc, grade in relevant.items() if grade > 0}
        if not relevant:
            continue
        n_queries += 1
        ranked = sorted(run.get(query_id, {}).items(), key=lambda item: -item[1])
        docs = [doc for doc, _ in ranked]
        gains = [relevant.get(doc, 0) for doc in docs[:k]]
        dcg = sum((2**g - 1) / np.log2(i + 2) for i, g in enumerate(gains))
        ideal = sorted(relevant.values(), reverse=True)[:k]
        idcg = sum((2**g - 1) / np.log2(i + 2) for i, g in enumerate(ideal))
        totals[f"ndcg@{k}"] += float(dcg / idcg)
        first_hit = next((i for i, doc in enumerate(docs[:k]) if doc in relevant), None)
        totals[f"mrr@{k}"] += 0.0 if first_hit is None else 1.0 / (first_hit + 1)
        hits, precision_sum = 0, 0.0
        for i, doc in enumerate(docs):
            if doc in relevant:
                hits += 1
                precision_sum += hits / (i + 1)
        totals["map"] += precision_sum / len(relevant)
        for r in recall_k:
            totals[f"recall@{r}"] += len(set(docs[:r]) & relevant.keys()) / len(relevant)
    if n_queries == 0:
        raise ValueError("qrels hold no query with a relevant document.")
    return {name: value / n_queries for name, value in totals.items()}
