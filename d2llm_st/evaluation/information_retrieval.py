"""IR evaluation as D2LLM is deployed: cosine search over the corpus, then a rerank of the top candidates."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from d2llm_st.data.readers import read_beir
from d2llm_st.data.sampling import subsample
from d2llm_st.evaluation.base import PairEvaluator, evaluation_subset
from d2llm_st.evaluation.metrics import ranking
from d2llm_st.evaluation.scorers import EmbeddingScorer, Scorer, as_scorer

logger = logging.getLogger(__name__)


class IEMInformationRetrievalEvaluator(PairEvaluator):
    """NDCG@k, MRR@k, MAP and Recall@r of retrieve-then-rerank over a corpus.

    1. First stage: the corpus is embedded once (``passage`` role), each query once (``query`` role), and the
       ``max(candidate_k, k, recall_k)`` nearest passages by cosine are kept.
    2. Rerank: the top ``candidate_k`` are re-scored by the model (a D2LLM with its IEM over the stored
       embeddings, no second backbone pass; a cross-encoder or teacher jointly) and put in front of the rest
       of the first-stage list.

    A D2LLM or bi-encoder is its own first stage; a cross-encoder or teacher needs ``first_stage`` (a
    bi-encoder or D2LLM). A bi-encoder on its own is not reranked (its score is the cosine). The metrics of the
    first stage alone are returned too (``first_stage_*``), so the rerank's gain is visible. The primary
    metric is ``ndcg@{k}``. Arguments follow sentence-transformers' ``InformationRetrievalEvaluator``.

    Args:
        queries: ``{query_id: text}``.
        corpus: ``{doc_id: text}``.
        relevant_docs: ``{query_id: {doc_id: grade}}`` or ``{query_id: set(doc_ids)}``.
        candidate_k: How many first-stage candidates the model reranks per query.
        first_stage: Model (or scorer) for the first stage; default: the evaluated model.
        k: Cut-off of NDCG and MRR.
        recall_k: Cut-offs of Recall.
    """

    csv_name = "iem_information_retrieval_evaluation"
    PRIMARY_METRIC = "ndcg@10"
    """The primary metric with the default ``k=10`` (``ndcg@{k}`` in general)."""

    def __init__(
        self,
        queries: Mapping[str, str],
        corpus: Mapping[str, str],
        relevant_docs: Mapping[str, Mapping[str, int] | set[str]],
        candidate_k: int = 100,
        first_stage: Any = None,
        k: int = 10,
        recall_k: Sequence[int] = (100,),
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        write_csv: bool = True,
    ) -> None:
        super().__init__(name, batch_size, show_progress_bar, write_csv)
        if candidate_k < 0:
            raise ValueError(f"candidate_k must be >= 0, got {candidate_k}.")
        self.qrels = {
            str(query): {str(doc): 1 for doc in docs} if isinstance(docs, (set, list)) else dict(docs)
            for query, docs in relevant_docs.items()
            if query in queries
        }
        self.queries = {str(query): text for query, text in queries.items() if query in self.qrels}
        if not self.queries:
            raise ValueError("No query has relevant documents in relevant_docs: nothing to evaluate.")
        self.corpus = dict(corpus)
        self.candidate_k = candidate_k
        self.first_stage = first_stage
        self.k = k
        self.recall_k = tuple(recall_k)
        self.primary_metric = f"ndcg@{k}"

    @classmethod
    def from_beir(
        cls,
        folder: str,
        split: str = "test",
        limit: int | None = None,
        max_corpus: int | None = None,
        **kwargs: Any,
    ) -> IEMInformationRetrievalEvaluator:
        """From a BEIR folder. ``limit`` keeps a fixed random subset of queries; ``max_corpus`` shrinks the corpus
        to the kept queries' relevant documents plus random others (a quick check, not the benchmark figure)."""
        data = read_beir(folder, split)
        query_ids = evaluation_subset(sorted(data.queries), limit, "queries")
        queries = {query: data.queries[query] for query in query_ids}
        corpus = data.corpus
        if max_corpus is not None and max_corpus < len(corpus):
            relevant = {doc for query in query_ids for doc in data.qrels[query] if doc in corpus}
            others = sorted(set(corpus) - relevant)
            room = max_corpus - len(relevant)
            keep = relevant | set(subsample(others, room, seed=0, what="other passages") if room > 0 else [])
            logger.warning(
                f"Searching {len(keep)} of {len(corpus)} passages (max_corpus={max_corpus}, relevant ones kept): "
                "scores are higher than on the full corpus."
            )
            corpus = {doc: text for doc, text in corpus.items() if doc in keep}
        return cls(queries, corpus, data.qrels, **kwargs)

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict:
        scorer = self.scorer(model)
        first = scorer if self.first_stage is None else as_scorer(self.first_stage, self.batch_size)
        if not isinstance(first, EmbeddingScorer):
            raise ValueError(
                f"A {scorer.model_type} cannot search a corpus on its own: pass first_stage= (CLI: --first-stage) "
                "a bi-encoder or D2LLM whose candidates it reranks."
            )
        query_ids, doc_ids = list(self.queries), list(self.corpus)
        corpus_embeddings = first.embed([self.corpus[doc] for doc in doc_ids], "passage")
        query_embeddings = first.embed([self.queries[query] for query in query_ids], "query")
        depth = min(len(doc_ids), max(self.candidate_k, self.k, *self.recall_k))
        top_scores, top_indices = self._cosine_top(query_embeddings, corpus_embeddings, depth)

        first_run = {
            query: {doc_ids[j]: float(s) for j, s in zip(top_indices[i].tolist(), top_scores[i].tolist())}
            for i, query in enumerate(query_ids)
        }
        metrics = {}
        candidate_k = min(self.candidate_k, depth)
        if candidate_k and (scorer is not first or first.reranks):
            reranked = self._rerank(
                scorer, first, query_ids, query_embeddings, corpus_embeddings, top_indices, candidate_k
            )
            run = {}
            for i, query in enumerate(query_ids):
                order = sorted(range(candidate_k), key=lambda c: -reranked[i][c])  # stable: ties keep cosine order
                ranked = [int(top_indices[i, c]) for c in order] + top_indices[i, candidate_k:].tolist()
                run[query] = {doc_ids[j]: float(len(ranked) - r) for r, j in enumerate(ranked)}
            metrics.update(ranking(run, self.qrels, self.k, self.recall_k))
            first_metrics = ranking(first_run, self.qrels, self.k, self.recall_k)
            metrics.update({f"first_stage_{key}": value for key, value in first_metrics.items()})
        else:
            metrics.update(ranking(first_run, self.qrels, self.k, self.recall_k))
        return self.finish(model, metrics, output_path, epoch, steps)

    @staticmethod
    def _cosine_top(queries: torch.Tensor, corpus: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
        queries = torch.nn.functional.normalize(queries.float(), dim=-1)
        corpus = torch.nn.functional.normalize(corpus.float().to(queries.device), dim=-1)
        scores, indices = [], []
        for start in range(0, len(queries), 256):
            top = (queries[start : start + 256] @ corpus.T).topk(depth, dim=1)
            scores.append(top.values.cpu())
            indices.append(top.indices.cpu())
        return torch.cat(scores), torch.cat(indices)

    def _rerank(
        self,
        scorer: Scorer,
        first: EmbeddingScorer,
        query_ids: list[str],
        query_embeddings: torch.Tensor,
        corpus_embeddings: torch.Tensor,
        top_indices: torch.Tensor,
        candidate_k: int,
    ) -> list[list[float]]:
        """Scores ``[Q][candidate_k]`` of each query's top candidates by the evaluated model."""
        if scorer is first:  # a D2LLM reranking its own candidates: IEM over the stored embeddings
            return [
                scorer.score_embeddings(
                    query_embeddings[i], corpus_embeddings[top_indices[i, :candidate_k]], "asymmetric"
                )
                .float()
                .tolist()
                for i in tqdm(range(len(query_ids)), desc="IEM rerank", disable=not first.show_progress_bar)
            ]
        doc_ids = list(self.corpus)
        pairs = [
            (self.queries[query], self.corpus[doc_ids[j]])
            for i, query in enumerate(query_ids)
            for j in top_indices[i, :candidate_k].tolist()
        ]
        scores = scorer.score_pairs(pairs, "asymmetric")
        return [scores[i * candidate_k : (i + 1) * candidate_k].tolist() for i in range(len(query_ids))]

    @property
    def description(self) -> str:
        return "Information Retrieval (IEM rerank)"

    def get_config_dict(self) -> dict[str, Any]:
        return {"candidate_k": self.candidate_k, "k": self.k, "recall_k": list(self.recall_k)}
