"""FastReranker: the static-shape query path gives the same embeddings and scores as the plain API."""

from __future__ import annotations

import pytest
import torch

from d2llm_st import D2LLM
from d2llm_st.inference import FastReranker

QUERIES = ["what is the capital of france ?", "cat", "who cooks pizza in the kitchen and why is the sun hot ?"]
PASSAGES = ["the cat sat on the mat", "paris is the capital of france", "the chef cooks pizza", "rain"]


def build(path: str, device: str = "cpu", **kwargs) -> D2LLM:
    """A float32 student: the fast path must equal the plain API exactly (bf16 kernels round per shape)."""
    torch.manual_seed(0)
    kwargs.setdefault("model_kwargs", {"dtype": torch.float32})
    model = D2LLM.from_llm(path, pma_heads=4, iem_hidden_dim=16, query_prompt="query : ", device=device, **kwargs)
    # An untrained IEM head is near zero everywhere; scale it so score differences are visible.
    torch.nn.init.normal_(model.iem.asymmetric.head.weight, std=3.0)
    return model


@pytest.mark.parametrize("bidirectional", [None, 1])
def test_fast_path_equals_plain_api(tiny_llm, bidirectional):
    model = build(tiny_llm, bidirectional_from_layer=bidirectional)
    reranker = FastReranker(model, buckets=(4, 16))
    assert reranker.padding_is_exact is (bidirectional is None)
    passages = model.encode_texts(PASSAGES, "passage")
    for query in QUERIES:
        plain = model.encode_texts([query], "query")[0]
        torch.testing.assert_close(reranker.encode_query(query), plain, atol=1e-5, rtol=1e-5)
        expected = model.score(plain, passages)
        scores = reranker.score(query, passages)
        torch.testing.assert_close(scores, expected, atol=1e-6, rtol=1e-5)
        assert scores.shape == (len(PASSAGES),) and scores.std() > 1e-3


def test_padding_goes_to_the_bucket(tiny_llama):
    reranker = FastReranker(build(tiny_llama), buckets=(8, 16))
    assert [reranker._bucket(n) for n in (1, 8, 9, 16, 17)] == [8, 8, 16, 16, 17]


def test_symmetric_task_uses_the_symmetric_prompt(tiny_llama):
    torch.manual_seed(0)
    model = D2LLM.from_llm(tiny_llama, pma_heads=4, query_prompt="query :", symmetric_prompt="text :", device="cpu")
    reranker = FastReranker(model, task="symmetric")
    texts = model.encode_texts(PASSAGES, "symmetric")
    expected = model.score(model.encode_texts(["a dog ran"], "symmetric")[0], texts, "symmetric")
    torch.testing.assert_close(reranker.score("a dog ran", texts), expected, atol=1e-6, rtol=1e-5)


def test_errors(tiny_llama):
    model = build(tiny_llama)
    with pytest.raises(ValueError, match="CUDA device"):
        FastReranker(model, cuda_graphs=True)
    reranker = FastReranker(model, buckets=(16,))
    passages = model.encode_texts(PASSAGES, "passage")
    with pytest.raises(ValueError, match=r"query is an empty text \(''\)"):  # not a reshape error deep inside
        reranker.encode_query("")
    with pytest.raises(ValueError, match=r"query is an empty text \(' '\)"):
        reranker.score(" ", passages)
    with pytest.raises(TypeError, match="query must be a string, got NoneType"):
        reranker.score(None, passages)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_match_eager(tiny_llm):
    model = build(tiny_llm, device="cuda")
    graphed, eager = FastReranker(model, buckets=(8, 32)), FastReranker(model, cuda_graphs=False)
    assert graphed.cuda_graphs
    passages = model.encode_texts(PASSAGES, "passage")
    for query in QUERIES * 2:  # replays of the same captured graph with different queries
        torch.testing.assert_close(graphed.score(query, passages), eager.score(query, passages), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            graphed.encode_query(query), model.encode_texts([query], "query")[0], atol=1e-4, rtol=1e-4
        )


@pytest.mark.slow  # not real weights, but torch.compile takes ~30 s on a 2-core CPU
def test_compiled_query_path_matches(tiny_llama):
    model = build(tiny_llama)
    passages = model.encode_texts(PASSAGES, "passage")
    compiled = FastReranker(model, compile=True)
    for query in QUERIES[:2]:
        expected = model.score(model.encode_texts([query], "query")[0], passages)
        torch.testing.assert_close(compiled.score(query, passages), expected, atol=1e-5, rtol=1e-4)


def test_lora_is_merged_for_speed_unless_asked_not_to(tiny_llama):
    model = build(tiny_llama, lora_r=4)
    with torch.no_grad():  # a LoRA that changes the output, so merging it is visible
        for name, param in model.backbone.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    passages = model.encode_texts(PASSAGES, "passage")
    expected = [model.score(model.encode_texts([query], "query")[0], passages) for query in QUERIES]

    kept = FastReranker(model, merge_lora=False)
    assert model.backbone.has_lora
    merged = FastReranker(model)
    assert not model.backbone.has_lora
    for query, scores in zip(QUERIES, expected):
        torch.testing.assert_close(merged.score(query, passages), scores, atol=1e-5, rtol=1e-4)
    assert kept.model is merged.model
