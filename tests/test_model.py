"""The D2LLM student as a sentence-transformers model: round trips, LoRA, PMA masking, IEM symmetry, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from d2llm_st import D2LLM, IEM, LLMBackbone, PMAPooling

TEXTS = ["the cat sat on the mat .", "a dog ran to the river", "what is the capital of france ?"]
PAIRS = [("what is the capital of france ?", "paris is the capital of france ."), ("the cat sat", "a bird flew")]


def build(path: str, **kwargs) -> D2LLM:
    torch.manual_seed(0)
    kwargs.setdefault("pma_heads", 4)
    kwargs.setdefault("iem_hidden_dim", 16)
    return D2LLM.from_llm(path, query_prompt="query : ", passage_prompt="passage : ", device="cpu", **kwargs)


def train_a_little(model: D2LLM) -> None:
    """Move LoRA / PMA / IEM away from their init so a round trip compares non-trivial weights."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))


@pytest.mark.parametrize(("lora_r", "iem_cosine_residual"), [(None, False), (4, False), (4, True)])
def test_save_load_round_trip(tiny_llm, tmp_path, lora_r, iem_cosine_residual):
    model = build(tiny_llm, lora_r=lora_r, iem_cosine_residual=iem_cosine_residual)
    train_a_little(model)
    embeddings = model.encode(TEXTS, convert_to_tensor=True)
    scores = {task: model.predict(PAIRS, task=task) for task in ("symmetric", "asymmetric")}
    model.save_pretrained(str(tmp_path))

    assert os.path.isdir(tmp_path / "adapter") == (lora_r is not None)
    with open(tmp_path / "modules.json") as f:
        assert [m["type"] for m in json.load(f)] == [
            "d2llm_st.modules.backbone.LLMBackbone",
            "d2llm_st.modules.pma.PMAPooling",
            "d2llm_st.modules.iem.IEM",
        ]

    plain = SentenceTransformer(str(tmp_path), device="cpu")  # no trust_remote_code
    assert type(plain) is SentenceTransformer and isinstance(plain[0], LLMBackbone)
    torch.testing.assert_close(plain.encode(TEXTS, convert_to_tensor=True), embeddings, atol=1e-5, rtol=0)

    reloaded = D2LLM(str(tmp_path), device="cpu")
    assert reloaded.prompts["query"] == "query : "
    torch.testing.assert_close(reloaded.encode(TEXTS, convert_to_tensor=True), embeddings, atol=1e-5, rtol=0)
    for task, expected in scores.items():
        np.testing.assert_allclose(reloaded.predict(PAIRS, task=task), expected, atol=1e-5)
    assert reloaded.backbone.has_lora == (lora_r is not None)
    assert reloaded.iem.cosine_residual == iem_cosine_residual


def test_saved_adapter_does_not_point_at_this_machine(tiny_llama, tmp_path):
    build(tiny_llama, lora_r=4).save_pretrained(str(tmp_path))
    with open(tmp_path / "adapter" / "adapter_config.json") as f:
        assert json.load(f)["base_model_name_or_path"] is None


