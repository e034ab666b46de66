"""What kind of model a local folder holds, read from its JSON files alone (nothing is loaded, no torch).

One place for the question every loader asks before it builds anything: :class:`~d2llm_st.D2LLM` refuses a
folder that is not a D2LLM, teacher loading refuses a bi-encoder or a model without a scoring head, and
``d2llm eval`` picks how to score with a model; each error names what the folder is. A hub id is classified by
its ``config.json`` alone (:func:`inspect_model`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from d2llm_st.errors import UserError

TEACHER_CONFIG_NAME = "d2llm_teacher.json"
"""Written next to a teacher saved by ``d2llm teacher-train`` (templates, answer words)."""

D2LLM_MODULES = {
    "LLMBackbone": "d2llm_st.modules.backbone.LLMBackbone",
    "PMAPooling": "d2llm_st.modules.pma.PMAPooling",
    "IEM": "d2llm_st.modules.iem.IEM",
}
"""The ``modules.json`` types of a saved D2LLM, in pipeline order."""

KINDS = {
    "d2llm": "a D2LLM student",
    "bi-encoder": "a sentence-transformers bi-encoder",
    "cross-encoder": "a sentence-transformers CrossEncoder",
    "teacher": "a d2llm teacher (saved by d2llm teacher-train)",
    "adapter": "a peft LoRA adapter",
    "causal-lm": "a causal LM",
    "sequence-classification": "a sequence-classification model",
    "no-head": "a transformers model without a scoring or LM head",
    "no-architecture": "a transformers model whose config.json names no architecture",
    "unknown": "not a model folder (no modules.json, config.json or adapter_config.json)",
}


@dataclass(frozen=True)
class FolderInfo:
    """A local model folder: its ``kind`` (a key of :data:`KINDS`), what it is in words, and its modules."""

    path: str
    kind: str
    architectures: list[str] = field(default_factory=list)
    module_types: list[str] = field(default_factory=list)
    modules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def description(self) -> str:
        """E.g. ``a sentence-transformers bi-encoder (Transformer -> Pooling -> Normalize)``."""
        if self.module_types:
            return f"{KINDS[self.kind]} ({' -> '.join(name.rsplit('.', 1)[-1] for name in self.module_types)})"
        if self.architectures:
            return f"{KINDS[self.kind]} ({', '.join(self.architectures)})"
        return KINDS[self.kind]


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def inspect_folder(path: str) -> FolderInfo:
    """Classify the local folder ``path`` (see :data:`KINDS`)."""

    def has(name: str) -> bool:
        return os.path.isfile(os.path.join(path, name))

    architectures = (
        (_read_json(os.path.join(path, "config.json")).get("architectures") or []) if has("config.json") else []
    )
    if has(TEACHER_CONFIG_NAME):
        return FolderInfo(path, "teacher", architectures)
    if has("modules.json"):
        modules = _read_json(os.path.join(path, "modules.json"))
        types = [module.get("type", "?") for module in modules]
        if set(types) & {D2LLM_MODULES["PMAPooling"], D2LLM_MODULES["IEM"]}:
            kind = "d2llm"
        elif has("config_sentence_transformers.json") and (
            _read_json(os.path.join(path, "config_sentence_transformers.json")).get("model_type") == "CrossEncoder"
        ):
            kind = "cross-encoder"
        else:  # Transformer -> Pooling (e.g. all-MiniLM-L6-v2), or d2llm's mean-pooling baseline
            kind = "bi-encoder"
        return FolderInfo(path, kind, architectures, types, modules)
    if has("adapter_config.json") and not has("config.json"):
        return FolderInfo(path, "adapter")
    if has("config.json"):
        return FolderInfo(path, kind_of_architectures(architectures), architectures)
    return FolderInfo(path, "unknown")


def kind_of_architectures(architectures: list[str]) -> str:
    """``causal-lm``, ``sequence-classification``, ``no-head`` or ``no-architecture`` from a config's list."""
    if not architectures:
        return "no-architecture"
    if any(name.endswith("ForCausalLM") for name in architectures):
        return "causal-lm"
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return "sequence-classification"
    return "no-head"


def inspect_model(name: str) -> FolderInfo:
    """:func:`inspect_folder` for a local folder; for a hub id, the kind its ``config.json`` architectures give."""
    if os.path.isdir(name):
        return inspect_folder(name)
    from transformers import AutoConfig

    architectures = list(getattr(AutoConfig.from_pretrained(name), "architectures", None) or [])
    return FolderInfo(name, kind_of_architectures(architectures), architectures)


PAIR_SCORER_KINDS = ("cross-encoder", "sequence-classification", "causal-lm", "teacher", "adapter")
"""Kinds that score a text pair jointly with trained weights: a CrossEncoder (or the classification model under
it), or a causal LM asked yes / no (plain, fine-tuned by d2llm, or as a LoRA adapter)."""


def check_pair_scorer(info: FolderInfo, what: str) -> None:
    """Raise a :class:`UserError` naming what ``info`` is unless it is one of :data:`PAIR_SCORER_KINDS`.

    Anything else would load as a CrossEncoder whose scoring head is newly initialised: random scores that
    look like real ones (around 0.5), which is worse than an error.
    """
    if info.kind in PAIR_SCORER_KINDS:
        return
    why = {
        "bi-encoder": "it embeds each text on its own, so a CrossEncoder built from it would score with a newly "
        "initialised (random) head; use a trained CrossEncoder or a causal LM",
        "d2llm": "it scores two embeddings with its IEM (evaluate it with --model-type d2llm); a teacher scores "
        "each pair jointly: use a causal LM or a CrossEncoder",
        "no-head": "it has no trained classifier, so a CrossEncoder built from it would score with a newly "
        "initialised (random) head; use a trained CrossEncoder or a causal LM",
    }.get(info.kind, "it is not a model that scores text pairs; use a trained CrossEncoder or a causal LM")
    raise UserError(f"{what}={info.path!r} is {info.description}, not a pair scorer: {why}.")
