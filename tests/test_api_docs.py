"""docs/api.md's reference part is generated from the code, so it matches the code."""

from __future__ import annotations

import importlib.util
import os


def load_script():
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "api_docs.py")
    spec = importlib.util.spec_from_file_location("api_docs", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_reference_is_generated_from_the_docstrings():
    api_docs = load_script()
    with open(api_docs.PATH, encoding="utf-8") as f:
        text = f.read()
    assert api_docs.MARKER in text
    assert text == api_docs.render(), "docs/api.md is stale: run python scripts/api_docs.py"


def test_the_reference_holds_no_machine_specific_values():
    reference = load_script().render_reference()
    checkout = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    assert "0x" not in reference and checkout not in reference and os.path.expanduser("~") + "/" not in reference
    assert "D2LLM.from_llm" not in reference or "train_backbone" in reference
    assert "train_backbone: bool = False" in reference  # from_llm's signature, as the code has it
