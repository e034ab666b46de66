"""``D2LLMEmbedding``: a D2LLM student as a LlamaIndex ``BaseEmbedding``, for building and querying vector indexes."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from d2llm_llamaindex.models import resolve_model
from d2llm_st import D2LLM


class D2LLMEmbedding(BaseEmbedding):
    """Embed queries and passages with a D2LLM's backbone + PMA, each with the model's own prompt.

    Queries get the model's ``query`` prompt and passages (node texts) its ``document`` prompt, as in
    training, so the vectors are the ones the IEM was trained to score. The raw (unnormalised)
    PMA embeddings are returned: the IEM needs them as they are, and :class:`D2LLMRetriever` rescores
    the stored vectors without re-encoding.

    Args:
        model: A :class:`~d2llm_st.D2LLM`, or the path (or hub id) of a saved one.
        embed_batch_size: Texts per forward pass.
        device: Device to load a model given by path onto (default: the best available).

    Example::

        from llama_index.core import Document, VectorStoreIndex
        from d2llm_llamaindex import D2LLMEmbedding

        embed_model = D2LLMEmbedding(model="path/to/d2llm")
        index = VectorStoreIndex.from_documents([Document(text="...")], embed_model=embed_model)

    Serialisation (``to_dict`` / ``from_dict``) stores ``model_name``, the path the model was loaded
    from; a model built in memory has none, so pass it again: ``D2LLMEmbedding.from_dict(data, model=m)``.
    """

    model_name: str = Field(description="Path or hub id of the D2LLM model (what serialisation stores).")
    embed_batch_size: int = Field(default=32, gt=0, le=2048, description="Texts per forward pass.")
    device: str | None = Field(default=None, description="Device for a model loaded from model_name.")
    _model: D2LLM = PrivateAttr()

    def __init__(
        self,
        model: D2LLM | str | os.PathLike | None = None,
        *,
        model_name: str | None = None,
        embed_batch_size: int = 32,
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        loaded, model_name = resolve_model(model, model_name, device)
        super().__init__(model_name=model_name, embed_batch_size=embed_batch_size, device=device, **kwargs)
        self._model = loaded

    @classmethod
    def class_name(cls) -> str:
        return "D2LLMEmbedding"

    @property
    def model(self) -> D2LLM:
        """The D2LLM model (shared with retrievers and rerankers built from it)."""
        return self._model

    def _encode(self, texts: list[str], role: str) -> list[Embedding]:
        embeddings = self._model.encode_texts(
            texts, role, batch_size=self.embed_batch_size, show_progress_bar=False, convert_to_tensor=False
        )
        return embeddings.tolist()

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encode([query], "query")[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encode([text], "passage")[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._encode(texts, "passage")

    # The model is a local torch module: async runs the same forward pass in a worker thread, so an
    # event loop (a LlamaIndex workflow, a web server) is not blocked while it computes.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
