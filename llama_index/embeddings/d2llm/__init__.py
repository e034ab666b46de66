"""``from llama_index.embeddings.d2llm import D2LLMEmbedding``: where LlamaIndex users look for embeddings.

A re-export of :class:`d2llm_llamaindex.D2LLMEmbedding` (``pip install "d2llm[llamaindex]"``), laid out like the
official ``llama-index-embeddings-*`` integrations (a PEP 420 namespace: no ``__init__.py`` above this folder).
"""

from d2llm_llamaindex.embedding import D2LLMEmbedding

__all__ = ["D2LLMEmbedding"]
