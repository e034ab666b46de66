"""Answer selection: rank each question's own candidate list (WikiQA-style), MAP and MRR."""

from __future__ import annotations

from typing import Any

from d2llm_st.data.readers import read_beir
from d2llm_st.evaluation.base import PairEvaluator, evaluation_subset
from d2llm_st.evaluation.metrics import ranking


class IEMRerankingEvaluator(PairEvaluator):
    """MAP, MRR and NDCG@10 of each query's candidates ranked by pair score (``asymmetric`` task).

    The IEM counterpart of sentence-transformers' ``RerankingEvaluator`` and its sample format: each sample
    is ``{"query": str, "positive": [str, ...], "negative": [str, ...]}``. Samples without a positive are
    skipped (they carry no ranking signal). The primary metric is ``ndcg@10``, as in sentence-transformers'
    ``RerankingEvaluator``; ``mrr`` has no cut-off.
    """

    csv_name = "iem_reranking_evaluation"
    PRIMARY_METRIC = "ndcg@10"

    def __init__(
        self,
        samples: list[dict[str, Any]],
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        write_csv: bool = True,
    ) -> None:
        super().__init__(name, batch_size, show_progress_bar, write_csv)
        for i, sample in enumerate(samples):
            missing = [key for key in ("query", "positive", "negative") if key not in sample]
            if missing:
                raise ValueError(f"samples[{i}] has no {', '.join(missing)}; expected query, positive, negative.")
        self.samples = [sample for sample in samples if sample["positive"]]
        if not self.samples:
            raise ValueError("No sample has a positive candidate: nothing to rank.")
        self.primary_metric = self.PRIMARY_METRIC

    @classmethod
    def from_beir(
        cls, folder: str, split: str = "test", limit: int | None = None, **kwargs: Any
    ) -> IEMRerankingEvaluator:
        """From a BEIR folder with ``candidates/<split>.tsv`` (score 1 = correct, 0 = incorrect)."""
        data = read_beir(folder, split)
        if not data.candidates:
            raise FileNotFoundError(f"{folder} has no candidates/{split}.tsv: answer selection needs candidate lists.")
        samples = []
        for query_id, candidates in data.candidates.items():
            if query_id not in data.queries:
                continue
            missing = [doc for doc in candidates if doc not in data.corpus]
            if missing:
                raise ValueError(f"candidates/{split}.tsv names corpus ids {missing[:3]} that corpus.jsonl lacks.")
            samples.append(
                {
                    "query": data.queries[query_id],
                    "positive": [data.corpus[doc] for doc, label in candidates.items() if label > 0],
                    "negative": [data.corpus[doc] for doc, label in candidates.items() if label <= 0],
                }
            )
        return cls(evaluation_subset(samples, limit, "questions"), **kwargs)

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict:
        pairs, owners = [], []
        for i, sample in enumerate(self.samples):
            for j, text in enumerate(sample["positive"] + sample["negative"]):
                pairs.append((sample["query"], text))
                owners.append((str(i), str(j)))
        scores = self.scorer(model).score_pairs(pairs, "asymmetric")
        run: dict[str, dict[str, float]] = {}
        for (query, doc), score in zip(owners, scores):
            run.setdefault(query, {})[doc] = float(score)
        qrels = {str(i): {str(j): 1 for j in range(len(s["positive"]))} for i, s in enumerate(self.samples)}
        longest = max(len(candidates) for candidates in run.values())
        full = ranking(run, qrels, k=longest, recall_k=())
        metrics = {"map": full["map"], "mrr": full[f"mrr@{longest}"], "ndcg@10": ranking(run, qrels, 10, ())["ndcg@10"]}
        return self.finish(model, metrics, output_path, epoch, steps)

    @property
    def description(self) -> str:
        return "Reranking (IEM)"
