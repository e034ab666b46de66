"""The one vocabulary of d2llm: tasks, roles and their prompt names, dataset kinds, eval set types, their checks.

Every module that speaks of a task, a role, a kind of data or a kind of evaluation takes its words (and the
check that refuses a wrong one) from here, so there is one spelling of each and one error message.

- **Tasks** (:data:`TASKS`): ``"symmetric"`` (NLI / STS: the order of the two texts does not matter) and
  ``"asymmetric"`` (query -> passage retrieval). A task picks the IEM branch and the teacher's template.
- **Roles** (:data:`ROLES`): what one text is when it is embedded alone: ``"query"``, ``"passage"`` or
  ``"symmetric"``. A task gives the roles of its two sides (:func:`task_roles`); a role gives the
  sentence-transformers prompt name its prompt is stored under (:data:`PROMPT_NAMES`: a passage's prompt is
  sentence-transformers' ``"document"`` prompt, so ``encode_document`` applies it).
- **Dataset kinds** (:data:`DATASET_KINDS`): the training / labelled data d2llm reads, and the task of each:
  ``nli`` and ``sts`` files are symmetric, ``beir`` folders asymmetric.
- **Eval set types** (:data:`EVAL_TYPES`): ``sts``, ``nli``, ``ir``, ``answer-selection`` (used by
  ``d2llm eval --task``, the ``evaluation.sets[].type`` of a distillation config and the benchmarks).

Light: no torch, no transformers (the CLI reads these before loading anything).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from d2llm_st.errors import UserError

Task = Literal["symmetric", "asymmetric"]
TASKS: tuple[str, ...] = ("symmetric", "asymmetric")

Role = Literal["query", "passage", "symmetric"]
ROLES: tuple[str, ...] = ("query", "passage", "symmetric")

PROMPT_NAMES: dict[str, str] = {"query": "query", "passage": "document", "symmetric": "symmetric"}
"""Role -> the name its prompt is stored under in a sentence-transformers model's ``prompts``."""

TASK_ROLES: dict[str, tuple[str, str]] = {"asymmetric": ("query", "passage"), "symmetric": ("symmetric", "symmetric")}
"""Task -> the roles of the first and the second text of a pair."""

DATASET_KINDS: dict[str, str] = {"nli": "symmetric", "sts": "symmetric", "beir": "asymmetric"}
"""Dataset kind -> its task: ``nli`` / ``sts`` files (symmetric pairs), ``beir`` folders (query -> passage)."""

EVAL_TYPES: dict[str, str] = {
    "sts": "symmetric",
    "nli": "symmetric",
    "ir": "asymmetric",
    "answer-selection": "asymmetric",
}
"""Eval set type -> its task: STS correlation, NLI entailment vs contradiction, retrieval over a corpus, and
ranking each question's own candidates (WikiQA-style)."""

ANCHOR_COLUMN = "anchor"
"""The training column that holds the query (asymmetric) or first text; every other text column is a candidate."""


def _choice(value: Any, choices: Mapping[str, Any] | tuple[str, ...], what: str, hint: str = "") -> str:
    if value in choices:
        return value
    spelled = str(value).replace("_", "-") if isinstance(value, str) else None
    if spelled in choices:
        raise UserError(f"Unknown {what} {value!r}: it is spelled {spelled!r}.")
    raise UserError(f"Unknown {what} {value!r}: use one of {', '.join(map(repr, choices))}{hint}.")


def check_task(task: Any) -> str:
    """``task`` if it is ``"symmetric"`` or ``"asymmetric"``; else a :class:`~d2llm_st.errors.UserError`
    (a ``ValueError``) naming both."""
    if task not in TASKS:
        raise UserError(f"Unknown task {task!r}: use 'symmetric' (NLI/STS) or 'asymmetric' (query->passage IR).")
    return task


def check_role(role: Any) -> str:
    """``role`` if it is ``"query"``, ``"passage"`` or ``"symmetric"``; else a ``UserError`` naming them."""
    return _choice(role, ROLES, "role")


def task_roles(task: Any) -> tuple[str, str]:
    """The roles of a pair's two texts: ``("query", "passage")`` (asymmetric) or ``("symmetric", "symmetric")``."""
    return TASK_ROLES[check_task(task)]


def column_role(column: str, task: Any) -> str:
    """The role of a training column: the ``anchor`` is the query, the other texts passages (asymmetric); every
    column is ``symmetric`` in a symmetric task."""
    query_role, passage_role = task_roles(task)
    return query_role if column == ANCHOR_COLUMN else passage_role


def prompt_name(role: Any) -> str:
    """The sentence-transformers prompt name of ``role`` (``passage`` -> ``document``)."""
    return PROMPT_NAMES[check_role(role)]


def role_prompts(
    query_prompt: str | None = None, passage_prompt: str | None = None, symmetric_prompt: str | None = None
) -> dict[str, str]:
    """A sentence-transformers ``prompts`` dict (prompt name -> text) from the prompt of each role; ``None`` is
    left out."""
    prompts = {"query": query_prompt, "passage": passage_prompt, "symmetric": symmetric_prompt}
    for role, prompt in prompts.items():
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"{role}_prompt must be a string or None, got {type(prompt).__name__}.")
    return {PROMPT_NAMES[role]: prompt for role, prompt in prompts.items() if prompt is not None}


def check_dataset_kind(kind: Any) -> str:
    """``kind`` if it is one of :data:`DATASET_KINDS`; else a ``UserError`` naming them."""
    return _choice(kind, DATASET_KINDS, "dataset kind", " (nli / sts: a data file, beir: a BEIR folder)")


def dataset_task(kind: Any) -> str:
    """The task of a dataset kind: ``nli`` / ``sts`` -> ``symmetric``, ``beir`` -> ``asymmetric``."""
    return DATASET_KINDS[check_dataset_kind(kind)]


def check_eval_type(eval_type: Any) -> str:
    """``eval_type`` if it is one of :data:`EVAL_TYPES`; else a ``UserError`` naming them (and the spelling,
    for ``answer_selection``)."""
    return _choice(eval_type, EVAL_TYPES, "evaluation type")


def ensure_pad_token(tokenizer: Any, name: str = "the model") -> None:
    """Give a tokenizer without a pad token its EOS (else UNK) token as the pad token, in place.

    Decoder LLMs ship without one, and sentence-transformers never sets it; padded positions are masked out, so
    which token pads does not matter. Raises a ``ValueError`` when the tokenizer has none of the three.
    """
    if tokenizer is None or tokenizer.pad_token is not None:
        return
    tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise ValueError(f"The tokenizer of {name} has no pad, eos or unk token to pad with.")
