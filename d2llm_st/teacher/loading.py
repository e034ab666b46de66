"""Pick the right teacher class for a folder, hub id or model object."""

from __future__ import annotations

import os
from typing import Any

from d2llm_st.teacher.base import Teacher
from d2llm_st.teacher.cross_encoder_teacher import CrossEncoderTeacher
from d2llm_st.teacher.llm_teacher import TEACHER_CONFIG_NAME, LLMTeacher

KINDS = ("auto", "llm", "cross-encoder")


def load_teacher(model: Any, kind: str = "auto", **kwargs: Any) -> Teacher:
    """A teacher from a ``CrossEncoder`` object or a path / hub id.

    ``kind="auto"``: a folder saved by :func:`~d2llm_st.teacher.finetune_teacher`, a peft adapter or a causal
    LM becomes an :class:`LLMTeacher`; a sentence-transformers ``CrossEncoder`` folder (``modules.json``) or
    any other model a :class:`CrossEncoderTeacher`. ``kwargs`` go to the chosen class.
    """
    from sentence_transformers import CrossEncoder

    if kind not in KINDS:
        raise ValueError(f"Unknown teacher kind {kind!r}; use one of {KINDS}.")
    if isinstance(model, CrossEncoder):
        return CrossEncoderTeacher(model, **kwargs)
    if kind == "llm":
        return LLMTeacher(model, **kwargs)
    if kind == "cross-encoder":
        return CrossEncoderTeacher(model, **kwargs)
    if os.path.isfile(os.path.join(model, TEACHER_CONFIG_NAME)) or os.path.isfile(
        os.path.join(model, "adapter_config.json")
    ):
        return LLMTeacher(model, **kwargs)
    if os.path.isfile(os.path.join(model, "modules.json")):
        return CrossEncoderTeacher(model, **kwargs)
    from transformers import AutoConfig

    architectures = getattr(AutoConfig.from_pretrained(model), "architectures", None) or []
    if any(name.endswith("ForCausalLM") for name in architectures):
        return LLMTeacher(model, **kwargs)
    return CrossEncoderTeacher(model, **kwargs)
