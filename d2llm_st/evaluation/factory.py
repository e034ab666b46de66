"""One way to build an evaluator and read its result, for every caller.

``d2llm eval``, the evaluation step of ``d2llm distill`` (a config's ``evaluation.sets``) and the benchmark scripts
all call :func:`build_evaluator` with an eval set type of :data:`d2llm_st.tasks.EVAL_TYPES`, and report each
result by the evaluator's own ``primary_metric`` (:func:`headline_metric`), so a table, a model card and the
command line cannot disagree on which figure leads.

=====================  ============================================  ==========================================
type                   data (``path``)                               evaluator (primary metric)
=====================  ============================================  ==========================================
``sts``                STS file, or a folder with ``<split>.*``      :class:`IEMSimilarityEvaluator` (spearman)
``nli``                NLI file, or a folder with ``<split>.*``      :class:`IEMBinaryClassificationEvaluator`
                                                                     (auc)
``ir``                 BEIR folder                                   :class:`IEMInformationRetrievalEvaluator`
                                                                     (ndcg@10)
``answer-selection``   BEIR folder with ``candidates/<split>.tsv``   :class:`IEMRerankingEvaluator` (ndcg@10)
=====================  ============================================  ==========================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from d2llm_st.evaluation.base import PairEvaluator
from d2llm_st.evaluation.binary_classification import IEMBinaryClassificationEvaluator
from d2llm_st.evaluation.information_retrieval import IEMInformationRetrievalEvaluator
from d2llm_st.evaluation.reranking import IEMRerankingEvaluator
from d2llm_st.evaluation.similarity import IEMSimilarityEvaluator
from d2llm_st.tasks import check_eval_type

EVALUATOR_CLASSES: dict[str, type[PairEvaluator]] = {
    "sts": IEMSimilarityEvaluator,
    "nli": IEMBinaryClassificationEvaluator,
    "ir": IEMInformationRetrievalEvaluator,
    "answer-selection": IEMRerankingEvaluator,
}
"""The evaluator class of each eval set type (the keys are :data:`d2llm_st.tasks.EVAL_TYPES`)."""

DATA_EXTENSIONS = (".jsonl.gz", ".jsonl", ".csv", ".tsv")


def pairs_file(path: str, split: str) -> str:
    """``path`` itself when it is a file, else the ``<split>`` data file inside the folder ``path``.

    Raises:
        FileNotFoundError: the folder has no ``<split>`` file of a readable extension.
    """
    if not os.path.isdir(path):
        return path
    for extension in DATA_EXTENSIONS:
        candidate = os.path.join(path, split + extension)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"{path} has no {split}.jsonl.gz / .jsonl / .csv / .tsv; pass the file or --split.")


def build_evaluator(
    type: str,
    path: str,
    split: str = "test",
    name: str = "",
    limit: int | None = None,
    candidate_k: int = 100,
    max_corpus: int | None = None,
    first_stage: Any = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = False,
    write_csv: bool = True,
    threshold: float | None = None,
) -> PairEvaluator:
    """The evaluator of one eval set (see the module docstring for the types and their data).

    Args:
        type: ``sts``, ``nli``, ``ir`` or ``answer-selection``.
        path: The data file or folder.
        split: The split: ``qrels`` / ``candidates`` of a BEIR folder, or the file in a folder of sts / nli files.
        name: Prefix of the metric names (``""``: none).
        limit: Evaluate a fixed random subset: this many pairs (sts, nli), questions (answer-selection) or
            queries (ir) (:func:`~d2llm_st.evaluation.base.evaluation_subset`).
        candidate_k, max_corpus, first_stage: ``ir`` only (see :class:`IEMInformationRetrievalEvaluator`).
        batch_size, show_progress_bar, write_csv: As in every evaluator.
        threshold: ``nli`` only: a score threshold chosen on another split, whose accuracy is reported too
            (``accuracy_at_threshold``, see :class:`IEMBinaryClassificationEvaluator`).
    """
    eval_type = check_eval_type(type)
    if threshold is not None and eval_type != "nli":
        raise ValueError(f"threshold applies to nli eval sets only, not {eval_type!r}.")
    common = dict(name=name, batch_size=batch_size, show_progress_bar=show_progress_bar, write_csv=write_csv)
    if eval_type == "sts":
        return IEMSimilarityEvaluator.from_file(pairs_file(path, split), limit=limit, **common)
    if eval_type == "nli":
        return IEMBinaryClassificationEvaluator.from_nli_file(
            pairs_file(path, split), limit=limit, threshold=threshold, **common
        )
    if eval_type == "answer-selection":
        return IEMRerankingEvaluator.from_beir(path, split=split, limit=limit, **common)
    return IEMInformationRetrievalEvaluator.from_beir(
        path,
        split=split,
        limit=limit,
        max_corpus=max_corpus,
        candidate_k=candidate_k,
        first_stage=first_stage,
        **common,
    )


def headline_metric(evaluator_or_type: PairEvaluator | str) -> str:
    """The figure a result is reported by: an evaluator's (unprefixed) ``primary_metric``, or, for an eval set
    type, the default ``primary_metric`` of its evaluator class (e.g. to read back a saved ``results.json``)."""
    if isinstance(evaluator_or_type, PairEvaluator):
        return evaluator_or_type.headline_metric
    return EVALUATOR_CLASSES[check_eval_type(evaluator_or_type)].PRIMARY_METRIC


def evaluate(model: Any, evaluators: Sequence[PairEvaluator]) -> dict[str, dict[str, float]]:
    """``{evaluator name: {metric: value}}`` (metric names without the name prefix): a D2LLM is scored by its IEM,
    a bi-encoder by cosine, a CrossEncoder or teacher jointly (see :mod:`d2llm_st.evaluation.scorers`)."""
    results = {}
    for evaluator in evaluators:
        prefix = f"{evaluator.name}_" if evaluator.name else ""
        metrics = evaluator(model)
        results[evaluator.name] = {key.removeprefix(prefix): float(value) for key, value in metrics.items()}
    return results
