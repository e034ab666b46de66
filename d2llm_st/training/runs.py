"""What a ``d2llm distill`` output folder already holds, and whether a run may use it.

A run's products in ``training.output_dir`` are its config (``distill_config.yaml``), the trainer's
``checkpoint-<step>`` folders, the saved ``model/`` and ``results.json``. A run never silently reuses another
run's products (:func:`check_output_dir`):

- the same config (every key but ``training.output_dir`` and ``teacher.cache``, which only say where files
  live) resumes from the newest checkpoint, or, when ``results.json`` exists, is reported as already finished
  without training or rewriting anything;
- a different config is refused with a message naming the differing keys;
- ``overwrite`` deletes the previous products first and starts fresh (the teacher score cache is kept: its
  scores are keyed by the teacher's weights and the pair, so they stay valid);
- ``resume=False`` refuses any folder that already holds products, instead of mixing runs.

Light on imports (no torch), so the CLI answers before loading anything.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from typing import Any

from d2llm_st.errors import UserError
from d2llm_st.training.config import DistillConfig

logger = logging.getLogger(__name__)

CONFIG_NAME = "distill_config.yaml"
RESULTS_NAME = "results.json"
MODEL_DIR = "model"
CHECKPOINT = re.compile(r"^checkpoint-\d+$")  # transformers' PREFIX_CHECKPOINT_DIR naming
LOCATION_KEYS = ("training.output_dir", "teacher.cache")
"""Keys that say where a run's files live, not what it trains: they may differ between a run and its resume."""


def run_products(output_dir: str) -> list[str]:
    """Names of a previous run's checkpoints, model and results in ``output_dir`` (its config not included)."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(
        name for name in os.listdir(output_dir) if CHECKPOINT.match(name) or name in (MODEL_DIR, RESULTS_NAME)
    )


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"loss.alpha": 1.0, "datasets[0].limit": 100, ...}`` from a nested config dict."""
    if isinstance(data, dict) and data:
        return {k: v for key, value in data.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return {k: v for i, item in enumerate(data) for k, v in flatten(item, f"{prefix.rstrip('.')}[{i}].").items()}
    return {prefix.rstrip("."): data}


def config_differences(saved: DistillConfig, config: DistillConfig) -> list[str]:
    """``"key (saved -> new)"`` for every key whose value differs, location keys excepted."""
    old, new = flatten(saved.to_dict()), flatten(config.to_dict())
    keys = [key for key in dict.fromkeys([*old, *new]) if key not in LOCATION_KEYS]
    missing = "(not set)"
    return [
        f"{key} ({old.get(key, missing)!r} -> {new.get(key, missing)!r})"
        for key in keys
        if old.get(key, missing) != new.get(key, missing)
    ]


def remove_run(output_dir: str) -> None:
    """Delete a previous run's config, checkpoints, model and results from ``output_dir`` (nothing else)."""
    for name in [*run_products(output_dir), CONFIG_NAME]:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def check_output_dir(config: DistillConfig, resume: bool = True, overwrite: bool = False) -> dict[str, Any] | None:
    """Apply the module's rules to ``config.training.output_dir`` before anything is built.

    Returns:
        The saved ``results.json`` when this very run already finished there, else ``None`` (train: from the
        newest checkpoint if there is one).

    Raises:
        UserError: the folder holds another run (naming the differing keys), a run whose config is unknown,
            or any run while ``resume`` is off.
    """
    output_dir = config.training.output_dir
    if overwrite:
        if run_products(output_dir) or os.path.exists(os.path.join(output_dir, CONFIG_NAME)):
            logger.warning(f"--overwrite: deleting the previous run in {output_dir} (the teacher score cache stays)")
        remove_run(output_dir)
        return None
    products = run_products(output_dir)
    if not products:
        return None
    fresh = "pass --overwrite to replace it, or set another training.output_dir"
    saved_path = os.path.join(output_dir, CONFIG_NAME)
    if not os.path.isfile(saved_path):
        raise UserError(
            f"{output_dir} holds {', '.join(products)} but no {CONFIG_NAME}, so what was trained there is unknown: "
            f"{fresh}."
        )
    try:
        saved = DistillConfig.load(saved_path)
    except UserError as error:
        raise UserError(
            f"Cannot compare with the run in {output_dir}: its {CONFIG_NAME} is unreadable ({error}); {fresh}."
        ) from error
    differences = config_differences(saved, config)
    if differences:
        shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
        raise UserError(f"{output_dir} holds a run with a different config: {shown}. To train this one, {fresh}.")
    if not resume:
        raise UserError(f"{output_dir} already holds this run ({', '.join(products)}) and resuming is off: {fresh}.")
    results_path = os.path.join(output_dir, RESULTS_NAME)
    if os.path.isfile(results_path):
        with open(results_path, encoding="utf-8") as f:
            return json.load(f)
    return None
