"""One rule for model names (bundled:, local folders, hub ids; offline answers at once) and a light package import."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import error_lines

from d2llm_st.errors import UserError
from d2llm_st.model_paths import resolve_model_path


def python(code: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )


def test_local_looking_names_are_resolved_without_the_network(tmp_path, monkeypatch):
    import d2llm_st.model_paths as model_paths

    def no_network(*args):
        raise AssertionError("the hub was consulted")

    monkeypatch.setattr(model_paths, "check_hub_id", no_network)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "model").mkdir()
    assert resolve_model_path("model") == "model"
    for name in ("./teacher", "../teacher", "runs/teacher", "a/b/c", str(tmp_path / "teacher")):
        with pytest.raises(FileNotFoundError, match=f"teacher.model={name!r}: no such folder here"):
            resolve_model_path(name, "teacher.model")
    (tmp_path / "weights.bin").write_text("")
    with pytest.raises(FileNotFoundError, match="is a file, not a model folder"):
        resolve_model_path("weights.bin")
    with pytest.raises(UserError, match="not a bundled model; the bundled models are: bundled:smollm2"):
        resolve_model_path("bundled:smollm3")
    with pytest.raises(UserError, match="model is empty"):
        resolve_model_path(" ")


RESOLVE = "from d2llm_st.model_paths import resolve_model_path; print(resolve_model_path('org/name', 'teacher'))"


def test_a_hub_id_fails_at_once_when_offline_or_unreachable(tmp_path):
    cache = str(tmp_path / "hub")
    start = time.perf_counter()
    offline = python(RESOLVE, HF_HUB_OFFLINE="1", HF_HUB_CACHE=cache)
    assert offline.returncode == 1 and "UserError: teacher='org/name' is not a local folder" in offline.stderr
    assert "not in the local hub cache (HF_HUB_OFFLINE is set)" in offline.stderr
    # Nothing listens on port 9: the connection is refused at once, and there is one attempt, not five.
    unreachable = python(RESOLVE, HF_HUB_OFFLINE="0", HF_HUB_CACHE=cache, HF_ENDPOINT="http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "not reachable on the hub" in unreachable.stderr, unreachable.stderr
    assert time.perf_counter() - start < 30  # the hub client's own retries take ~25 s for one name


def test_a_hub_id_in_the_local_cache_resolves_offline(tmp_path):
    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--name" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--name" / "refs" / "main").write_text("abc123")
    cached = python(RESOLVE, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    assert cached.returncode == 0 and cached.stdout.strip() == "org/name", cached.stderr


def test_a_mistyped_teacher_path_is_one_line_in_the_cli_offline(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"premise": "a cat", "hypothesis": "a dog", "label": "entailment"}\n')
    result = subprocess.run(
        [sys.executable, "-m", "d2llm_st.cli", "teacher-score", "--teacher", "runs/teacher", "--kind", "nli"]
        + ["--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # no runs/ folder here: the name looks like a hub id
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")},
    )
    assert result.returncode == 2 and len(error_lines(result.stderr)) == 1, result.stderr
    assert "--teacher='runs/teacher' is not a local folder" in result.stderr


@pytest.mark.parametrize(
    "imports",
    [
        "import d2llm_st; from sentence_transformers import SentenceTransformer",  # the README's order
        "from sentence_transformers import SentenceTransformer; import d2llm_st",
        "import d2llm_st.data.readers; from sentence_transformers import SentenceTransformer",
    ],
)
def test_importing_the_package_registers_the_modules_whatever_comes_first(imports):
    result = python(f"{imports}; print(sorted(k for k in SentenceTransformer._module_classes if 'd2llm' in k))")
    assert result.returncode == 0, result.stderr
    names = ["d2llm_st.modules.backbone.LLMBackbone", "d2llm_st.modules.iem.IEM", "d2llm_st.modules.pma.PMAPooling"]
    assert result.stdout.strip() == str(names)
