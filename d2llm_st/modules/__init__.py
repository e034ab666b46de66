"""The D2LLM pipeline as sentence-transformers modules: backbone -> PMA pooling -> IEM."""

from d2llm_st.modules.backbone import LLMBackbone
from d2llm_st.modules.iem import IEM
from d2llm_st.modules.pma import PMAPooling

__all__ = ["LLMBackbone", "PMAPooling", "IEM"]
