"""LlamaIndex adapters for D2LLM: embed with the student, retrieve in two stages, rerank with the IEM.

- :class:`D2LLMEmbedding` (``BaseEmbedding``): build and query any vector store index.
- :class:`D2LLMRetriever` (``BaseRetriever``): vector search for candidates, then IEM rescoring from the
  stored embeddings.
- :class:`D2LLMRerank` (``BaseNodePostprocessor``): IEM reranking of any retriever's nodes.
- :func:`index_from_embeddings`: a vector store index over the passage embeddings ``d2llm encode`` wrote.

They are also importable where LlamaIndex integrations live: ``llama_index.embeddings.d2llm``,
``llama_index.retrievers.d2llm`` and ``llama_index.postprocessor.d2llm_rerank``. LlamaIndex is an extra:
``pip install "d2llm[llamaindex]"``.
"""

try:
    import llama_index.core  # noqa: F401
except ModuleNotFoundError as error:
    if error.name not in ("llama_index", "llama_index.core"):
        raise
    raise ModuleNotFoundError(
        'd2llm_llamaindex needs LlamaIndex, which is an extra of d2llm: pip install "d2llm[llamaindex]" '
        "(llama-index-core 0.14). d2llm_st works without it.",
        name=error.name,
    ) from error

from d2llm_llamaindex.corpus import index_from_embeddings  # noqa: E402
from d2llm_llamaindex.embedding import D2LLMEmbedding  # noqa: E402
from d2llm_llamaindex.rerank import D2LLMRerank  # noqa: E402
from d2llm_llamaindex.retriever import D2LLMRetriever  # noqa: E402

__all__ = ["D2LLMEmbedding", "D2LLMRetriever", "D2LLMRerank", "index_from_embeddings"]
