"""Packaging: LlamaIndex is an extra, d2llm_st works without it, and the adapters import where LlamaIndex
integrations live (``llama_index.<kind>.<name>``, PEP 420 namespace portions merged with llama-index-core's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
NAMESPACE_PACKAGES = {
    "llama_index.embeddings.d2llm": "D2LLMEmbedding",
    "llama_index.retrievers.d2llm": "D2LLMRetriever",
    "llama_index.postprocessor.d2llm_rerank": "D2LLMRerank",
}


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_adapters_import_from_the_llama_index_namespace_beside_llama_index_core():
    import importlib

    import llama_index.core

    import d2llm_llamaindex

    for package, name in NAMESPACE_PACKAGES.items():
        module = importlib.import_module(package)
        assert getattr(module, name) is getattr(d2llm_llamaindex, name) and module.__all__ == [name]
    assert llama_index.core.VectorStoreIndex  # the installed namespace still resolves
    for folder in ("llama_index", "llama_index/embeddings", "llama_index/retrievers", "llama_index/postprocessor"):
        assert not os.path.exists(os.path.join(ROOT, folder, "__init__.py")), f"{folder} must stay a namespace"


def test_pyproject_makes_llamaindex_an_extra_and_ships_the_namespace_packages():
    from setuptools import find_namespace_packages

    config = pyproject()
    dependencies = config["project"]["dependencies"]
    extras = config["project"]["optional-dependencies"]
    assert not [dep for dep in dependencies if dep.startswith("llama-index")]
    assert any(dep.startswith("llama-index-core") for dep in extras["llamaindex"])
    for store in ("qdrant", "faiss"):
        assert "d2llm[llamaindex]" in extras[store] and any(f"vector-stores-{store}" in dep for dep in extras[store])
    assert extras["all"] == ["d2llm[bm25,gguf,plot,llamaindex,vectordb]"]
    assert extras["vectordb"] == ["d2llm[qdrant,faiss]"]
    found = find_namespace_packages(where=ROOT, include=config["tool"]["setuptools"]["packages"]["find"]["include"])
    assert set(NAMESPACE_PACKAGES) <= set(found)
    assert {"d2llm_st", "d2llm_st.cli", "d2llm_llamaindex"} <= set(found)
    assert not [
        package for package in found if package.split(".")[0] not in ("d2llm_st", "d2llm_llamaindex", "llama_index")
    ]


BLOCKED = """
import importlib, json, pkgutil, sys

attempts = []


class NoLlamaIndexCore:
    # llama-index-core and the store integrations are not installed; our namespace portions are.
    def find_spec(self, name, path=None, target=None):
        if name == "llama_index" or name.startswith("llama_index."):
            attempts.append(name)
        if name.startswith(("llama_index.core", "llama_index.vector_stores")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoLlamaIndexCore())
import d2llm_st
import d2llm_st.cli

modules = [info.name for info in pkgutil.walk_packages(d2llm_st.__path__, "d2llm_st.")]
modules = [name for name in modules if not name.endswith("__main__")]  # runs the CLI on import
for name in modules:
    importlib.import_module(name)
try:
    d2llm_st.cli.main(["--help"])
except SystemExit as exit:
    cli_exit = exit.code
d2llm_st_attempts = list(attempts)

errors = {}
for name in ("d2llm_llamaindex", "llama_index.postprocessor.d2llm_rerank"):
    try:
        importlib.import_module(name)
    except ImportError as error:
        errors[name] = str(error)
print(json.dumps({"modules": modules, "cli_exit": cli_exit, "attempts": d2llm_st_attempts, "errors": errors}))
"""


def test_d2llm_st_imports_without_llamaindex_and_the_adapters_say_how_to_install_it():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCKED)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "d2llm_st.cli.eval" in report["modules"] and "d2llm_st.evaluation.scorers" in report["modules"]
    assert report["cli_exit"] == 0
    assert report["attempts"] == []  # no d2llm_st module even tries LlamaIndex
    assert set(report["errors"]) == {"d2llm_llamaindex", "llama_index.postprocessor.d2llm_rerank"}
    for message in report["errors"].values():
        assert 'pip install "d2llm[llamaindex]"' in message
