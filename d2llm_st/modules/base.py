"""Shared save/load for D2LLM's small torch modules (PMA, IEM): a JSON config plus safetensors weights."""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.base.modules.module import Module

HUB_KWARGS = ("token", "cache_folder", "revision", "local_files_only")


class ConfiguredModule(Module):
    """A module rebuilt from ``config_keys`` and then filled with its saved weights.

    Its weights keep their dtype (float32) under a bf16 backbone: sentence-transformers calls ``module.to(dtype)``
    on every module after the first while building a model, which would make these weights bf16, and they
    train (bf16 would lose their updates) and are small. A direct ``module.to(...)`` therefore only moves the
    module between devices; casting the whole model (``model.to(torch.bfloat16)``, ``model.half()``) still
    casts them.
    """

    def to(self, *args: Any, **kwargs: Any):
        device, _, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        return self if device is None else super().to(device, non_blocking=non_blocking)

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any):
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        module = cls(**cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs))
        cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=module, **hub_kwargs)
        return module
