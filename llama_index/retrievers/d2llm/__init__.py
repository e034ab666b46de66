"""``from llama_index.retrievers.d2llm import D2LLMRetriever``: where LlamaIndex users look for retrievers.

A re-export of :class:`d2llm_llamaindex.D2LLMRetriever` (``pip install "d2llm[llamaindex]"``), laid out like the
official ``llama-index-retrievers-*`` integrations (a PEP 420 namespace: no ``__init__.py`` above this folder).
"""

from d2llm_llamaindex.retriever import D2LLMRetriever

__all__ = ["D2LLMRetriever"]
