"""Prompt templates that turn a text pair into a yes/no question for a causal LM teacher.

The teacher's relevance score is ``P(yes)`` read at the last prompt position, so the prompt must end
exactly where the answer starts. With a chat template that is the assistant turn; without one it is an
``Answer:`` line. :func:`render_pair` also returns where each text sits in the prompt (character spans),
which is how the teacher maps its attention back to the tokens of each side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import string
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)

_SENTINEL = "\u0000D2LLM_PAIR\u0000"


@dataclass(frozen=True)
class PromptTemplate:
    """A yes/no question about a pair of texts.

    Args:
        instruction: The question, e.g. "Can the passage answer the query? Answer yes or no.". Sent as the system
            message when the tokenizer has a chat template (as the first line of the user message if the chat
            template rejects a system role), else as the first line of the prompt.
        pair_format: How the two texts are shown; must contain ``{a}`` and ``{b}`` exactly once each
            (``{{`` / ``}}`` for literal braces).
        answer_prefix: Last line of the prompt when no chat template is used (the answer token follows it).
    """

    instruction: str
    pair_format: str
    answer_prefix: str = "Answer:"

    def __post_init__(self) -> None:
        fields = [field for _, field, _, _ in string.Formatter().parse(self.pair_format) if field is not None]
        if sorted(fields) != ["a", "b"]:
            raise ValueError(
                f"pair_format must contain {{a}} and {{b}} exactly once each (got fields {fields} in "
                f"{self.pair_format!r}); write literal braces as {{{{ and }}}}."
            )

    def fill(self, a: str, b: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
        """The pair text and the character spans of ``a`` and ``b`` inside it."""
        out, spans = "", {}
        for literal, field, _, _ in string.Formatter().parse(self.pair_format):
            out += literal
            if field is not None:
                value = a if field == "a" else b
                spans[field] = (len(out), len(out) + len(value))
                out += value
        return out, spans["a"], spans["b"]

    @property
    def fingerprint(self) -> str:
        """A short hash of the template text: part of the score-cache key, so editing a template re-scores."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


SYMMETRIC_TEMPLATE = PromptTemplate(
    instruction="Do the two texts describe the same event or have the same meaning? Answer yes or no.",
    pair_format="Text 1: {a}\nText 2: {b}",
)
ASYMMETRIC_TEMPLATE = PromptTemplate(
    instruction="Can the passage answer the query? Answer yes or no.",
    pair_format="Query: {a}\nPassage: {b}",
)
DEFAULT_TEMPLATES: dict[str, PromptTemplate] = {"symmetric": SYMMETRIC_TEMPLATE, "asymmetric": ASYMMETRIC_TEMPLATE}


@dataclass(frozen=True)
class RenderedPair:
    """A prompt and the character spans of the two texts inside it."""

    text: str
    span_a: tuple[int, int]
    span_b: tuple[int, int]


class PromptRenderer:
    """Render pairs with a template, through the tokenizer's chat template when it has one.

    The chat template is rendered once per template with a placeholder and split into a prefix and a
    suffix, so every pair costs a string concatenation and the spans of both texts are exact.
    """

    def __init__(self, tokenizer, use_chat_template: bool | None = None) -> None:
        has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        if use_chat_template and not has_chat_template:
            raise ValueError(
                f"use_chat_template=True but the tokenizer of {tokenizer.name_or_path!r} has no chat template; "
                "pass use_chat_template=False (plain prompt ending in the template's answer_prefix)."
            )
        self.tokenizer = tokenizer
        self.use_chat_template = has_chat_template if use_chat_template is None else use_chat_template
        self._frames: dict[PromptTemplate, tuple[str, str, str]] = {}

    def _frame(self, template: PromptTemplate) -> tuple[str, str, str]:
        """(prefix, content prefix, suffix): a prompt is ``prefix + content_prefix + pair + suffix``."""
        if template in self._frames:
            return self._frames[template]
        if not self.use_chat_template:
            head = f"{template.instruction}\n\n" if template.instruction else ""
            tail = f"\n{template.answer_prefix}" if template.answer_prefix else ""
            frame = ("", head, tail)
        else:
            frame = self._chat_frame(template)
        self._frames[template] = frame
        return frame

    def _chat_frame(self, template: PromptTemplate) -> tuple[str, str, str]:
        from jinja2 import TemplateError

        messages = [{"role": "user", "content": _SENTINEL}]
        content_prefix = ""
        if template.instruction:
            messages.insert(0, {"role": "system", "content": template.instruction})
        try:
            rendered = self._apply(messages)
        except TemplateError:
            # Some chat templates (e.g. Gemma) reject a system role: put the instruction in the user turn.
            content_prefix = f"{template.instruction}\n\n"
            rendered = self._apply(messages[-1:])
        if rendered.count(_SENTINEL) != 1:
            raise ValueError(
                f"The chat template of {self.tokenizer.name_or_path!r} does not render the user message verbatim; "
                "pass use_chat_template=False to prompt the model without it."
            )
        prefix, suffix = rendered.split(_SENTINEL)
        return prefix, content_prefix, suffix

    def _apply(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def render(self, template: PromptTemplate, a: str, b: str) -> RenderedPair:
        prefix, content_prefix, suffix = self._frame(template)
        pair, span_a, span_b = template.fill(a, b)
        start = len(prefix) + len(content_prefix)
        return RenderedPair(
            text=prefix + content_prefix + pair + suffix,
            span_a=(start + span_a[0], start + span_a[1]),
            span_b=(start + span_b[0], start + span_b[1]),
        )

    def answer_follows_whitespace(self, template: PromptTemplate) -> bool:
        """Whether the answer token starts right after whitespace (chat turns end in a newline)."""
        suffix = self._frame(template)[2]
        return not suffix or suffix[-1].isspace()


def resolve_answer_token_ids(tokenizer, words: tuple[str, str], after_whitespace: bool) -> tuple[int, int]:
    """Vocabulary ids of the yes and no answer tokens.

    BPE vocabularies hold both ``"yes"`` and ``" yes"``; the one the model emits depends on whether the
    prompt ends in whitespace, so that variant is tried first. Each word must be one token, distinct from
    the other and from the unknown token.
    """
    ids = []
    for word in words:
        variants = [word, f" {word}"] if after_whitespace else [f" {word}", word]
        token_id = None
        for variant in variants:
            encoded = tokenizer.encode(variant, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
                token_id = encoded[0]
                break
        if token_id is None:
            raise ValueError(
                f"The tokenizer of {tokenizer.name_or_path!r} cannot write the answer word {word!r} as a single "
                f"known token (tried {variants!r}); pass answer_words=(yes_word, no_word) with words that are single "
                "tokens in this vocabulary."
            )
        ids.append(token_id)
    if ids[0] == ids[1]:
        raise ValueError(f"The answer words {words!r} map to the same token id {ids[0]}; pick two distinct words.")
    return ids[0], ids[1]
