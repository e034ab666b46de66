"""DeeLM bidirectional upper layers: which layers see later tokens, exactness of k=None, padding, save/reload."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2Model,
    LlamaConfig,
    LlamaModel,
    MistralConfig,
    MistralModel,
    Qwen2Config,
    Qwen2Model,
    Qwen3Config,
    Qwen3Model,
)

from d2llm_st.modules.bidirectional import bidirectional_from_layer, enable_bidirectional

FAMILIES = {"llama": (LlamaConfig, LlamaModel), "mistral": (MistralConfig, MistralModel)}
FAMILIES |= {"qwen2": (Qwen2Config, Qwen2Model), "qwen3": (Qwen3Config, Qwen3Model)}
VOCAB = 50


def tiny_model(family: str, attn: str, num_layers: int = 3, **overrides) -> torch.nn.Module:
    config_class, model_class = FAMILIES[family]
    config = config_class(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation=attn,
        **overrides,
    )
    torch.manual_seed(0)
    return model_class(config).eval()


def run(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """All hidden states (index i = after i layers), with position ids from the mask as LLMBackbone does."""
    position_ids = None if attention_mask is None else (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, output_hidden_states=True
        )
    return out.hidden_states


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_layers_from_k_see_later_tokens_and_layers_below_do_not(family, attn):
    model = tiny_model(family, attn)
    original = torch.tensor([[5, 6, 7, 8, 9]])
    later_changed = torch.tensor([[5, 6, 7, 8, 20]])
    causal = run(model, original)
    enable_bidirectional(model, 1)
    states, changed = run(model, original), run(model, later_changed)
    first_tokens = slice(0, 4)
    # hidden_states[i] is the output of layer i - 1: layer 0 stays causal, layers 1 and 2 are bidirectional.
    assert torch.equal(states[1][:, first_tokens], changed[1][:, first_tokens])
    assert torch.equal(states[1], causal[1])
    for index in (2, 3):
        diff = (states[index][:, first_tokens] - changed[index][:, first_tokens]).abs().amax(-1)
        assert (diff > 1e-4).all(), f"layer {index - 1}: an earlier token did not see the changed last token"
        assert not torch.allclose(states[index], causal[index])


@pytest.mark.parametrize("family", FAMILIES)
def test_none_gives_the_untouched_model_exactly(family):
    model = tiny_model(family, "sdpa")
    input_ids, mask = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    untouched = run(model, input_ids, mask)
    enable_bidirectional(model, 0)
    assert bidirectional_from_layer(model) == 0
    assert not torch.allclose(run(model, input_ids, mask)[-1], untouched[-1])
    enable_bidirectional(model, None)
    assert bidirectional_from_layer(model) is None
    assert all(torch.equal(a, b) for a, b in zip(run(model, input_ids, mask), untouched))
    assert all(layer.self_attn.is_causal for layer in model.layers)


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_padding_in_a_batch_does_not_change_a_text(family, attn, padding_side):
    model = enable_bidirectional(tiny_model(family, attn), 1)
    short, long = [5, 6, 7], [8, 9, 10, 11, 12, 13]
    alone = run(model, torch.tensor([short]), torch.ones(1, 3, dtype=torch.long))[-1][0]
    pad = [0] * (len(long) - len(short))
    padded = short + pad if padding_side == "right" else pad + short
    mask = [1] * 3 + [0] * 3 if padding_side == "right" else [0] * 3 + [1] * 3
    batch = run(model, torch.tensor([padded, long]), torch.tensor([mask, [1] * 6]))[-1]
    real = torch.tensor(mask, dtype=torch.bool)
    torch.testing.assert_close(batch[0][real], alone, atol=1e-5, rtol=1e-4)
    alone_long = run(model, torch.tensor([long]), torch.ones(1, 6, dtype=torch.long))[-1][0]
    torch.testing.assert_close(batch[1], alone_long, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_eager_and_sdpa_agree_without_and_with_padding(family):
    eager, sdpa = (enable_bidirectional(tiny_model(family, attn), 1) for attn in ("eager", "sdpa"))
    input_ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    for mask in (None, torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])):
        real = torch.ones(2, 5, dtype=torch.bool) if mask is None else mask.bool()
        torch.testing.assert_close(run(sdpa, input_ids, mask)[-1][real], run(eager, input_ids, mask)[-1][real])


SLIDING = {
    "mistral": {"sliding_window": 2},
    "qwen2": {"sliding_window": 2, "use_sliding_window": True, "max_window_layers": 0},
}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", SLIDING)
def test_sliding_window_layers_stay_windowed_in_both_directions(family, attn):
    model = enable_bidirectional(tiny_model(family, attn, num_layers=2, **SLIDING[family]), 1)
    base = run(model, torch.tensor([[5, 6, 7, 8, 9, 10, 11]]))[-1][0, 0]
    near = run(model, torch.tensor([[5, 6, 20, 8, 9, 10, 11]]))[-1][0, 0]
    far = run(model, torch.tensor([[5, 6, 7, 8, 9, 10, 20]]))[-1][0, 0]
    assert not torch.allclose(base, near), "token 0 should see token 2 (inside the window) in the top layer"
    assert torch.equal(base, far), "token 0 must not see token 6 (outside every window)"


def test_enabling_twice_replaces_the_previous_setting():
    model = tiny_model("llama", "sdpa")
    enable_bidirectional(model, 0)
    enable_bidirectional(model, 2)
    assert [layer.self_attn.is_causal for layer in model.layers] == [True, True, False]
    assert len(model._forward_pre_hooks) == 1


def test_unsupported_architecture_is_a_clear_error():
    model = GPT2Model(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    with pytest.raises(ValueError, match="not supported for model_type 'gpt2'.*llama, mistral, qwen2, qwen3"):
        enable_bidirectional(model, 1)


@pytest.mark.parametrize("from_layer", [3, -1, True, 1.0])
def test_out_of_range_layer_is_a_clear_error(from_layer):
    with pytest.raises(ValueError, match=r"must be an int in \[0, 2\] for this 3-layer model"):
        enable_bidirectional(tiny_model("llama", "sdpa"), from_layer)


def test_a_prepared_4d_mask_is_refused():
    model = enable_bidirectional(tiny_model("llama", "eager"), 1)
    with pytest.raises(ValueError, match="2D padding attention_mask"):
        model(input_ids=torch.tensor([[5, 6]]), attention_mask=torch.zeros(1, 1, 2, 2))


def test_d2llm_option_is_saved_restored_and_padding_safe(tiny_llm, tmp_path):
    from sentence_transformers import SentenceTransformer

    from d2llm_st import D2LLM

    model = D2LLM.from_llm(tiny_llm, lora_r=4, pma_heads=4, bidirectional_from_layer=1, device="cpu")
    texts = ["the cat sat on the mat", "a dog ran", "what is the capital of france ?"]
    batched = model.encode(texts, batch_size=3, convert_to_tensor=True)
    one_by_one = torch.cat([model.encode([text], convert_to_tensor=True) for text in texts])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-4)

    model.save_pretrained(str(tmp_path))
    reloaded = SentenceTransformer(str(tmp_path), device="cpu")
    assert reloaded[0].bidirectional_from_layer == 1
    assert bidirectional_from_layer(reloaded[0].auto_model) == 1
    torch.testing.assert_close(reloaded.encode(texts, convert_to_tensor=True), batched)
    enable_bidirectional(reloaded[0].auto_model, None)
    assert not torch.allclose(reloaded.encode(texts, convert_to_tensor=True), batched, atol=1e-4)


def test_gradient_checkpointing_recomputes_with_the_same_masks():
    input_ids, mask = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    grads = []
    for checkpointing in (False, True):
        model = enable_bidirectional(tiny_model("llama", "sdpa"), 1).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        out = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        (out[mask.bool()] ** 2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0])


# DeeLM with the rest of the package (issue 21): the fast query path, the LoRA merge, the shipped folder layout.

QUERIES = ["what is the capital of france ?", "cat", "who cooks pizza in the kitchen and why is the sun hot ?"]
PASSAGES = ["the cat sat on the mat", "paris is the capital of france", "the chef cooks pizza", "rain"]
FLOAT32 = {"dtype": torch.float32}  # exact comparisons (bf16 kernels round differently per shape)


def bidirectional_student(name: str, from_layer: int | None = 1):
    """A float32 student with a LoRA that changes its output and an IEM whose scores differ visibly."""
    from d2llm_st import D2LLM

    torch.manual_seed(0)
    model = D2LLM.from_llm(
        name,
        lora_r=4,
        pma_heads=4,
        iem_hidden_dim=16,
        query_prompt="query : ",
        bidirectional_from_layer=from_layer,
        model_kwargs=FLOAT32,
        device="cpu",
    )
    with torch.no_grad():
        for parameter_name, parameter in model.backbone.named_parameters():
            if "lora_B" in parameter_name:
                parameter.normal_(std=0.5)
    torch.nn.init.normal_(model.iem.asymmetric.head.weight, std=3.0)
    return model


def plain_scores(model) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Passage embeddings (a padded batch) and each query's scores against them, through the plain API."""
    passages = model.encode_texts(PASSAGES, "passage")
    return passages, [model.score(model.encode_texts([query], "query")[0], passages) for query in QUERIES]


