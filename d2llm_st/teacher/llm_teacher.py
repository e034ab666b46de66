"""A causal LM used as a cross-encoder: D2LLM's teacher.

The pair is written into a yes/no question (:mod:`d2llm_st.teacher.templates`) and the score is read at
the last prompt position as ``P(yes) = softmax([logit_yes, logit_no])[0]``. Prompts are left-padded and
given position ids from the attention mask, so a pair's score does not depend on what it is batched with.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from d2llm_st.fingerprint import weights_fingerprint
from d2llm_st.model_folders import TEACHER_CONFIG_NAME
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.modules.backbone import check_decoder_llm
from d2llm_st.runtime import cpu_dtype
from d2llm_st.tasks import check_task, ensure_pad_token
from d2llm_st.teacher.base import BatchResult, PairAttention, Teacher, length_sorted_batches
from d2llm_st.teacher.cache import ScoreCache
from d2llm_st.teacher.templates import DEFAULT_TEMPLATES, PromptRenderer, PromptTemplate, resolve_answer_token_ids

logger = logging.getLogger(__name__)


@dataclass
class EncodedPair:
    """A rendered, tokenized pair: prompt ids and which of them (and which characters) belong to each text."""

    input_ids: list[int]
    yes_id: int
    no_id: int
    positions_a: list[int]
    positions_b: list[int]
    offsets_a: list[tuple[int, int]]
    offsets_b: list[tuple[int, int]]
    truncated: bool


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """``"auto"``: bfloat16 on a GPU that supports it, the CPU policy's dtype on the CPU
    (:func:`d2llm_st.runtime.cpu_dtype`: bfloat16 where the CPU has bf16 instructions), float32 otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if torch.device(device).type == "cpu":
            return cpu_dtype()
        return torch.float32
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'.")
    return getattr(torch, dtype)


