"""Shared save/load for D2LLM's small torch modules (PMA, IEM): a JSON config plus safetensors weights."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import torch
from sentence_transformers.base.modules.module import Module

from d2llm_st.errors import UserError

HUB_KWARGS = ("token", "cache_folder", "revision", "local_files_only")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""The weight files sentence-transformers' ``Module.load_torch_weights`` reads, in its order."""


def check_count(name: str, value: Any, optional: bool = False) -> None:
    """Raise unless ``value`` is a whole number >= 1 (or ``None`` when ``optional``), naming the argument."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number >= 1{' or None' if optional else ''}, got {value!r}.")
    if value < 1:
        raise UserError(f"{name} must be >= 1, got {value}.")


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None) -> None:
    """Raise unless ``value`` is a finite real number in ``[low, high)`` (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value >= high):
        bounds = " and ".join(
            part for part in (low is not None and f">= {low}", high is not None and f"< {high}") if part
        )
        raise UserError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {value}.")


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
        """Rebuild the module; a missing config or weight file is a :class:`UserError` naming it and its subfolder
        (sentence-transformers would build the module from an empty config, or name only the top folder)."""
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        where = os.path.join(model_name_or_path, subfolder) if subfolder else model_name_or_path

        def missing(names: tuple[str, ...]) -> bool:
            found = (cls.load_file_path(model_name_or_path, name, subfolder=subfolder, **hub_kwargs) for name in names)
            return all(path is None for path in found)

        if missing((cls.config_file_name,)):
            raise UserError(
                f"{where} has no {cls.config_file_name}: the {cls.__name__} module's config (subfolder "
                f"{subfolder or '.'!r} in modules.json) is missing or damaged; re-save or re-download the model."
            )
        if missing(WEIGHT_FILES):
            raise UserError(
                f"{where} has no {' or '.join(WEIGHT_FILES)}: the {cls.__name__} module's weights (subfolder "
                f"{subfolder or '.'!r} in modules.json) are missing; re-save or re-download the model."
            )
        module = cls(**cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs))
        cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=module, **hub_kwargs)
        return module
