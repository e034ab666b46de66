"""A sentence-transformers ``CrossEncoder`` behind the teacher interface.

Any reranker a user already trusts can teach a D2LLM student: a causal-LM ``CrossEncoder`` (its
``LogitScore`` head gives ``logit_yes - logit_no``, so ``sigmoid`` of it is ``P(yes)``) or a BERT-style one
(one logit; or several labels, from which ``positive_label`` is taken after a softmax).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sentence_transformers import CrossEncoder
from sentence_transformers.util import batch_to_device

from d2llm_st.errors import UserError
from d2llm_st.fingerprint import weights_fingerprint
from d2llm_st.model_folders import check_pair_scorer, inspect_model
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.tasks import ensure_pad_token
from d2llm_st.teacher.base import BatchResult, Teacher, length_sorted_batches
from d2llm_st.teacher.cache import ScoreCache


class CrossEncoderTeacher(Teacher):
    """Score pairs with a ``CrossEncoder``; same interface as :class:`~d2llm_st.teacher.LLMTeacher`.

    The cross-encoder decides how a pair is written (its chat template, its pair encoding), so ``task`` only
    separates the cache entries of the two tasks. ``features`` are the input of its scoring head at the
    pair's last real token (causal LMs: the final hidden state there) or the pooled vector a
    classification head reads (BERT-style: the ``[CLS]`` pooler output). Attention maps are not available.

    Args:
        model: A ``CrossEncoder`` or its path / hub id.
        positive_label: For a multi-label cross-encoder (e.g. NLI), the label index whose softmax probability
            is the score; must be ``None`` for single-logit models.
        cache: A :class:`ScoreCache` or the path of its SQLite file.
        identity: Overrides the cache identity (default: model name and a fingerprint of its weights).
        **kwargs: Passed to ``CrossEncoder(...)`` when ``model`` is a path.
    """

    def __init__(
        self,
        model: CrossEncoder | str,
        positive_label: int | None = None,
        cache: ScoreCache | str | None = None,
        identity: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, CrossEncoder):
            model = resolve_model_path(model, "teacher")
            check_pair_scorer(inspect_model(model), "teacher")  # else its scoring head would be random
            model = CrossEncoder(model, **kwargs)
        self.model = model
        self.tokenizer = self.model.tokenizer
        ensure_pad_token(self.tokenizer, "the teacher")
        num_labels = self.model.num_labels
        if num_labels > 1 and positive_label is None:
            raise UserError(
                f"This CrossEncoder has {num_labels} labels; pass positive_label=<index of the label that means "
                "yes / relevant / entailment> (see model.config.id2label)."
            )
        if num_labels == 1 and positive_label is not None:
            raise UserError("positive_label is only for multi-label CrossEncoders; this one has a single logit.")
        self.positive_label = positive_label
        name = self.model.model.config.name_or_path or type(self.model.model).__name__
        self.identity = identity or (
            f"CrossEncoderTeacher:{os.path.basename(os.path.normpath(name))}:{weights_fingerprint(self.model)}"
        )
        self.set_cache(cache)

    def template_key(self, task: str) -> str:
        return f"cross-encoder:{task}:{self.positive_label}"

    def _head(self) -> torch.nn.Module:
        hf_model = self.model.model
        head = hf_model.get_output_embeddings() if hasattr(hf_model, "get_output_embeddings") else None
        for name in ("classifier", "score"):
            if head is None and isinstance(getattr(hf_model, name, None), torch.nn.Module):
                head = getattr(hf_model, name)
        if head is None:
            raise NotImplementedError(
                f"Cannot find the scoring head of {type(hf_model).__name__} to read features from; "
                "use return_features=False."
            )
        return head

    def _score_batches(
        self,
        pairs: list[tuple[str, str]],
        task: str,
        batch_size: int,
        return_features: bool,
        return_attention: bool,
    ) -> Iterator[BatchResult]:
        if return_attention:
            raise NotImplementedError(
                "CrossEncoderTeacher does not return attention maps; use LLMTeacher for word-level distillation."
            )
        self.model.eval()
        lengths = [len(a) + len(b) for a, b in pairs]
        captured: dict[str, torch.Tensor] = {}
        for indices in length_sorted_batches(lengths, batch_size):
            hook = None
            if return_features:
                hook = self._head().register_forward_hook(
                    lambda module, inputs, output: captured.__setitem__("head_input", inputs[0])
                )
            try:
                with torch.inference_mode():
                    features = self.model.preprocess([list(pairs[i]) for i in indices])
                    features = batch_to_device(features, self.model.device)
                    logits = self.model(features)["scores"].float()
            finally:
                if hook is not None:
                    hook.remove()
            if self.positive_label is None:
                scores = torch.sigmoid(logits.reshape(-1))
            else:
                scores = torch.softmax(logits, dim=-1)[:, self.positive_label]
            head_features = None
            if return_features:
                head_input = captured["head_input"]
                if head_input.ndim == 3 and head_input.shape[1] == 1:  # causal LM with logits_to_keep=1
                    head_input = head_input[:, 0]
                elif head_input.ndim == 3:  # [B, L, H]: take each pair's last real token
                    mask = features["attention_mask"]
                    positions = torch.arange(mask.shape[1], device=mask.device)
                    last = (mask * positions).argmax(dim=1)
                    head_input = head_input[torch.arange(len(indices), device=mask.device), last]
                head_features = head_input.float().cpu().numpy()
            yield indices, scores.cpu().numpy().astype(np.float32), head_features, None
