"""``D2LLMRerank``: rerank the nodes of any LlamaIndex retriever with a D2LLM's IEM."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from d2llm_llamaindex.embedding import D2LLMEmbedding
from d2llm_llamaindex.scoring import check_query, rank_nodes, usable_embeddings
from d2llm_st import D2LLM

logger = logging.getLogger(__name__)

RETRIEVAL_SCORE_KEY = "retrieval_score"
"""Metadata key of the previous score with ``keep_retrieval_score=True`` (hidden from embedding and LLM text)."""


class D2LLMRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes by the IEM's emulated teacher ``P(yes)`` and keep the best ``top_n``.

    One query encoding, plus one passage encoding per node that carries no usable embedding (nodes
    from a vector store that returns vectors, or from ``D2LLMRetriever``'s store, need none; BM25 nodes
    do). A node embedding is used only if it has this model's size and is not a unit-normalised copy;
    set ``use_node_embeddings=False`` if your nodes carry same-size vectors from another model.

    Args:
        model: A :class:`~d2llm_st.D2LLM`, or the path (or hub id) of a saved one.
        top_n: Nodes kept; with fewer input nodes, all of them are returned, reranked.
        use_node_embeddings: Score ``node.embedding`` when present instead of re-encoding the text.
        keep_retrieval_score: Keep each node's previous score in ``node.metadata["retrieval_score"]``;
            the key is added to the node's excluded embed / LLM metadata keys, so it never changes the
            text that is embedded, reranked or sent to the LLM.
        batch_size: Passages per forward pass.
        device: Device to load a model given by path onto.

    An empty node list gives ``[]``; a missing, empty or blank query raises ``ValueError``.

    Example::

        query_engine = index.as_query_engine(
            similarity_top_k=50, node_postprocessors=[D2LLMRerank(model="path/to/d2llm", top_n=5)]
        )

    Serialisable with ``to_dict`` / ``from_dict`` (``model_name`` is the model's path; for a model built in
    memory pass it again: ``D2LLMRerank.from_dict(data, model=m)``).
    """

    model_name: str = Field(description="Path or hub id of the D2LLM model (what serialisation stores).")
    top_n: int = Field(default=10, gt=0, description="Number of nodes to return, best IEM score first.")
    use_node_embeddings: bool = Field(default=True, description="Score node.embedding when present and usable.")
    keep_retrieval_score: bool = Field(default=False, description="Keep the previous score in node metadata.")
    batch_size: int = Field(default=32, gt=0, description="Passages per forward pass.")
    device: str | None = Field(default=None, description="Device for a model loaded from model_name.")
    _embed_model: D2LLMEmbedding = PrivateAttr()
    _reencode_logged: bool = PrivateAttr(default=False)

    def __init__(
        self,
        model: D2LLM | str | os.PathLike | None = None,
        top_n: int = 10,
        *,
        model_name: str | None = None,
        use_node_embeddings: bool = True,
        keep_retrieval_score: bool = False,
        batch_size: int = 32,
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        embed_model = D2LLMEmbedding(model=model, model_name=model_name, embed_batch_size=batch_size, device=device)
        super().__init__(
            model_name=embed_model.model_name,
            top_n=top_n,
            use_node_embeddings=use_node_embeddings,
            keep_retrieval_score=keep_retrieval_score,
            batch_size=batch_size,
            device=device,
            **kwargs,
        )
        self._embed_model = embed_model

    @classmethod
    def class_name(cls) -> str:
        return "D2LLMRerank"

    @property
    def model(self) -> D2LLM:
        return self._embed_model.model

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = check_query(query_bundle, "D2LLMRerank")
        if not nodes:
            return []
        model = self._embed_model.model
        query_embedding = torch.tensor(self._embed_model.get_query_embedding(query), dtype=torch.float32)
        node_vectors = {n.node.node_id: n.node.embedding for n in nodes} if self.use_node_embeddings else {}
        usable, reason = usable_embeddings(model, query_embedding, node_vectors)
        if not self.use_node_embeddings:
            reason = "use_node_embeddings=False"
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model_name,
                EventPayload.QUERY_STR: query,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            ranked, reencoded = rank_nodes(model, query_embedding, nodes, usable, self.top_n, self.batch_size)
            event.on_end(payload={EventPayload.NODES: ranked})
        if reencoded and not self._reencode_logged:
            logger.info(
                f"D2LLMRerank encoded {reencoded} of {len(nodes)} passages: "
                f"{reason or 'the nodes carry no embedding'}. Logged once."
            )
            self._reencode_logged = True
        if self.keep_retrieval_score:
            previous = {n.node.node_id: n.score for n in nodes}
            for scored in ranked:
                keep_hidden_metadata(scored.node, RETRIEVAL_SCORE_KEY, previous[scored.node.node_id])
        return ranked


def keep_hidden_metadata(node: Any, key: str, value: Any) -> None:
    """Set ``node.metadata[key]`` without it leaking into the embedded or LLM text of the node."""
    node.metadata[key] = value
    for excluded in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
        if key not in excluded:
            excluded.append(key)
