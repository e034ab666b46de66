"""``from llama_index.postprocessor.d2llm_rerank import D2LLMRerank``: where LlamaIndex users look for rerankers.

A re-export of :class:`d2llm_llamaindex.D2LLMRerank` (``pip install "d2llm[llamaindex]"``), laid out like the
official ``llama-index-postprocessor-*`` integrations (a PEP 420 namespace: no ``__init__.py`` above this folder).
"""

from d2llm_llamaindex.rerank import D2LLMRerank

__all__ = ["D2LLMRerank"]
