"""The D2LLM pipeline as sentence-transformers modules: backbone -> PMA pooling -> IEM.

Importing this package registers the three classes with sentence-transformers, so plain
``SentenceTransformer(path)`` loads a saved D2LLM (see :func:`register_with_sentence_transformers`).
"""

from types import MappingProxyType

from sentence_transformers import SentenceTransformer

from d2llm_st.modules.backbone import LLMBackbone
from d2llm_st.modules.iem import IEM
from d2llm_st.modules.pma import PMAPooling

MODULE_CLASSES = MappingProxyType(
    {f"{cls.__module__}.{cls.__qualname__}": cls for cls in (LLMBackbone, PMAPooling, IEM)}
)
"""The classes a saved D2LLM's ``modules.json`` names, resolved without ``trust_remote_code``."""


def register_with_sentence_transformers() -> None:
    """Let plain ``SentenceTransformer(path)`` load D2LLM modules from this installed package.

    sentence-transformers 6 only imports module classes from outside its own namespace with
    ``trust_remote_code=True``, which for a hub id would run code from the repository. Declaring
    our classes through the ``_module_classes`` hook resolves them to this installed package
    instead, and no remote code runs.
    """
    known = dict(SentenceTransformer._module_classes)
    if not all(name in known for name in MODULE_CLASSES):
        SentenceTransformer._module_classes = MappingProxyType({**known, **MODULE_CLASSES})


register_with_sentence_transformers()

__all__ = ["IEM", "MODULE_CLASSES", "LLMBackbone", "PMAPooling", "register_with_sentence_transformers"]