def test_lora_params_are_the_only_trainable_llm_params(tiny_llm):
    model = build(tiny_llm, lora_r=4)
    trainable = [name for name, p in model.backbone.named_parameters() if p.requires_grad]
    frozen = [name for name, p in model.backbone.named_parameters() if not p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert frozen and not any("lora_" in name for name in frozen)
    assert all(p.requires_grad for p in model.pma.parameters())
    assert all(p.requires_grad for p in model.iem.parameters())


def test_merge_lora_keeps_embeddings(tiny_llama, tmp_path):
    model = build(tiny_llama, lora_r=4, model_kwargs={"dtype": torch.float32})  # exact merge (bf16 rounds it)
    train_a_little(model)
    before = model.encode(TEXTS, convert_to_tensor=True)
    model.merge_lora()
    assert not model.backbone.has_lora
    torch.testing.assert_close(model.encode(TEXTS, convert_to_tensor=True), before, atol=1e-5, rtol=0)
    model.save_pretrained(str(tmp_path))
    assert not os.path.isdir(tmp_path / "adapter")
    reloaded = D2LLM(str(tmp_path), device="cpu", model_kwargs={"dtype": torch.float32})
    torch.testing.assert_close(reloaded.encode(TEXTS, convert_to_tensor=True), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("lora_r", [4, None])
def test_for_inference_loads_merged_with_the_same_embeddings(tiny_llama, tmp_path, lora_r):
    model = build(tiny_llama, lora_r=lora_r, model_kwargs={"dtype": torch.float32})
    train_a_little(model)  # a trained adapter: merged or not matters
    model.save_pretrained(str(tmp_path))
    before = model.encode(TEXTS, convert_to_tensor=True)
    served = D2LLM.for_inference(str(tmp_path), device="cpu", model_kwargs={"dtype": torch.float32})
    assert not served.backbone.has_lora
    torch.testing.assert_close(served.encode(TEXTS, convert_to_tensor=True), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_embedding_ignores_padding(tiny_llm, padding_side):
    # float32: bf16 matrix kernels round differently for different padded shapes
    model = build(tiny_llm, padding_side=padding_side, lora_r=4, model_kwargs={"dtype": torch.float32})
    train_a_little(model)
    short = "a dog"
    alone = model.encode([short], convert_to_tensor=True)
    long_text = " ".join(["the cat sat on the mat"] * 8)
    batch = model.encode([short, long_text], convert_to_tensor=True, batch_size=2)
    features = model.preprocess([short, long_text])
    assert features["attention_mask"][0].sum() < features["attention_mask"][1].sum()  # really padded
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=0)


def test_pma_masks_padding_tokens():
    torch.manual_seed(0)
    pma = PMAPooling(16, num_heads=4, num_seeds=2, output_dim=8)
    tokens = torch.randn(1, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    garbage = tokens.clone()
    garbage[:, 3:] = 100 * torch.randn(1, 2, 16)
    torch.testing.assert_close(pma.pool(tokens, mask), pma.pool(garbage, mask))
    torch.testing.assert_close(pma.pool(tokens, mask), pma.pool(tokens[:, :3], mask[:, :3]))
    assert pma.pool(tokens, mask).shape == (1, 8) and pma.get_embedding_dimension() == 8


def test_pma_attention_scale_variants_differ():
    torch.manual_seed(0)
    tokens, mask = torch.randn(2, 4, 16), torch.ones(2, 4, dtype=torch.long)
    standard = PMAPooling(16, num_heads=4)
    official = PMAPooling(16, num_heads=4, attention_scale="model_dim")
    official.load_state_dict(standard.state_dict())
    assert not torch.allclose(standard.pool(tokens, mask), official.pool(tokens, mask))
    with pytest.raises(ValueError, match="attention_scale"):
        PMAPooling(16, attention_scale="sqrt")
    with pytest.raises(ValueError, match="num_heads"):
        PMAPooling(18, num_heads=4)


def test_iem_symmetric_branch_is_order_insensitive():
    torch.manual_seed(0)
    iem = IEM(16, hidden_dim=8)
    a, b = torch.randn(5, 16), torch.randn(5, 16)
    torch.testing.assert_close(iem.logits(a, b, "symmetric"), iem.logits(b, a, "symmetric"))
    assert not torch.allclose(iem.logits(a, b, "asymmetric"), iem.logits(b, a, "asymmetric"))
    matrix = iem.pairwise_logits(a, b, "asymmetric")
    assert matrix.shape == (5, 5)
    torch.testing.assert_close(matrix.diagonal(), iem.logits(a, b, "asymmetric"))


def test_iem_cosine_residual_adds_a_learnable_scaled_cosine():
    torch.manual_seed(0)
    plain = IEM(16, hidden_dim=8)
    residual = IEM(16, hidden_dim=8, cosine_residual=True, cosine_scale=5.0)
    residual.load_state_dict(plain.state_dict(), strict=False)  # same MLP weights, plus the two scales
    a, b = torch.randn(5, 16), torch.randn(5, 16)
    for task in ("symmetric", "asymmetric"):
        expected = plain.logits(a, b, task) + 5.0 * torch.nn.functional.cosine_similarity(a, b, dim=-1)
        torch.testing.assert_close(residual.logits(a, b, task), expected)
    torch.testing.assert_close(residual.logits(a, b, "symmetric"), residual.logits(b, a, "symmetric"))

    residual.logits(a, b, "asymmetric").sum().backward()
    assert residual.asymmetric.cosine_scale.grad is not None and residual.symmetric.cosine_scale.grad is None
    assert plain.asymmetric.cosine_scale is None


def test_predict_symmetric_is_order_insensitive(tiny_llama):
    model = build(tiny_llama, symmetric_prompt="text : ")
    train_a_little(model)
    forward = model.predict(PAIRS, task="symmetric")
    backward = model.predict([(b, a) for a, b in PAIRS], task="symmetric")
    np.testing.assert_allclose(forward, backward, atol=1e-6)
    assert ((forward > 0) & (forward < 1)).all()


def test_score_shapes_match_predict(tiny_llama):
    model = build(tiny_llama)
    train_a_little(model)
    query = model.encode_texts([PAIRS[0][0]], "query")
    passages = model.encode_texts([PAIRS[0][1], PAIRS[1][1], "the sun"], "passage")
    one_vs_many = model.score(query[0], passages)
    assert one_vs_many.shape == (3,)
    torch.testing.assert_close(model.score(query, passages), one_vs_many)
    row_wise = model.score(query.expand(3, -1), passages)
    torch.testing.assert_close(row_wise, one_vs_many)
    per_query = model.score(query.expand(2, -1), passages[None].expand(2, -1, -1))
    assert per_query.shape == (2, 3)
    expected = model.predict([(PAIRS[0][0], PAIRS[0][1])], task="asymmetric")
    np.testing.assert_allclose(one_vs_many[0].item(), expected[0], atol=1e-5)
    logits = model.score(query[0], passages, apply_sigmoid=False)
    torch.testing.assert_close(logits.sigmoid(), one_vs_many)


def test_clear_errors(tiny_llama, minilm):
    model = build(tiny_llama)
    with pytest.raises(ValueError, match="empty"):
        model.encode([])
    with pytest.raises(ValueError, match="empty"):
        model.predict([])
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        model.encode(["the cat", 3])
    with pytest.raises(TypeError, match=r"pairs\[:, 1\]\[0\]"):
        model.predict([("the cat", None)])
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        model.predict(["the cat"])
    with pytest.raises(ValueError, match="Unknown task 'ranking'"):
        model.predict(PAIRS, task="ranking")
    embeddings = model.encode_texts(["the cat", "a dog"], "passage")
    with pytest.raises(ValueError, match="Unknown task"):
        model.score(embeddings, embeddings, task="sts")
    with pytest.raises(ValueError, match="as many queries as passages"):
        model.score(embeddings, embeddings[:1].expand(3, -1))
    with pytest.raises(ValueError, match="size 32"):
        model.score(embeddings[:, :8], embeddings[:, :8])
    with pytest.raises(ValueError, match="not a decoder-only causal LM"):
        D2LLM.from_llm(minilm)


@pytest.mark.slow
def test_real_smollm2_student_round_trip_and_ranking(smollm2, tmp_path):
    """The real SmolLM2-135M: build, save, reload with plain SentenceTransformer, same scores."""
    torch.manual_seed(0)
    model = D2LLM.from_llm(smollm2, lora_r=8, device="cpu", max_seq_length=64)
    assert model.get_embedding_dimension() == 576
    query = "What is the capital of France?"
    passages = ["Paris is the capital and largest city of France.", "Bananas are rich in potassium."]
    scores = model.score(model.encode_texts([query], "query")[0], model.encode_texts(passages, "passage"))
    model.save_pretrained(str(tmp_path))
    plain = SentenceTransformer(str(tmp_path), device="cpu")
    torch.testing.assert_close(
        plain.encode(passages, prompt_name="document", convert_to_tensor=True),
        model.encode_texts(passages, "passage"),
        atol=1e-5,
        rtol=0,
    )
    reloaded = D2LLM(str(tmp_path), device="cpu")
    scores_after = reloaded.score(
        reloaded.encode_texts([query], "query")[0], reloaded.encode_texts(passages, "passage")
    )
    torch.testing.assert_close(scores_after, scores, atol=1e-5, rtol=0)
    # Real token states are informative even before training: paraphrases are closer than unrelated texts.
    a, b, c = model.encode(
        ["A man is playing a guitar.", "A man plays the guitar.", "The stock market fell sharply today."],
        convert_to_tensor=True,
        normalize_embeddings=True,
    )
    assert (a @ b) > (a @ c)


def test_empty_none_and_non_text_inputs_name_the_argument(tiny_llama):
    model = build(tiny_llama)
    for call, error, message in [
        (lambda: model.encode(""), ValueError, r"inputs is an empty text \(''\)"),
        (lambda: model.encode(["the cat", "  "]), ValueError, r"inputs\[1\] is an empty text"),
        (lambda: model.encode(None), TypeError, "inputs must be a list of strings, got NoneType"),
        (lambda: model.encode(5), TypeError, "inputs must be a list of strings, got int"),
        (lambda: model.encode_texts([""], "query"), ValueError, r"texts\[0\] is an empty text"),
        (lambda: model.encode_texts(None, "query"), TypeError, "texts must be a list of strings"),
        (lambda: model.predict(5), TypeError, "pairs must be a list of .* got int"),
        (lambda: model.predict(None), TypeError, "pairs must be a list of .* got NoneType"),
        (lambda: model.predict([("the cat", "")]), ValueError, r"pairs\[:, 1\]\[0\] is an empty text"),
        (lambda: model.score(None, torch.zeros(2, 32)), TypeError, "query_embeddings must be a tensor"),
        (lambda: model.score(torch.zeros(32), "abc"), TypeError, "passage_embeddings must be a tensor"),
        (lambda: model.score(torch.zeros(32), [["a", "b"]]), TypeError, "passage_embeddings must be a tensor"),
    ]:
        with pytest.raises(error, match=message):
            call()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pma_heads": 0}, ValueError, "pma_heads must be >= 1, got 0"),
        ({"pma_seeds": -1}, ValueError, "pma_seeds must be >= 1, got -1"),
        ({"iem_hidden_dim": 0}, ValueError, "iem_hidden_dim must be >= 1, got 0"),
        ({"max_seq_length": 0}, ValueError, "max_seq_length must be >= 1, got 0"),
        ({"lora_r": 0}, ValueError, "lora_r must be >= 1, got 0"),
        ({"iem_dropout": 1.5}, ValueError, r"iem_dropout must be a finite number >= 0 and < 1, got 1.5"),
        ({"pma_heads": 2.5}, TypeError, "pma_heads must be a whole number"),
        ({"query_prompt": 5}, TypeError, "query_prompt must be a string or None, got int"),
        ({"pma_attention_scale": "sqrt"}, ValueError, "pma_attention_scale must be one of"),
    ],
)
def test_invalid_constructor_arguments_are_named_before_the_llm_loads(kwargs, error, message, tmp_path):
    with pytest.raises(error, match=message):  # a path that does not exist: the check comes first
        D2LLM.from_llm(str(tmp_path / "no-llm-here"), **kwargs)


def test_module_constructors_check_their_sizes():
    with pytest.raises(ValueError, match="num_heads must be >= 1, got 0"):  # was a ZeroDivisionError
        PMAPooling(32, num_heads=0)
    with pytest.raises(ValueError, match="output_dim must be >= 1"):
        PMAPooling(32, num_heads=4, output_dim=0)
    with pytest.raises(ValueError, match="hidden_dim must be >= 1, got 0"):  # would score every pair 0.5
        IEM(8, hidden_dim=0)
    with pytest.raises(ValueError, match="embedding_dim must be >= 1"):
        IEM(-8)
    with pytest.raises(ValueError, match="dropout must be a finite number >= 0 and < 1"):
        IEM(8, dropout=-0.1)


def test_truncation_is_warned_about_on_every_call_with_a_count(tiny_llama, caplog):
    model = build(tiny_llama, max_seq_length=8)
    long = "the cat sat on the mat and the dog ran to the river in the rain"
    for _ in range(2):
        caplog.clear()
        with caplog.at_level("WARNING", logger="d2llm_st.modules.backbone"):
            model.encode([long, "the cat", long])
        assert [r.getMessage()[:16] for r in caplog.records] == ["2 of 3 text(s) a"], caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="d2llm_st.modules.backbone"):
        model.encode(["the cat", "a dog"])
    assert not caplog.records