@pytest.mark.parametrize("merge_lora", [True, False])
def test_fast_reranker_scores_a_bidirectional_student_as_the_plain_api(tiny_llama, merge_lora):
    from d2llm_st.inference import FastReranker

    model = bidirectional_student(tiny_llama)
    passages, expected = plain_scores(model)
    reranker = FastReranker(model, buckets=(4, 16), merge_lora=merge_lora)  # merge_lora=True is the default
    assert not reranker.padding_is_exact and reranker._bucket(3) == 3  # each query at its own length, no padding
    assert model.backbone.has_lora is not merge_lora
    assert bidirectional_from_layer(model.backbone.auto_model) == 1
    for query, scores in zip(QUERIES, expected):
        torch.testing.assert_close(reranker.score(query, passages), scores, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            reranker.encode_query(query), model.encode_texts([query], "query")[0], atol=1e-5, rtol=1e-4
        )


def test_merging_lora_keeps_the_bidirectional_layers(tiny_llama, tmp_path):
    from d2llm_st import D2LLM

    model = bidirectional_student(tiny_llama)
    passages, expected = plain_scores(model)
    model.merge_lora()
    assert not model.backbone.has_lora and bidirectional_from_layer(model.backbone.auto_model) == 1
    merged_passages, merged = plain_scores(model)  # a padded batch: the padding stays masked in both directions
    torch.testing.assert_close(merged_passages, passages, atol=1e-5, rtol=1e-4)
    for scores, reference in zip(merged, expected):
        torch.testing.assert_close(scores, reference, atol=1e-5, rtol=1e-4)

    model.save_pretrained(str(tmp_path))  # merged: the changed base weights are saved with the layer setting
    reloaded = D2LLM(str(tmp_path), device="cpu", model_kwargs=FLOAT32)
    assert bidirectional_from_layer(reloaded.backbone.auto_model) == 1 and not reloaded.backbone.has_lora
    torch.testing.assert_close(reloaded.encode_texts(PASSAGES, "passage"), passages, atol=1e-5, rtol=1e-4)

    enable_bidirectional(model.backbone.auto_model, None)  # the hooks were what made the merged model bidirectional
    assert not torch.allclose(model.encode_texts(PASSAGES, "passage"), passages, atol=1e-3)


