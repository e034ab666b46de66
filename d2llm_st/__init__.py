"""d2llm: D2LLM (decomposed and distilled LLMs for semantic search) for sentence-transformers.

Importing this package lets plain ``SentenceTransformer(path)`` load saved D2LLM models.

The exports load on first use (PEP 562), so ``import d2llm_st`` and the ``d2llm`` command line start in a
fraction of a second instead of importing torch and sentence-transformers up front. The registration of the
D2LLM modules with sentence-transformers (:func:`d2llm_st.modules.register_with_sentence_transformers`, done
when ``d2llm_st.modules`` is imported) still happens before any ``SentenceTransformer`` can load a model: at once
when sentence-transformers is already imported, otherwise right after its first import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from d2llm_st.model import D2LLM
    from d2llm_st.modules import IEM, LLMBackbone, PMAPooling
    from d2llm_st.modules import register_with_sentence_transformers as register_with_sentence_transformers

__version__ = "0.1.0"
__all__ = ["D2LLM", "LLMBackbone", "PMAPooling", "IEM"]

_EXPORTS = {
    "D2LLM": "d2llm_st.model",
    "register_with_sentence_transformers": "d2llm_st.modules",
    "LLMBackbone": "d2llm_st.modules",
    "PMAPooling": "d2llm_st.modules",
    "IEM": "d2llm_st.modules",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


class _RegisteringLoader(importlib.abc.Loader):
    """sentence-transformers' own loader, then ``d2llm_st.modules`` (which registers our modules on import; when it
    is what is importing sentence-transformers, it registers once it finishes)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        importlib.import_module("d2llm_st.modules")

    def __getattr__(self, name: str) -> Any:  # resources, is_package, ...: the real loader's
        return getattr(self.loader, name)


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Finds ``sentence_transformers`` once, through the other finders, and wraps its loader."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "sentence_transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


if "sentence_transformers" in sys.modules:
    importlib.import_module("d2llm_st.modules")
elif not any(isinstance(finder, _RegisterOnImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterOnImport())
