"""The student's backbone: a decoder-only LLM that turns texts into token states.

A D2LLM student encodes every text once with a causal LM (optionally LoRA-tuned, optionally
with bidirectional upper layers, see :mod:`d2llm_st.modules.bidirectional`). The token states
go to :class:`~d2llm_st.modules.pma.PMAPooling`.

Why not sentence-transformers' own ``Transformer``: a saved LoRA model there is only an adapter
whose ``base_model_name_or_path`` is the absolute path of the machine that trained it, and it has
no hook to patch the attention mask. ``LLMBackbone`` wraps the same ``AutoModel`` but saves the
base weights and the adapter side by side, so a saved folder is self-contained and portable.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from sentence_transformers.base.modules.input_module import InputModule
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from d2llm_st.errors import UserError
from d2llm_st.fingerprint import weights_fingerprint
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.runtime import backbone_dtype
from d2llm_st.tasks import ensure_pad_token

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"


def check_decoder_llm(config: PretrainedConfig, name: str) -> None:
    """Raise a :class:`~d2llm_st.errors.UserError` (a ``ValueError``) unless ``config`` is a decoder-only causal LM."""
    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(
            f"{name!r} is an encoder-decoder model ({model_type}); D2LLM needs a decoder-only causal LM "
            "such as Llama, Qwen2/Qwen3, Mistral, SmolLM or GPT-2."
        )
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(
            f"{name!r} has model_type {model_type!r}, which is not a decoder-only causal LM; D2LLM needs a "
            "GPT-style LLM (Llama, Qwen2/Qwen3, Mistral, SmolLM, GPT-2, ...). For BERT-style encoders use a "
            "plain sentence-transformers model."
        )


def check_texts(texts: Any, name: str = "texts") -> list[str]:
    """Validate a list of input texts, naming the argument and the first offending item.

    Raises:
        TypeError: ``texts`` is a single string, not a list (or other iterable) of strings, or an item is no string.
        ValueError: the list is empty, or an item is empty or only whitespace (it would embed to nothing).
    """
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of strings, got a single string; wrap it in a list: [{name}].")
    if texts is None or isinstance(texts, bytes) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}.")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{name} is empty: pass at least one text.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is a {type(text).__name__}, not a str: every item must be a text string.")
        if not text.strip():
            raise ValueError(f"{name}[{i}] is an empty text ({text!r}): every item must have some text to embed.")
    return texts


class LLMBackbone(InputModule):
    """Decoder-only LLM (+ optional LoRA) that outputs ``token_embeddings`` for D2LLM pooling.

    Args:
        model_name_or_path: A causal LM (Llama, Qwen2/Qwen3, Mistral, SmolLM, GPT-2...): hub id, local folder or
            ``bundled:smollm2`` (see :mod:`d2llm_st.model_paths`).
        max_seq_length: Texts longer than this many tokens are truncated, with a warning.
        padding_side: ``"right"`` (default) or ``"left"``. Position ids are computed from the attention mask,
            so both give the same states for real tokens.
        lora_r: LoRA rank; ``None`` means no LoRA.
        lora_alpha: LoRA scaling alpha (default ``2 * lora_r``).
        lora_dropout: Dropout on the LoRA branch.
        lora_target_modules: Module names to adapt (default: peft's ``"all-linear"``).
        bidirectional_from_layer: Layers with index >= this attend in both directions (DeeLM); ``None`` = causal.
        train_base_weights: Whether the base LLM's weights train (``requires_grad``); ``False`` (default) freezes
            them, so only the LoRA weights of the backbone train. Saved with the module's config.
        model_kwargs: Passed to ``AutoModel.from_pretrained``, e.g. ``attn_implementation``, or ``dtype`` to
            override :func:`d2llm_st.runtime.backbone_dtype` (bf16 weights on a CPU with bf16 instructions).
        tokenizer_kwargs: Passed to ``AutoTokenizer.from_pretrained``.
        adapter_path: A saved LoRA adapter to load (trainable) instead of adding a fresh one.
        tokenizer_path: Where the tokenizer is, if not beside the weights.

    Saving (:meth:`save`) writes only what the base LLM lacks (config, LoRA adapter) when the base can be found
    again by name (a hub id or ``bundled:`` model, recorded as ``base_model_name_or_path``); a base from a local
    folder, or one whose weights changed (LoRA merged, backbone trained), is saved whole, so the folder is
    self-contained.
    """

    config_file_name = "d2llm_backbone_config.json"
    config_keys = [
        "max_seq_length",
        "padding_side",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "bidirectional_from_layer",
        "train_base_weights",
    ]
    save_base_weights: bool | None = None
    """``None``: save the base weights when the base is a local folder or changed; ``False``: only when changed
    (trainer checkpoints: the base is read again from ``base_model_name_or_path``); ``True``: always."""

    def __init__(
        self,
        model_name_or_path: str,
        max_seq_length: int = 512,
        padding_side: str = "right",
        lora_r: int | None = None,
        lora_alpha: int | None = None,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | str | None = None,
        bidirectional_from_layer: int | None = None,
        train_base_weights: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        adapter_path: str | None = None,
        tokenizer_path: str | None = None,
    ) -> None:
        super().__init__()
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
        local_path = resolve_model_path(model_name_or_path, "model_name_or_path")
        config = AutoConfig.from_pretrained(local_path)
        check_decoder_llm(config, model_name_or_path)

        self.max_seq_length = max_seq_length
        self.padding_side = padding_side
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha if lora_alpha is not None or lora_r is None else 2 * lora_r
        self.lora_dropout = lora_dropout
        self.lora_target_modules = lora_target_modules
        self.bidirectional_from_layer = bidirectional_from_layer
        self.train_base_weights = bool(train_base_weights)
        self.name_or_path = model_name_or_path
        self.base_is_local = os.path.isdir(os.path.expanduser(model_name_or_path))
        self.base_model_name_or_path = os.path.abspath(local_path) if self.base_is_local else model_name_or_path
        """Where the base weights come from: a ``bundled:`` name, a hub id, or (local folder) its absolute path."""

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or local_path, **(tokenizer_kwargs or {}))
        self.tokenizer.padding_side = padding_side
        ensure_pad_token(self.tokenizer, repr(model_name_or_path))

        model_kwargs = dict(model_kwargs or {})
        if "dtype" not in model_kwargs and "torch_dtype" not in model_kwargs:
            dtype = backbone_dtype()
            if dtype is not None:
                model_kwargs["dtype"] = dtype
        model: PreTrainedModel = AutoModel.from_pretrained(local_path, config=config, **model_kwargs)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        model.config.use_cache = False
        if adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_path, is_trainable=True)
        elif lora_r is not None:
            model = self._add_lora(model)
        self.auto_model = model
        if bidirectional_from_layer is not None:
            from d2llm_st.modules.bidirectional import enable_bidirectional

            enable_bidirectional(self.auto_model, bidirectional_from_layer)
        self.set_trainable()
        self._loaded_fingerprint = self.base_fingerprint()

    def set_trainable(self, train_base_weights: bool | None = None) -> None:
        """LoRA weights train; the base weights train only with ``train_base_weights`` (default: as configured)."""
        if train_base_weights is not None:
            self.train_base_weights = bool(train_base_weights)
        for name, parameter in self.auto_model.named_parameters():
            parameter.requires_grad = self.train_base_weights or "lora_" in name

    def _add_lora(self, model: PreTrainedModel) -> PreTrainedModel:
        from peft import LoraConfig, TaskType, get_peft_model

        lora_config = LoraConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_target_modules or "all-linear",
        )
        # peft keeps adapter weights in float32 over bf16 base weights (autocast_adapter_dtype).
        return get_peft_model(model, lora_config)

    @property
    def has_lora(self) -> bool:
        from peft import PeftModel

        return isinstance(self.auto_model, PeftModel)

    @property
    def base_model(self) -> PreTrainedModel:
        """The plain transformers model (with LoRA layers injected when LoRA is on)."""
        return self.auto_model.get_base_model() if self.has_lora else self.auto_model

    @property
    def config(self) -> PretrainedConfig:
        return self.base_model.config

    @property
    def base_dtype(self) -> torch.dtype:
        """The dtype of the (frozen) base weights."""
        return self.base_model.get_input_embeddings().weight.dtype

    def merge_lora(self) -> None:
        """Fold the LoRA weights into the base weights (faster inference, no peft at run time).

        The merged backbone no longer trains LoRA, and :meth:`save` then writes the base weights too.
        """
        if not self.has_lora:
            raise ValueError("This backbone has no LoRA adapter to merge.")
        self.auto_model = self.auto_model.merge_and_unload()
        self.lora_r = self.lora_alpha = self.lora_target_modules = None

    def get_embedding_dimension(self) -> int:
        return self.config.hidden_size

    def preprocess(
        self, inputs: Sequence[str], prompt: str | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor | Any]:
        """Tokenize texts (with an optional prompt prefix) and pad; warn, with a count, whenever texts are truncated."""
        texts = check_texts(inputs)
        if prompt:
            texts = self._prepend_prompt(texts, prompt)
        max_length = kwargs.get("max_length") or self.max_seq_length
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt", return_length=False
        )
        if encoded["input_ids"].shape[1] == max_length:  # only then can a text have been cut
            lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
            n_long = sum(length > max_length for length in lengths)
            if n_long:
                logger.warning(
                    f"{n_long} of {len(texts)} text(s) are longer than max_seq_length={max_length} tokens and were "
                    "truncated; raise max_seq_length to keep them whole."
                )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        attention_mask = features["attention_mask"]
        # Positions from the mask: left padding then gives the same states as right padding.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        # Training over bf16 CPU weights: float32 LoRA runs in bf16 too (without autocast, peft casts every
        # activation to float32 and back). The trainable weights and their updates stay float32.
        autocast = torch.autocast(
            "cpu",
            dtype=torch.bfloat16,
            enabled=attention_mask.device.type == "cpu"
            and torch.is_grad_enabled()
            and self.base_dtype == torch.bfloat16,
        )
        with autocast:
            output = self.auto_model(
                input_ids=features["input_ids"],
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            )
        features["token_embeddings"] = output.last_hidden_state
        if "hidden_states" in output:  # config.output_hidden_states, as in sentence-transformers' Transformer
            features["all_layer_embeddings"] = output.hidden_states
        return features

    def base_fingerprint(self) -> str:
        """Fingerprint of the base weights (LoRA left out): it changes when they are trained or LoRA is merged."""
        return weights_fingerprint(self.base_model, skip=lambda name: "lora_" in name)

    def includes_base_weights(self) -> bool:
        """Whether :meth:`save` writes the base weights (see :attr:`save_base_weights`)."""
        changed = self.base_fingerprint() != self._loaded_fingerprint
        if self.save_base_weights is None:
            return changed or self.base_is_local
        return changed or self.save_base_weights

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Save the config and the LoRA adapter (``adapter/``), plus the base weights and tokenizer when
        :meth:`includes_base_weights`; otherwise the config records ``base_model_name_or_path`` to load them from."""
        if self.includes_base_weights():
            base = self.base_model
            state_dict = {
                name.replace(".base_layer", ""): tensor
                for name, tensor in base.state_dict().items()
                if "lora_" not in name
            }
            base.save_pretrained(output_path, state_dict=state_dict, safe_serialization=safe_serialization)
            self.save_tokenizer(output_path)
            extra = {}
        else:
            extra = {"base_model_name_or_path": self.base_model_name_or_path}
        if self.has_lora:
            adapter_path = os.path.join(output_path, ADAPTER_DIR)
            self.auto_model.save_pretrained(adapter_path, safe_serialization=safe_serialization)
            # The base is found through this folder's config, never through a path of the saving machine.
            config_path = os.path.join(adapter_path, "adapter_config.json")
            with open(config_path, encoding="utf-8") as f:
                adapter_config = json.load(f)
            adapter_config["base_model_name_or_path"] = None if self.base_is_local else self.base_model_name_or_path
            with open(config_path, "w", encoding="utf-8") as f:
                json.dump(adapter_config, f, indent=2)
            # peft's card names the base by the saving machine's path; the model card is the folder's README.md.
            peft_card = os.path.join(adapter_path, "README.md")
            if os.path.isfile(peft_card):
                os.remove(peft_card)
        with open(os.path.join(output_path, self.config_file_name), "w", encoding="utf-8") as f:
            json.dump({**self.get_config_dict(), **extra}, f, indent=2)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LLMBackbone:
        """Load a saved backbone: base weights from the folder or from its recorded ``base_model_name_or_path``,
        the LoRA adapter from ``adapter/`` (a folder whose config has LoRA but no adapter refuses to load)."""
        hub_kwargs = dict(token=token, cache_folder=cache_folder, revision=revision, local_files_only=local_files_only)
        local_dir = cls.load_dir_path(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        config_path = os.path.join(local_dir, cls.config_file_name)
        if not os.path.isfile(config_path):
            raise UserError(f"{model_name_or_path!r} has no {cls.config_file_name}: it is not a saved D2LLM backbone.")
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        base_model = config.pop("base_model_name_or_path", None)
        has_weights = os.path.isfile(os.path.join(local_dir, "config.json"))
        if not has_weights and base_model is None:
            raise UserError(
                f"{local_dir} has neither the base LLM's weights (config.json + safetensors) nor a "
                f"base_model_name_or_path in {cls.config_file_name}: the folder is incomplete; save the model again."
            )
        adapter_path = os.path.join(local_dir, ADAPTER_DIR)
        if config.get("lora_r") is not None and not os.path.isfile(os.path.join(adapter_path, "adapter_config.json")):
            raise UserError(
                f"{local_dir} was saved with LoRA (lora_r={config['lora_r']}) but its adapter is missing "
                f"({os.path.join(local_dir, ADAPTER_DIR)}/adapter_config.json): without it the model would load "
                "with a fresh, untrained LoRA. Restore the adapter folder or save the model again."
            )
        has_tokenizer = os.path.isfile(os.path.join(local_dir, "tokenizer_config.json"))
        return cls(
            local_dir if has_weights else base_model,
            **config,
            model_kwargs=model_kwargs,
            adapter_path=adapter_path if config.get("lora_r") is not None else None,
            tokenizer_path=local_dir if has_tokenizer else None,
        )

    def __repr__(self) -> str:
        return f"LLMBackbone({self.get_config_dict()}, architecture: {type(self.base_model).__name__})"


def merge_lora_adapters(model: Iterable[torch.nn.Module]) -> bool:
    """Fold the LoRA adapter of each :class:`LLMBackbone` among a model's modules (a D2LLM, or the MNRL baseline's
    mean-pooled LLM) into its base weights, for a model that only encodes: an unmerged adapter doubles a bf16
    forward on the CPU (docs/cpu.md). Returns whether any adapter was merged."""
    backbones = [m for m in model if isinstance(m, LLMBackbone) and m.has_lora]
    for backbone in backbones:
        backbone.merge_lora()
    return bool(backbones)