@pytest.mark.parametrize("reference", ["bundled name", "save_base_weights=False"])
def test_a_folder_that_names_its_base_reloads_with_the_bidirectional_layers(
    tiny_llama, tmp_path, monkeypatch, reference
):
    """The shipped-model layout: adapter + configs, the base found again by name (``bundled:smollm2``, here the tiny
    model behind that name) or by its recorded path (trainer checkpoints, ``save_base_weights = False``)."""
    import json
    import os

    from sentence_transformers import SentenceTransformer

    import d2llm_st.gguf
    from d2llm_st import D2LLM
    from d2llm_st.inference import FastReranker

    monkeypatch.setattr(d2llm_st.gguf, "bundled_smollm2", lambda *args, **kwargs: tiny_llama)
    if reference == "bundled name":
        model = bidirectional_student("bundled:smollm2")
    else:
        model = bidirectional_student(tiny_llama)
        model.backbone.save_base_weights = False
    passages, expected = plain_scores(model)
    folder = str(tmp_path / "shipped")
    model.save_pretrained(folder)
    assert not os.path.exists(os.path.join(folder, "model.safetensors"))  # only what the base LLM lacks
    with open(os.path.join(folder, "d2llm_backbone_config.json")) as f:
        saved = json.load(f)
    base = "bundled:smollm2" if reference == "bundled name" else os.path.abspath(tiny_llama)
    assert saved["base_model_name_or_path"] == base and saved["bidirectional_from_layer"] == 1

    reloaded = D2LLM(folder, device="cpu", model_kwargs=FLOAT32)
    assert reloaded.backbone.has_lora and bidirectional_from_layer(reloaded.backbone.auto_model) == 1
    reloaded_passages, scores = plain_scores(reloaded)
    torch.testing.assert_close(reloaded_passages, passages, atol=1e-5, rtol=1e-4)
    for got, reference_scores in zip(scores, expected):
        torch.testing.assert_close(got, reference_scores, atol=1e-5, rtol=1e-4)
    reranker = FastReranker(reloaded)  # merges the reloaded adapter
    torch.testing.assert_close(reranker.score(QUERIES[0], passages), expected[0], atol=1e-5, rtol=1e-4)
    plain = SentenceTransformer(folder, device="cpu", model_kwargs=FLOAT32)
    assert bidirectional_from_layer(plain[0].auto_model) == 1
    torch.testing.assert_close(plain.encode(PASSAGES, convert_to_tensor=True), passages, atol=1e-5, rtol=1e-4)
