"""Pick the right teacher class for a folder, hub id or model object, and refuse models that cannot teach."""

from __future__ import annotations

from typing import Any

from d2llm_st.errors import UserError
from d2llm_st.model_folders import check_pair_scorer, inspect_model
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.teacher.base import Teacher
from d2llm_st.teacher.cross_encoder_teacher import CrossEncoderTeacher
from d2llm_st.teacher.llm_teacher import LLMTeacher

KINDS = ("auto", "llm", "cross-encoder")
LLM_KINDS = ("teacher", "adapter", "causal-lm")
"""Folder kinds (:mod:`d2llm_st.model_folders`) that ``kind="auto"`` loads as an :class:`LLMTeacher`."""


def load_teacher(model: Any, kind: str = "auto", **kwargs: Any) -> Teacher:
    """A teacher from a ``CrossEncoder`` object or a name (``bundled:smollm2``, a folder or a hub id).

    ``kind="auto"``: a folder saved by :func:`~d2llm_st.teacher.finetune_teacher`, a peft adapter or a causal
    LM becomes an :class:`LLMTeacher`; a sentence-transformers ``CrossEncoder`` or a sequence-classification
    model a :class:`CrossEncoderTeacher`. ``kwargs`` go to the chosen class.

    Raises:
        UserError: a model that cannot score pairs (a bi-encoder, a D2LLM student, an encoder without a trained
            classifier: as a CrossEncoder its head would be newly initialised), named in the message.
    """
    from sentence_transformers import CrossEncoder

    if kind not in KINDS:
        raise UserError(f"Unknown teacher kind {kind!r}; use one of {KINDS}.")
    if isinstance(model, CrossEncoder):
        return CrossEncoderTeacher(model, **kwargs)
    path = resolve_model_path(model, "teacher")
    info = inspect_model(path)
    check_pair_scorer(info, "teacher")
    if kind == "llm" or (kind == "auto" and info.kind in LLM_KINDS):
        return LLMTeacher(path, **kwargs)
    return CrossEncoderTeacher(path, **kwargs)