@pytest.fixture
def saved_student(tiny_llama, tmp_path) -> str:
    path = str(tmp_path / "student")
    build(tiny_llama, lora_r=4).save_pretrained(path)
    return path


def test_non_d2llm_folders_are_refused_naming_what_they_are(tiny_llama, minilm):
    with pytest.raises(
        ValueError, match=r"is a sentence-transformers bi-encoder \(Transformer -> Pooling -> Normalize"
    ):
        D2LLM(minilm)
    with pytest.raises(ValueError, match=r"is a causal LM \(LlamaForCausalLM\), not a saved D2LLM: .*from_llm"):
        D2LLM(tiny_llama)


@pytest.mark.parametrize("damage", ["iem_folder", "iem_entry", "pma_weights", "pma_config"])
def test_a_damaged_d2llm_folder_names_the_missing_piece(saved_student, damage):
    import shutil

    pma = os.path.join(saved_student, "1_PMAPooling")
    if damage == "iem_folder":
        shutil.rmtree(os.path.join(saved_student, "2_IEM"))
        message = r"2_IEM is missing: the folder of the IEM module \('2_IEM' in modules.json\)"
    elif damage == "iem_entry":
        modules_path = os.path.join(saved_student, "modules.json")
        modules = json.load(open(modules_path))
        json.dump([m for m in modules if not m["type"].endswith(".IEM")], open(modules_path, "w"))
        message = r"modules.json has no IEM entry \(d2llm_st.modules.iem.IEM\)"
    elif damage == "pma_weights":
        os.remove(os.path.join(pma, "model.safetensors"))
        message = r"1_PMAPooling has no model.safetensors or pytorch_model.bin: the PMAPooling module's weights"
    else:
        os.remove(os.path.join(pma, "config.json"))
        message = r"1_PMAPooling has no config.json: the PMAPooling module's config"
    with pytest.raises(ValueError, match=message):
        D2LLM(saved_student, device="cpu")
