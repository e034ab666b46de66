"""A cheap fingerprint of a model's weights: what the teacher score cache and backbone saving key on."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch


def weights_fingerprint(
    model: torch.nn.Module, skip: Callable[[str], bool] | None = None, any_dtype: bool = False
) -> str:
    """A hash of shapes, dtypes and 64 evenly spaced values of every parameter (``skip(name)`` ones left out).

    Fine-tuning (LoRA merged or not) changes whole weight matrices, so the fingerprint changes with it. With
    ``any_dtype``, dtypes are left out and the values rounded to bfloat16, so the same weights held in float32 (a
    GPU) or bfloat16 (a CPU with bf16 instructions, :mod:`d2llm_st.runtime`) give the same fingerprint.
    """
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
            if skip is not None and skip(name):
                continue
            flat = parameter.detach().reshape(-1)
            count = min(64, flat.numel())
            index = torch.arange(count, device=flat.device) * (flat.numel() - 1) // max(count - 1, 1)
            values = flat[index].to(torch.bfloat16) if any_dtype else flat[index]
            digest.update(f"{name}:{tuple(parameter.shape)}{'' if any_dtype else f':{parameter.dtype}'}".encode())
            digest.update(values.float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
