"""Labelled pairs for teacher fine-tuning: (text a, text b, target P(yes), task).

A small LLM is close to random as a zero-shot judge, so it is first taught to answer "yes" for
positives (entailment, relevant passage) and "no" for negatives (contradiction, wrong answer). STS
scores give soft targets in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from d2llm_st.data.readers import BEIRDataset
from d2llm_st.tasks import check_task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledPair:
    """One training pair: ``label`` is the target ``P(yes)`` (1 = yes, 0 = no, or a soft value in between)."""

    text_a: str
    text_b: str
    label: float
    task: str

    def __post_init__(self) -> None:
        check_task(self.task)
        if not 0.0 <= self.label <= 1.0:
            raise ValueError(f"label must be a target probability in [0, 1], got {self.label} for {self.text_a!r}.")


def nli_pairs(rows: Sequence[dict], neutral: str = "drop") -> list[LabelledPair]:
    """Symmetric pairs from NLI rows: entailment 1, contradiction 0, neutral dropped (or 0 with ``"negative"``)."""
    if neutral not in ("drop", "negative"):
        raise ValueError(f"neutral must be 'drop' or 'negative', got {neutral!r}.")
    targets = {"entailment": 1.0, "contradiction": 0.0, "neutral": None if neutral == "drop" else 0.0}
    return [
        LabelledPair(row["premise"], row["hypothesis"], targets[row["label"]], "symmetric")
        for row in rows
        if targets[row["label"]] is not None
    ]


def sts_pairs(rows: Sequence[dict]) -> list[LabelledPair]:
    """Symmetric pairs from STS rows whose ``score`` is already in [0, 1] (``read_sts(normalize=True)``)."""
    return [LabelledPair(row["sentence1"], row["sentence2"], float(row["score"]), "symmetric") for row in rows]


def beir_pairs(dataset: BEIRDataset, negatives: dict[str, list[str]] | None = None) -> list[LabelledPair]:
    """Asymmetric (query, passage) pairs: qrels positives -> 1 and negatives -> 0.

    Negatives are the incorrect candidates of an answer-selection set (``dataset.candidates``), or the
    corpus ids given per query in ``negatives`` (e.g. mined with :func:`~d2llm_st.data.mining.mine_negative_ids`).
    """
    pairs = []
    for query_id, query in dataset.queries.items():
        relevant = {doc for doc, grade in dataset.qrels.get(query_id, {}).items() if grade > 0}
        wrong = [doc for doc, grade in dataset.candidates.get(query_id, {}).items() if grade <= 0]
        wrong += (negatives or {}).get(query_id, [])
        pairs += [LabelledPair(query, dataset.corpus[doc], 1.0, "asymmetric") for doc in sorted(relevant)]
        pairs += [
            LabelledPair(query, dataset.corpus[doc], 0.0, "asymmetric")
            for doc in dict.fromkeys(wrong)
            if doc not in relevant
        ]
    if not any(pair.label == 0.0 for pair in pairs):
        logger.warning("No negative (query, passage) pairs: the set has no candidates and no negatives were given.")
    return pairs