def _spans(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> tuple[list[int], list[tuple[int, int]]]:
    """Token positions overlapping the character span, and their offsets clipped to it (relative to its start)."""
    start, end = span
    positions, relative = [], []
    for i, (s, e) in enumerate(offsets):
        if e > s and s < end and e > start:
            positions.append(i)
            relative.append((max(s, start) - start, min(e, end) - start))
    return positions, relative


def _keep_tokens(text: str, offsets: Sequence[tuple[int, int]], n: int) -> str:
    """The first ``n`` tokens of ``text`` (at least one), cut at a token boundary. A character spelled with several
    byte-level tokens (e.g. "∼") gives them one shared span: it goes whole once any of its tokens is dropped, so a
    cut always shortens the text."""
    if n >= len(offsets):
        return text
    n = max(n, 1)
    return text[: min(offsets[n - 1][1], offsets[n][0])]


class LLMTeacher(Teacher):
    """Score text pairs with any Hugging Face causal LM (optionally LoRA-adapted) asked a yes/no question.

    Args:
        model_name_or_path: Hub id or folder of a causal LM, a folder saved by
            :func:`~d2llm_st.teacher.finetune.finetune_teacher` (its templates and settings are reused), or a
            peft LoRA adapter folder (its base model is loaded and the adapter merged).
        adapter_path: A peft LoRA adapter to merge into the model.
        templates: Per task (``"symmetric"``, ``"asymmetric"``) a :class:`PromptTemplate` (or its dict) replacing
            the default English ones.
        use_chat_template: Render through the tokenizer's chat template; ``None`` = when it has one.
        answer_words: The yes and the no word; each must be one token of the vocabulary (the variant with or
            without a leading space is picked to match the prompt end).
        max_length: Longest prompt in tokens; longer pairs have their texts cut (passage first), with a warning.
        device: ``"cuda"`` when available, else ``"cpu"`` by default.
        dtype: ``"auto"`` (bfloat16 on a supporting GPU or a CPU with bf16 instructions, float32 otherwise) or a
            torch dtype / its name.
        cache: A :class:`ScoreCache` or the path of its SQLite file, to resume and never re-score a pair.
        identity: Overrides the cache identity (default: model name, a fingerprint of the weights, dtype).
        model_kwargs: Passed to ``AutoModelForCausalLM.from_pretrained``.
        tokenizer_kwargs: Passed to ``AutoTokenizer.from_pretrained``.
    """

    def __init__(
        self,
        model_name_or_path: str,
        adapter_path: str | None = None,
        templates: Mapping[str, PromptTemplate | Mapping[str, str]] | None = None,
        use_chat_template: bool | None = None,
        answer_words: tuple[str, str] | None = None,
        max_length: int | None = None,
        device: str | None = None,
        dtype: str | torch.dtype = "auto",
        cache: ScoreCache | str | None = None,
        identity: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        model_name_or_path = resolve_model_path(model_name_or_path, "model_name_or_path")
        saved = self._read_saved_config(model_name_or_path)
        base_path = model_name_or_path
        adapter_config = os.path.join(model_name_or_path, "adapter_config.json")
        if adapter_path is None and os.path.isfile(adapter_config):
            if not os.path.isfile(os.path.join(model_name_or_path, "config.json")):
                with open(adapter_config) as f:
                    base_path = json.load(f)["base_model_name_or_path"]
                adapter_path = model_name_or_path
        config = AutoConfig.from_pretrained(base_path)
        check_decoder_llm(config, base_path)

        self.name_or_path = model_name_or_path
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = resolve_dtype(dtype, self.device)
        tokenizer_source = model_name_or_path if saved or adapter_path is None else base_path
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **(tokenizer_kwargs or {}))
        ensure_pad_token(self.tokenizer, repr(model_name_or_path))

        model = AutoModelForCausalLM.from_pretrained(base_path, config=config, dtype=self.dtype, **(model_kwargs or {}))
        if adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
        model.config.use_cache = False
        self.model = model.to(self.device).eval()

        self.max_length = max_length or saved.get("max_length", 512)
        self.answer_words = tuple(answer_words or saved.get("answer_words", ("yes", "no")))
        if use_chat_template is None:
            use_chat_template = saved.get("use_chat_template")
        self.renderer = PromptRenderer(self.tokenizer, use_chat_template)
        self.templates = dict(DEFAULT_TEMPLATES)
        for task, template in {**saved.get("templates", {}), **(templates or {})}.items():
            check_task(task)
            self.templates[task] = template if isinstance(template, PromptTemplate) else PromptTemplate(**template)
        self._answer_ids = {
            template: resolve_answer_token_ids(
                self.tokenizer, self.answer_words, self.renderer.answer_follows_whitespace(template)
            )
            for template in set(self.templates.values())
        }
        self.identity = identity or (
            f"LLMTeacher:{os.path.basename(os.path.normpath(model_name_or_path))}:"
            f"{weights_fingerprint(self.model)}:{str(self.dtype).removeprefix('torch.')}"
        )
        self.set_cache(cache)

    @staticmethod
    def _read_saved_config(path: str) -> dict[str, Any]:
        config_path = os.path.join(path, TEACHER_CONFIG_NAME)
        if not os.path.isfile(config_path):
            return {}
        with open(config_path) as f:
            return json.load(f)

    def settings(self) -> dict[str, Any]:
        """What a saved teacher folder records so that loading it scores the same way."""
        return {
            "templates": {task: template.to_dict() for task, template in self.templates.items()},
            "use_chat_template": self.renderer.use_chat_template,
            "answer_words": list(self.answer_words),
            "max_length": self.max_length,
        }

    def template_key(self, task: str) -> str:
        template = self.templates[check_task(task)]
        yes_id, no_id = self._answer_ids[template]
        mode = "chat" if self.renderer.use_chat_template else "plain"
        return f"{template.fingerprint}:{mode}:{yes_id},{no_id}:{self.max_length}"

    def encode(self, a: str, b: str, task: str) -> EncodedPair:
        """Render and tokenize one pair, cutting its texts (passage first) if the prompt exceeds ``max_length``."""
        template = self.templates[task]
        truncated = False
        while True:
            rendered = self.renderer.render(template, a, b)
            encoding = self.tokenizer(
                rendered.text,
                add_special_tokens=not self.renderer.use_chat_template,
                return_offsets_mapping=True,
            )
            excess = len(encoding["input_ids"]) - self.max_length
            if excess <= 0:
                break
            truncated = True
            a, b = self._cut(a, b, excess)
        positions_a, offsets_a = _spans(encoding["offset_mapping"], rendered.span_a)
        positions_b, offsets_b = _spans(encoding["offset_mapping"], rendered.span_b)
        yes_id, no_id = self._answer_ids[template]
        return EncodedPair(
            list(encoding["input_ids"]), yes_id, no_id, positions_a, positions_b, offsets_a, offsets_b, truncated
        )

    def _cut(self, a: str, b: str, excess: int) -> tuple[str, str]:
        """Drop ``excess`` tokens from the texts: from the passage while it is the longer one, then from both."""
        offsets = [
            self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            for text in (a, b)
        ]
        len_a, len_b = len(offsets[0]), len(offsets[1])
        keep = len_a + len_b - excess
        if keep < 2:
            raise ValueError(
                f"max_length={self.max_length} leaves no room for the texts after the prompt template; raise it."
            )
        keep_b = min(len_b, max(keep - len_a, (keep + 1) // 2))
        keep_a = min(len_a, keep - keep_b)
        return _keep_tokens(a, offsets[0], keep_a), _keep_tokens(b, offsets[1], keep_b)

    def encode_batch(self, pairs: Sequence[tuple[str, str]], tasks: Sequence[str]) -> list[EncodedPair]:
        encoded = [self.encode(a, b, task) for (a, b), task in zip(pairs, tasks)]
        truncated = sum(item.truncated for item in encoded)
        if truncated:
            logger.warning(
                f"{truncated} of {len(encoded)} prompts were longer than max_length={self.max_length} tokens; "
                "their texts were cut (passage first). Raise max_length to keep them whole."
            )
        return encoded

    def collate(self, encoded: Sequence[EncodedPair]) -> dict[str, torch.Tensor]:
        """Left-pad a batch; position ids count real tokens only, so padding never shifts a pair's positions."""
        length = max(len(item.input_ids) for item in encoded)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad_id] * (length - len(e.input_ids)) + e.input_ids for e in encoded])
        attention_mask = torch.tensor([[0] * (length - len(e.input_ids)) + [1] * len(e.input_ids) for e in encoded])
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention_mask.to(self.device),
            "position_ids": position_ids.to(self.device),
        }

    def answer_logits(
        self,
        model: torch.nn.Module,
        encoded: Sequence[EncodedPair],
        return_features: bool = False,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, dict[str, torch.Tensor]]:
        """``logit_yes - logit_no`` per pair (``sigmoid`` of it is ``P(yes)``), differentiable for fine-tuning.

        Also returns the final hidden state at the last position (``[B, H]``), the head-averaged last-layer
        attention (``[B, L, L]``) when asked, and the padded batch.
        """
        batch = self.collate(encoded)
        captured: dict[str, torch.Tensor] = {}
        hook = None
        if return_features:
            # The LM head sees the final (normed) hidden state; with logits_to_keep=1, only the last position.
            hook = model.get_output_embeddings().register_forward_hook(
                lambda module, inputs, output: captured.__setitem__("features", inputs[0][:, -1])
            )
        try:
            output = model(**batch, logits_to_keep=1, output_attentions=return_attention, use_cache=False)
        finally:
            if hook is not None:
                hook.remove()
        logits = output.logits[:, -1].float()
        rows = torch.arange(len(encoded), device=logits.device)
        yes = torch.tensor([item.yes_id for item in encoded], device=logits.device)
        no = torch.tensor([item.no_id for item in encoded], device=logits.device)
        margin = logits[rows, yes] - logits[rows, no]
        attention = output.attentions[-1].float().mean(dim=1) if return_attention else None
        return margin, captured.get("features"), attention, batch

    def _pair_attention(self, encoded: EncodedPair, attention: torch.Tensor, padding: int) -> PairAttention:
        positions_a = [padding + p for p in encoded.positions_a]
        positions_b = [padding + p for p in encoded.positions_b]
        if positions_a and positions_b and positions_a[0] < positions_b[0]:
            weights = attention[positions_b][:, positions_a].T
        else:
            weights = attention[positions_a][:, positions_b]
        ids_a = [encoded.input_ids[p] for p in encoded.positions_a]
        ids_b = [encoded.input_ids[p] for p in encoded.positions_b]
        return PairAttention(
            weights=weights.cpu().numpy(),
            tokens_a=self.tokenizer.convert_ids_to_tokens(ids_a),
            tokens_b=self.tokenizer.convert_ids_to_tokens(ids_b),
            token_ids_a=ids_a,
            token_ids_b=ids_b,
            offsets_a=encoded.offsets_a,
            offsets_b=encoded.offsets_b,
        )

    def _score_batches(
        self,
        pairs: list[tuple[str, str]],
        task: str,
        batch_size: int,
        return_features: bool,
        return_attention: bool,
    ) -> Iterator[BatchResult]:
        encoded = self.encode_batch(pairs, [task] * len(pairs))
        attn_implementation = self.model.config._attn_implementation
        if return_attention and attn_implementation != "eager":
            self.model.set_attn_implementation("eager")  # fused kernels do not return attention weights
        try:
            for indices in length_sorted_batches([len(item.input_ids) for item in encoded], batch_size):
                batch = [encoded[i] for i in indices]
                with torch.inference_mode():
                    margin, features, attention, padded = self.answer_logits(
                        self.model, batch, return_features, return_attention
                    )
                attentions = None
                if attention is not None:
                    length = padded["input_ids"].shape[1]
                    attentions = [
                        self._pair_attention(item, attention[row], length - len(item.input_ids))
                        for row, item in enumerate(batch)
                    ]
                yield (
                    indices,
                    torch.sigmoid(margin).cpu().numpy(),
                    None if features is None else features.float().cpu().numpy(),
                    attentions,
                )
        finally:
            if self.model.config._attn_implementation != attn_implementation:
                self.model.set_attn_implementation(attn_implementation)

    def __repr__(self) -> str:
        return f"LLMTeacher({self.name_or_path!r}, device={self.device!r}, dtype={self.dtype}, cache={self.cache!r})"
