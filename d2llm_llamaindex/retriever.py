"""``D2LLMRetriever``: D2LLM's two-stage search over any LlamaIndex vector store index.

Stage 1 takes the ``candidate_k`` nearest nodes by embedding similarity (the vector store's own
search, so it scales with the store). Stage 2 rescores them with the IEM from the stored passage
embeddings (no backbone pass for passages) and keeps the best ``similarity_top_k``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import torch
from llama_index.core import VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle

from d2llm_llamaindex.embedding import D2LLMEmbedding
from d2llm_llamaindex.scoring import check_query, check_top, rank_nodes, usable_embeddings
from d2llm_llamaindex.stored import fetch_stored_embeddings
from d2llm_st import D2LLM

logger = logging.getLogger(__name__)


class D2LLMRetriever(BaseRetriever):
    """Retrieve ``candidate_k`` nodes by vector similarity, rescore them with the IEM, return the best.

    Each returned ``NodeWithScore`` has the IEM's emulated teacher ``P(yes)`` (in (0, 1)) as its score.
    The index must have been built with this model's embeddings (``embed_model=D2LLMEmbedding(model)``).
    Stage 2 reads the candidates' vectors back from the store (``SimpleVectorStore``, and stores that
    implement ``get_nodes`` with vectors, like Qdrant); where the store cannot return them (e.g. FAISS),
    or returns unit-normalised copies (a Qdrant collection with cosine distance), the candidate passages
    are re-encoded, which costs ``candidate_k`` passage encodings per query, and a warning says so once.

    Args:
        index: A ``VectorStoreIndex`` over any vector store.
        model: A :class:`~d2llm_st.D2LLM`, or the path (or hub id) of a saved one.
        candidate_k: Stage-1 candidates per query.
        similarity_top_k: Nodes returned (fewer if the index has fewer).
        embed_batch_size: Passages per forward pass when re-encoding.
        device: Device to load a model given by path onto.
        callback_manager: LlamaIndex callback manager.
        verbose: LlamaIndex verbose flag.
        **retriever_kwargs: Passed to ``index.as_retriever`` for stage 1 (``filters=``, ``vector_store_kwargs=``, ...).

    Behaviour at the edges: an empty index gives ``[]``; an empty or blank query raises ``ValueError``.
    The query is embedded by this retriever's model (a ``QueryBundle.embedding`` from elsewhere is ignored);
    ``custom_embedding_strs`` (e.g. from HyDE) steer stage 1 only, and the IEM scores the query text.

    Example::

        retriever = D2LLMRetriever(index=index, model="path/to/d2llm", candidate_k=50, similarity_top_k=10)
        query_engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    """

    def __init__(
        self,
        index: VectorStoreIndex,
        model: D2LLM | str | os.PathLike,
        candidate_k: int = 50,
        similarity_top_k: int = 10,
        *,
        embed_batch_size: int = 32,
        device: str | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        **retriever_kwargs: Any,
    ) -> None:
        if not isinstance(index, VectorStoreIndex):
            raise TypeError(f"index must be a llama_index VectorStoreIndex, got {type(index).__name__}.")
        check_top(candidate_k, "candidate_k")
        check_top(similarity_top_k, "similarity_top_k")
        if candidate_k < similarity_top_k:
            raise ValueError(
                f"candidate_k={candidate_k} is smaller than similarity_top_k={similarity_top_k}: stage 1 must "
                "keep at least as many candidates as the retriever returns."
            )
        self._index = index
        self._embed_model = D2LLMEmbedding(model=model, embed_batch_size=embed_batch_size, device=device)
        self._candidate_k = candidate_k
        self._similarity_top_k = similarity_top_k
        self._stage1 = index.as_retriever(
            similarity_top_k=candidate_k, embed_model=self._embed_model, **retriever_kwargs
        )
        self._reencode_logged = False
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def class_name(cls) -> str:
        return "D2LLMRetriever"

    @property
    def model(self) -> D2LLM:
        return self._embed_model.model

    @property
    def embed_model(self) -> D2LLMEmbedding:
        """The query embedding model (over the same D2LLM)."""
        return self._embed_model

    @property
    def candidate_k(self) -> int:
        return self._candidate_k

    @property
    def similarity_top_k(self) -> int:
        return self._similarity_top_k

    def _stage1_bundle(self, query_bundle: QueryBundle, query_embedding: list[float]) -> QueryBundle:
        if query_bundle.embedding_strs == [query_bundle.query_str]:
            embedding = query_embedding
        else:
            embedding = self._embed_model.get_agg_embedding_from_queries(query_bundle.embedding_strs)
        return QueryBundle(query_str=query_bundle.query_str, embedding=embedding)

    def _rescore(self, query_embedding: list[float], candidates: list[NodeWithScore]) -> list[NodeWithScore]:
        if not candidates:
            return []
        model = self._embed_model.model
        query = torch.tensor(query_embedding, dtype=torch.float32)
        node_ids = list(dict.fromkeys(candidate.node.node_id for candidate in candidates))
        stored = fetch_stored_embeddings(self._index, node_ids)
        usable, reason = usable_embeddings(model, query, stored or {})
        ranked, reencoded = rank_nodes(
            model, query, candidates, usable, self._similarity_top_k, self._embed_model.embed_batch_size
        )
        if reencoded and not self._reencode_logged:
            if stored is None:
                reason = f"{type(self._index.vector_store).__name__} does not return stored vectors"
            logger.warning(
                f"D2LLMRetriever re-encoded {reencoded} of {len(node_ids)} candidate passages for stage 2 "
                f"({reason or 'the store holds no vector for them'}); this costs one passage encoding per "
                "candidate and query. Logged once."
            )
            self._reencode_logged = True
        return ranked

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = check_query(query_bundle, "D2LLMRetriever")
        query_embedding = self._embed_model.get_query_embedding(query)
        candidates = self._stage1.retrieve(self._stage1_bundle(query_bundle, query_embedding))
        return self._rescore(query_embedding, candidates)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = check_query(query_bundle, "D2LLMRetriever")
        query_embedding = await self._embed_model.aget_query_embedding(query)
        bundle = await asyncio.to_thread(self._stage1_bundle, query_bundle, query_embedding)
        candidates = await self._stage1.aretrieve(bundle)
        return await asyncio.to_thread(self._rescore, query_embedding, candidates)
