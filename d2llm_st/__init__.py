"""d2llm: D2LLM (decomposed and distilled LLMs for semantic search) for sentence-transformers.

Importing this package lets plain ``SentenceTransformer(path)`` load saved D2LLM models.
"""

from d2llm_st.model import D2LLM, register_with_sentence_transformers
from d2llm_st.modules import IEM, LLMBackbone, PMAPooling

register_with_sentence_transformers()

__version__ = "0.1.0"
__all__ = ["D2LLM", "LLMBackbone", "PMAPooling", "IEM"]
