"""Resolve the adapters' ``model`` argument: a loaded :class:`~d2llm_st.D2LLM`, or a path / hub id loaded once.

An embedding, a retriever and a reranker built from the same path share one loaded model (held
weakly: it is freed when no adapter uses it any more), so a pipeline does not load the LLM three times.
A model the adapters load themselves only serves, so its LoRA adapter is merged into the weights (an unmerged
adapter doubles a CPU forward pass, see docs/cpu.md); a model object passed in is used as it is.
"""

from __future__ import annotations

import logging
import os
from weakref import WeakValueDictionary

from sentence_transformers import SentenceTransformer

from d2llm_st import D2LLM

logger = logging.getLogger(__name__)

IN_MEMORY = "<in-memory D2LLM>"
"""``model_name`` of an adapter built from a model object that was not loaded from a path."""

_LOADED: WeakValueDictionary[tuple[str, str | None], D2LLM] = WeakValueDictionary()


def resolve_model(
    model: D2LLM | str | os.PathLike | None, model_name: str | None = None, device: str | None = None
) -> tuple[D2LLM, str]:
    """Return ``(D2LLM, model_name)`` for a model object or a path / hub id (``model`` wins over ``model_name``).

    ``model_name`` is what serialisation stores: the path the model was loaded from, or :data:`IN_MEMORY`.
    """
    if model is None:
        if model_name is None:
            raise ValueError("Pass model= (a D2LLM or the path of a saved one).")
        if model_name == IN_MEMORY:
            raise ValueError(
                f"This adapter was serialised from an in-memory D2LLM ({IN_MEMORY}), which cannot be reloaded: "
                "pass the model again, e.g. from_dict(data, model=d2llm), or save it with "
                "model.save_pretrained(path) and build the adapter from that path."
            )
        model = model_name
    if isinstance(model, D2LLM):
        if model_name is None:
            model_name = next((key[0] for key, loaded in _LOADED.items() if loaded is model), IN_MEMORY)
        return model, model_name
    if isinstance(model, SentenceTransformer):
        raise TypeError(
            f"model is a plain {type(model).__name__}, not a D2LLM (which has the IEM scorer): load it with "
            "d2llm_st.D2LLM(path) or pass its path."
        )
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a D2LLM or the path of a saved one, got {type(model).__name__}.")
    path = os.fspath(model)
    key = (os.path.abspath(path) if os.path.isdir(path) else path, device)
    # No device asked for: any copy of this model will do.
    loaded = next((m for (name, on), m in _LOADED.items() if name == key[0] and device in (None, on)), None)
    if loaded is None:
        logger.info(f"Loading D2LLM from {key[0]}")
        loaded = D2LLM.for_inference(key[0], device=device)
        _LOADED[key] = loaded
    return loaded, key[0]
