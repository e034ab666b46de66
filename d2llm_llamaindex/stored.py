"""Fetch the vectors a vector store already holds for some nodes, so stage 2 need not re-encode passages.

LlamaIndex query results carry no embeddings. ``SimpleVectorStore`` (the default in-memory store)
keeps them in ``data.embedding_dict``; stores that implement ``get_nodes`` (Qdrant, and most served
databases) return nodes with their vectors. Other stores (e.g. FAISS) cannot give them back.
"""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core import VectorStoreIndex
from llama_index.core.vector_stores import SimpleVectorStore


def fetch_stored_embeddings(index: VectorStoreIndex, node_ids: Sequence[str]) -> dict[str, list[float]] | None:
    """``{node_id: vector}`` for the nodes whose vector the index's store returns, or ``None`` when the
    store cannot return vectors at all."""
    store = index.vector_store
    if isinstance(store, SimpleVectorStore):
        table = store.data.embedding_dict
        return {node_id: table[node_id] for node_id in node_ids if node_id in table}
    try:
        nodes = store.get_nodes(node_ids=list(node_ids))
    except NotImplementedError:
        return None
    return {node.node_id: node.embedding for node in nodes if node.embedding is not None}
