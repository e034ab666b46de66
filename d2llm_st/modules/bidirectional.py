"""DeeLM / BeLLM: make the upper layers of a decoder LLM attend in both directions.

A decoder LLM only sees forward context. DeeLM (Li & Li, arXiv 2311.05296, published as "BeLLM")
finds a *turning point* layer past which sentence-similarity quality drops (see
:mod:`d2llm_st.deelm`) and removes the causal mask from the layers after it.
:func:`enable_bidirectional` does this to a loaded transformers model, in place:

- layers with index ``< from_layer`` keep the model's own causal (+ padding) mask;
- layers with index ``>= from_layer`` get a padding-only mask built by transformers'
  ``create_bidirectional_mask`` (the windowed variant for sliding-window layers), and their
  attention modules get ``is_causal = False``. The flag matters: with SDPA and no padding the
  mask is ``None`` and SDPA falls back to ``is_causal`` -- leaving it ``True`` silently keeps the
  layer causal. Padding stays masked in both kinds of layer, so padding a batch never changes a
  text's states.

How: a forward pre-hook on the inner model (e.g. ``LlamaModel``) passes the 2D padding mask to
the decoder layers as a keyword argument (the model forwards unknown keywords to its layers),
and a pre-hook on each layer swaps in the bidirectional mask. The mask travels with the call,
not in global state, so gradient checkpointing and interleaved forwards stay correct.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
"""Architectures whose mask flow (model -> ``layers[i](attention_mask=...)`` -> ``self_attn``) was verified."""

_PADDING_MASK_KWARG = "d2llm_bidirectional_context"
_PATCH_ATTRIBUTE = "_d2llm_bidirectional"


@dataclass
class _ForwardContext:
    """One forward call's 2D padding mask and the bidirectional masks built from it (one per window size)."""

    padding_mask: torch.Tensor | None
    masks: dict[int | None, Any] = field(default_factory=dict)


@dataclass
class _Patch:
    from_layer: int
    handles: list[RemovableHandle]
    attention_modules: list[nn.Module]


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model that owns the decoder layers (unwraps peft and ``*ForCausalLM`` heads)."""
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    return getattr(model, "base_model", model)


def _decoder_layers(inner: nn.Module) -> nn.ModuleList:
    config = inner.config
    model_type = getattr(config, "model_type", None)
    layers = getattr(inner, "layers", None)
    if model_type not in SUPPORTED_MODEL_TYPES or not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"bidirectional_from_layer is not supported for model_type {model_type!r} ({type(inner).__name__}): "
            f"the attention-mask patch is verified for {', '.join(SUPPORTED_MODEL_TYPES)}. Use one of those "
            "families, or set bidirectional_from_layer=None to keep the model causal."
        )
    if not all(hasattr(getattr(layer, "self_attn", None), "is_causal") for layer in layers):
        raise ValueError(
            f"{type(inner).__name__} has decoder layers without a `self_attn.is_causal` flag; this transformers "
            "version is not supported by enable_bidirectional. Set bidirectional_from_layer=None."
        )
    return layers


def bidirectional_from_layer(model: nn.Module) -> int | None:
    """The ``from_layer`` that :func:`enable_bidirectional` set on ``model``, or ``None`` if it is causal."""
    patch = getattr(_unwrap(model), _PATCH_ATTRIBUTE, None)
    return patch.from_layer if patch is not None else None


def enable_bidirectional(model: nn.Module, from_layer: int | None) -> nn.Module:
    """Make decoder layers ``from_layer, from_layer + 1, ...`` of ``model`` bidirectional, in place.

    Args:
        model: A loaded transformers model of a supported family (``AutoModel`` or ``*ForCausalLM``), or a
            peft ``PeftModel`` around one.
        from_layer: Index of the first bidirectional layer, in ``[0, num_hidden_layers)``; ``0`` makes every
            layer bidirectional. ``None`` removes a previous patch: the model is then exactly the untouched
            causal model again.

    Returns:
        ``model`` (patched in place). Calling again replaces the previous setting.

    Raises:
        ValueError: for an architecture outside ``SUPPORTED_MODEL_TYPES`` or an out-of-range ``from_layer``.
    """
    inner = _unwrap(model)
    _remove_patch(inner)
    if from_layer is None:
        return model
    layers = _decoder_layers(inner)
    if isinstance(from_layer, bool) or not isinstance(from_layer, int) or not 0 <= from_layer < len(layers):
        raise ValueError(
            f"bidirectional_from_layer must be an int in [0, {len(layers) - 1}] for this {len(layers)}-layer model "
            f"(the index of the first bidirectional layer), got {from_layer!r}; use None for a fully causal model."
        )
    if "attention_mask" not in inspect.signature(inner.forward).parameters:
        raise ValueError(f"{type(inner).__name__}.forward takes no attention_mask; cannot patch its layers.")

    handles = [inner.register_forward_pre_hook(_pass_padding_mask(inner), with_kwargs=True)]
    attention_modules = []
    for index, layer in enumerate(layers):
        bidirectional = index >= from_layer
        handles.append(
            layer.register_forward_pre_hook(_swap_mask(inner.config, layer, bidirectional), with_kwargs=True)
        )
        if bidirectional:
            layer.self_attn.is_causal = False
            attention_modules.append(layer.self_attn)
    setattr(inner, _PATCH_ATTRIBUTE, _Patch(from_layer, handles, attention_modules))
    return model


def _remove_patch(inner: nn.Module) -> None:
    patch: _Patch | None = getattr(inner, _PATCH_ATTRIBUTE, None)
    if patch is None:
        return
    for handle in patch.handles:
        handle.remove()
    for attention in patch.attention_modules:
        attention.is_causal = True
    delattr(inner, _PATCH_ATTRIBUTE)


def _pass_padding_mask(inner: nn.Module):
    signature = inspect.signature(inner.forward)

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        attention_mask = signature.bind_partial(*args, **kwargs).arguments.get("attention_mask")
        if attention_mask is not None and attention_mask.ndim != 2:
            raise ValueError(
                f"Bidirectional layers need a 2D padding attention_mask [batch, seq_len], got shape "
                f"{tuple(attention_mask.shape)}: a prepared 4D mask cannot be split into causal and bidirectional."
            )
        return args, {**kwargs, _PADDING_MASK_KWARG: _ForwardContext(attention_mask)}

    return hook


def _swap_mask(config: Any, layer: nn.Module, bidirectional: bool):
    from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

    attention = layer.self_attn
    # Qwen2/3 set a per-layer window (None on full-attention layers); Mistral applies config.sliding_window to all.
    window = getattr(attention, "sliding_window", getattr(config, "sliding_window", None))
    make_mask = create_bidirectional_mask if window is None else create_bidirectional_sliding_window_mask

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        kwargs = dict(kwargs)
        context: _ForwardContext | None = kwargs.pop(_PADDING_MASK_KWARG, None)
        if not bidirectional or context is None:
            return args, kwargs
        if window not in context.masks:
            hidden_states = args[0] if args else kwargs["hidden_states"]
            context.masks[window] = make_mask(config, hidden_states, context.padding_mask)
        kwargs["attention_mask"] = context.masks[window]
        return args, kwargs

    return hook
