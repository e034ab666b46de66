"""LlamaIndex adapters for D2LLM: embed with the student, retrieve in two stages, rerank with the IEM.

- :class:`D2LLMEmbedding` (``BaseEmbedding``): build and query any vector store index.
- :class:`D2LLMRetriever` (``BaseRetriever``): vector search for candidates, then IEM rescoring from the
  stored embeddings.
- :class:`D2LLMRerank` (``BaseNodePostprocessor``): IEM reranking of any retriever's nodes.
"""

from d2llm_llamaindex.embedding import D2LLMEmbedding
from d2llm_llamaindex.rerank import D2LLMRerank
from d2llm_llamaindex.retriever import D2LLMRetriever

__all__ = ["D2LLMEmbedding", "D2LLMRetriever", "D2LLMRerank"]
