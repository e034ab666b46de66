"""Load the passage embeddings that ``d2llm encode`` wrote into any LlamaIndex vector store, without re-encoding.

``d2llm encode`` (:func:`d2llm_st.corpus.encode_corpus`) encodes a corpus once, on as many GPUs and nodes as
``torchrun`` gives it; :func:`index_from_embeddings` streams its shards into a ``VectorStoreIndex`` whose vector
store is the embedded default (``SimpleVectorStore``), an embedded Qdrant (``QdrantClient(path=...)``) or a Qdrant
server or cluster (``QdrantClient(url=...)``): the same code, only the store's client changes. The nodes hold the
vectors the model would give (its passage prompt, unnormalised), so :class:`~d2llm_llamaindex.D2LLMRetriever`
rescores them from the store as usual.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import BasePydanticVectorStore

from d2llm_llamaindex.embedding import D2LLMEmbedding
from d2llm_st import D2LLM
from d2llm_st.corpus import check_complete, iter_corpus_embeddings, scan_corpus
from d2llm_st.errors import UserError

CORPUS_ID_KEY = "corpus_id"
"""Node metadata key holding the passage's id in the corpus (kept out of the embedded and the LLM text)."""

_NAMESPACE = uuid.UUID("5b0e6a52-7d0c-4d1e-9a55-d2114d2114d2")


def node_id(corpus_id: str) -> str:
    """The node id of a corpus passage: a UUID derived from its id (Qdrant accepts only UUIDs and integers)."""
    return str(uuid.uuid5(_NAMESPACE, corpus_id))


def corpus_nodes(embeddings: str, corpus: str | None = None) -> Iterator[list[TextNode]]:
    """One list of ``TextNode`` (text, stored vector, ``metadata[CORPUS_ID_KEY]``) per shard of ``embeddings``.

    Args:
        embeddings: A complete folder written by ``d2llm encode``.
        corpus: The corpus it encoded (default: the path its manifest records); it must be unchanged.
    """
    from d2llm_st.data.readers import iter_corpus

    manifest = check_complete(embeddings)
    corpus = corpus or manifest["corpus"]
    if scan_corpus(corpus).digest != manifest["corpus_digest"]:
        raise UserError(
            f"{corpus} is not the corpus encoded in {embeddings} (its ids or texts changed): pass corpus= the file "
            "that was encoded, or encode this one again."
        )
    passages = iter_corpus(corpus)
    for ids, vectors in iter_corpus_embeddings(embeddings):
        nodes = []
        for key, vector in zip(ids, vectors):
            _, text = next(passages)
            nodes.append(
                TextNode(
                    id_=node_id(key),
                    text=text,
                    embedding=vector.tolist(),
                    metadata={CORPUS_ID_KEY: key},
                    excluded_embed_metadata_keys=[CORPUS_ID_KEY],
                    excluded_llm_metadata_keys=[CORPUS_ID_KEY],
                )
            )
        yield nodes


def index_from_embeddings(
    embeddings: str | os.PathLike,
    model: D2LLM | str | os.PathLike,
    *,
    corpus: str | None = None,
    vector_store: BasePydanticVectorStore | None = None,
    embed_batch_size: int = 32,
    device: str | None = None,
    **index_kwargs: Any,
) -> VectorStoreIndex:
    """A ``VectorStoreIndex`` over the passages encoded in ``embeddings``, loaded shard by shard into ``vector_store``.

    Args:
        embeddings: A complete folder written by ``d2llm encode`` (role ``passage``).
        model: The D2LLM that wrote it (a model or its path); the index embeds queries with it.
        corpus: The encoded corpus (default: the path the folder's manifest records).
        vector_store: Any LlamaIndex vector store (default: a new ``SimpleVectorStore``). For Qdrant, create the
            collection with dot-product distance so that stage 2 reads raw vectors (docs/llamaindex.md).
        embed_batch_size: Queries per forward pass (and passages, if a store cannot return vectors).
        device: Device to load a model given by path onto.
        **index_kwargs: Passed to ``VectorStoreIndex`` (``insert_batch_size=``, ``show_progress=``, ...).

    Raises:
        UserError: the folder is unfinished, was written by another model or for another role, or the corpus changed.
    """
    from d2llm_st.fingerprint import weights_fingerprint

    embeddings = os.fspath(embeddings)
    manifest = check_complete(embeddings)
    embed_model = D2LLMEmbedding(model=model, embed_batch_size=embed_batch_size, device=device)
    fingerprint = weights_fingerprint(embed_model.model, any_dtype=True)
    if fingerprint != manifest["model_fingerprint"] or manifest["role"] != "passage":
        raise UserError(
            f"{embeddings} holds {manifest['role']} embeddings of the model with fingerprint "
            f"{manifest['model_fingerprint']}, not passage embeddings of this one ({fingerprint}): an index needs "
            "passage embeddings from the model that embeds its queries."
        )
    storage_context = StorageContext.from_defaults(vector_store=vector_store)
    index = VectorStoreIndex(nodes=[], storage_context=storage_context, embed_model=embed_model, **index_kwargs)
    for nodes in corpus_nodes(embeddings, corpus):
        index.insert_nodes(nodes)
    return index
