"""D2LLMDistillLoss on a tiny student: wiring, gradients, trainable parameters, filtering, learning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from d2llm_st import D2LLM
from d2llm_st.losses import (
    D2LLMDistillLoss,
    contrastive_imitation_loss,
    feature_imitation_loss,
    in_batch_loss,
    rank_correlation_loss,
    rank_pairwise_loss,
)
from d2llm_st.losses.contrastive_imitation import candidate_masks
from d2llm_st.training import D2LLMDataCollator, DynamicFalseNegativeFilter, WordAlignment

PROMPTS = {"query": "query ? ", "passage": "passage ? "}
ROWS = [
    {
        "anchor": "what is the capital of france",
        "positive": "paris is the capital of france",
        "negative_1": "the capital of europe",
        "negative_2": "the cat sat on the mat",
        "label": [0.9, 0.4, 0.05],
    },
    {
        "anchor": "where does the dog play football",
        "positive": "the dog and the boy play football in the sun",
        "negative_1": "the team play soccer",
        "negative_2": "bread and pizza",
        "label": [0.8, 0.6, 0.1],
    },
    {
        "anchor": "which drug decreases the disease",
        "positive": "the drug decreases the disease in patients",
        "negative_1": "the study of the gene",
        "negative_2": "a blue sky in summer",
        "label": [0.95, 0.2, 0.02],
    },
]
TERMS = (
    "in_batch",
    "contrastive_imitation",
    "rank_imitation_pearson",
    "rank_imitation_pairwise",
    "feature_imitation",
    "word_level",
)


def make_student(path: str, lora_r: int | None = 4, seed: int = 0, train_backbone: bool = False) -> D2LLM:
    torch.manual_seed(seed)
    model = D2LLM.from_llm(
        path,
        lora_r=lora_r,
        train_backbone=train_backbone,
        lora_dropout=0.0,
        pma_heads=4,
        iem_hidden_dim=16,
        query_prompt=PROMPTS["query"],
        passage_prompt=PROMPTS["passage"],
        device="cpu",
        model_kwargs={"dtype": torch.float32},  # terms are compared with their functions to float32 precision
    )
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at 0, which would hide the gradient of A
            torch.nn.init.normal_(parameter, std=0.05)
    return model


def collate(
    model: D2LLM, rows: list[dict], with_features: bool = False, teacher=None
) -> tuple[list[dict], torch.Tensor]:
    """Features and labels as the trainer passes them; with a ``teacher``, the collator's word-level alignment."""
    rows = [dict(row) for row in rows]
    if with_features:
        generator = np.random.default_rng(0)
        for row in rows:
            row["label"] = [[score, *generator.normal(size=6)] for score in row["label"]]
    prompts = {"anchor": PROMPTS["query"], **{c: PROMPTS["passage"] for c in ("positive", "negative_1", "negative_2")}}
    alignment = None
    if teacher is not None:
        alignment = WordAlignment(teacher, model.backbone.tokenizer, model.backbone.max_seq_length, "asymmetric")
    batch = D2LLMDataCollator(preprocess_fn=model.preprocess, prompts=prompts, word_alignment=alignment)(rows)
    columns = ("anchor", "positive", "negative_1", "negative_2")
    features = [{key[len(c) + 1 :]: value for key, value in batch.items() if key.startswith(c + "_")} for c in columns]
    return features, batch["label"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread; two threads on a busy 2-core machine spin and wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def teacher(tiny_llama):
    from d2llm_st.teacher import LLMTeacher

    return LLMTeacher(tiny_llama, device="cpu", dtype="float32")


def only(term: str, **kwargs) -> dict:
    """Loss weights that switch on one term besides the always-on in-batch term."""
    weights = {"alpha": 0.0, "beta": 0.0, "gamma": 0.0, "eta": 0.0, "word_level_weight": 0.0}
    key = {
        "contrastive_imitation": "alpha",
        "rank_imitation_pearson": "beta",
        "rank_imitation_pairwise": "gamma",
        "feature_imitation": "eta",
        "word_level": "word_level_weight",
    }.get(term)
    if key:
        weights[key] = 1.0
    return {**weights, **kwargs}


def test_loss_terms_match_the_term_functions(tiny_llama):
    model = make_student(tiny_llama).eval()
    loss = D2LLMDistillLoss(model, task="asymmetric", alpha=0.5, beta=2.0, gamma=0.3, eta=0.7, temperature=0.5)
    features, labels = collate(model, ROWS, with_features=True)
    terms = loss(features, labels)
    assert set(terms) == set(TERMS) - {"word_level"}

    with torch.no_grad():
        embeddings = [model(dict(f))["sentence_embedding"] for f in features]
        anchors, candidates = embeddings[0], torch.stack(embeddings[1:], dim=1)
        z, hidden = model.iem.logits(anchors[:, None], candidates, "asymmetric", return_hidden=True)
        matrix = model.iem.pairwise_logits(anchors, candidates[:, 0], "asymmetric")
    s = labels[..., 0].float()
    easy = matrix[~torch.eye(3, dtype=torch.bool)].reshape(3, 2)
    expected = {
        "in_batch": in_batch_loss(matrix),
        "contrastive_imitation": 0.5 * contrastive_imitation_loss(z, s, temperature=0.5),
        "rank_imitation_pearson": 2.0 * rank_correlation_loss(z, s),
        "rank_imitation_pairwise": 0.3 * rank_pairwise_loss(z[:, 1:], easy, s[:, 1:]),
        "feature_imitation": 0.7 * feature_imitation_loss(hidden, labels[..., 1:].float()),
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6), name
    assert torch.allclose(torch.diagonal(matrix), z[:, 0], atol=1e-6)


# Parameters whose gradient is zero by the maths, so only rounding leaves a residue (seen up to 3e-7):
# a key bias adds the same amount to every token's attention score, which the PMA softmax cancels;
# the IEM head bias shifts every logit of an anchor alike, which softmax (in-batch), Pearson and
# pairwise differences cancel (contrastive imitation weights each logit by the teacher, so it does not).
SHIFT_INVARIANT = {"1.k_proj.bias"}
HEAD_BIAS_CANCELS = {"in_batch", "rank_imitation_pearson", "rank_imitation_pairwise"}
NO_GRADIENT = 1e-6  # the smallest real gradient here is ~1e-4


@pytest.mark.parametrize("term", TERMS)
def test_gradients_reach_lora_pma_iem_and_nothing_frozen(tiny_llama, teacher, term):
    model = make_student(tiny_llama)
    loss = D2LLMDistillLoss(model, task="asymmetric", **only(term))
    features, labels = collate(model, ROWS, with_features=term == "feature_imitation", teacher=teacher)
    loss(features, labels)[term].backward()

    grads = {name: p.grad.abs().max().item() for name, p in model.named_parameters() if p.grad is not None}
    with_grad = {name for name, value in grads.items() if value > NO_GRADIENT}
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    lora = {name for name, p in model.named_parameters() if "lora_" in name}
    pma = {name for name, _ in model.named_parameters() if name.startswith("1.")}
    iem = {name for name, _ in model.named_parameters() if name.startswith("2.asymmetric.")}
    cancelled = SHIFT_INVARIANT | ({"2.asymmetric.head.bias"} if term in HEAD_BIAS_CANCELS else set())
    assert frozen and frozen == {name for name, _ in model.named_parameters()} - lora - pma - set(
        name for name, _ in model.named_parameters() if name.startswith("2.")
    )
    assert not set(grads) & frozen  # frozen weights get no gradient at all, not a zero one
    assert lora <= with_grad, sorted(lora - with_grad)[:3]
    assert all(grads.get(name, 0.0) <= NO_GRADIENT for name in cancelled), {n: grads.get(n) for n in cancelled}
    if term == "word_level":  # token states only: PMA and IEM are not on its path
        assert not with_grad & (pma | iem)
    elif term == "feature_imitation":  # the IEM's hidden vectors, not its head
        assert (
            pma - cancelled <= with_grad and iem - {"2.asymmetric.head.weight", "2.asymmetric.head.bias"} <= with_grad
        )
    else:
        assert pma - cancelled <= with_grad and iem - cancelled <= with_grad, sorted(
            (pma | iem) - cancelled - with_grad
        )
    assert not any(name.startswith("2.symmetric.") for name in with_grad)


def test_symmetric_task_trains_the_symmetric_branch(tiny_llama):
    model = make_student(tiny_llama)
    loss = D2LLMDistillLoss(model, task="symmetric")
    features, labels = collate(model, ROWS)
    sum(loss(features, labels).values()).backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None}
    assert any(name.startswith("2.symmetric.") for name in grads)
    assert not any(name.startswith("2.asymmetric.") for name in grads)


@pytest.mark.parametrize("term", TERMS)
def test_each_term_decreases_over_a_few_steps(tiny_llama, teacher, term):
    model = make_student(tiny_llama)
    loss = D2LLMDistillLoss(model, task="asymmetric", **only(term))
    features, labels = collate(model, ROWS, with_features=term == "feature_imitation", teacher=teacher)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    values = []
    for _ in range(8):
        optimizer.zero_grad()
        value = loss([dict(f) for f in features], labels)[term]
        value.backward()
        optimizer.step()
        values.append(value.item())
    assert values[-1] < 0.9 * values[0], values


def test_trainable_parameters_are_decided_when_the_student_is_built(tiny_llama, tmp_path):
    model = make_student(tiny_llama, lora_r=None)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.pma.parameters()) and all(p.requires_grad for p in model.iem.parameters())
    trained_whole = make_student(tiny_llama, lora_r=None, train_backbone=True)
    assert all(p.requires_grad for p in trained_whole.backbone.parameters())
    with_lora = make_student(tiny_llama)
    assert {n for n, p in with_lora.backbone.named_parameters() if p.requires_grad} == {
        n for n, _ in with_lora.backbone.named_parameters() if "lora_" in n
    }
    # The setting is saved with the backbone: a reloaded student trains the same parameters.
    trained_whole.save_pretrained(str(tmp_path / "whole"))
    assert all(p.requires_grad for p in D2LLM(str(tmp_path / "whole"), device="cpu").backbone.parameters())


@pytest.mark.parametrize("train_backbone", [False, True])
@pytest.mark.parametrize("lora_r", [None, 4])
def test_building_the_loss_leaves_requires_grad_alone(tiny_llama, lora_r, train_backbone):
    model = make_student(tiny_llama, lora_r=lora_r, train_backbone=train_backbone)
    for name, parameter in model.named_parameters():  # a mix the loss would have "corrected" before
        parameter.requires_grad = hash(name) % 2 == 0
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    D2LLMDistillLoss(model, false_negative_filter=DynamicFalseNegativeFilter(), word_level_weight=0.5)
    assert {name: p.requires_grad for name, p in model.named_parameters()} == before


def test_features_enable_feature_imitation_and_missing_features_warn(tiny_llama, caplog):
    model = make_student(tiny_llama)
    loss = D2LLMDistillLoss(model)
    features, labels = collate(model, ROWS)
    with caplog.at_level(logging.WARNING):
        assert "feature_imitation" not in loss(features, labels)
    assert "no teacher features" in caplog.text
    features, labels = collate(model, ROWS, with_features=True)
    assert loss(features, labels)["feature_imitation"] > 0
    assert "feature_imitation" not in D2LLMDistillLoss(model, eta=0.0)(features, labels)


def test_bad_inputs_are_named(tiny_llama):
    model = make_student(tiny_llama)
    loss = D2LLMDistillLoss(model)
    features, labels = collate(model, ROWS)
    with pytest.raises(ValueError, match=r"\[3\] teacher scores"):
        loss(features, labels[:, :2])
    with pytest.raises(ValueError, match="label"):
        loss(features, None)
    with pytest.raises(ValueError, match="anchor, positive"):
        loss(features[:1], labels)
    with pytest.raises(ValueError, match="must be positive"):
        D2LLMDistillLoss(model, temperature=0)
    with pytest.raises(ValueError, match="Unknown task"):
        D2LLMDistillLoss(model, task="retrieval")


def test_word_level_needs_the_collators_alignment(tiny_llama, teacher, caplog):
    model = make_student(tiny_llama)
    loss = D2LLMDistillLoss(model)
    features, labels = collate(model, ROWS, teacher=teacher)
    assert "word_level" in loss(features, labels)
    stripped = [{k: v for k, v in f.items() if k not in ("word_attention", "word_mask")} for f in features]
    with caplog.at_level(logging.WARNING):
        assert "word_level" not in loss(stripped, labels)
    assert "D2LLMDataCollator" in caplog.text and "word_alignment" in caplog.text
    with pytest.raises(ValueError, match="'anchor' and 'positive' columns"):
        D2LLMDataCollator(
            preprocess_fn=model.preprocess,
            word_alignment=WordAlignment(teacher, model.backbone.tokenizer, model.backbone.max_seq_length),
        )([{"query": "the cat", "document": "a cat sat", "label": [0.9]}])


@pytest.mark.parametrize("mode", ["drop", "to_positive"])
def test_false_negatives_leave_or_join_the_positives(tiny_llama, mode):
    model = make_student(tiny_llama).eval()
    false_negative_filter = DynamicFalseNegativeFilter(mode=mode, theta=0.5)
    loss = D2LLMDistillLoss(model, false_negative_filter=false_negative_filter, beta=0.0, gamma=0.0, eta=0.0)
    features, labels = collate(model, ROWS)
    terms = loss(features, labels)
    np.testing.assert_allclose(false_negative_filter.pending[0], [0.9, 0.8, 0.95], atol=1e-6)

    with torch.no_grad():
        embeddings = [model(dict(f))["sentence_embedding"] for f in features]
        z = model.iem.logits(embeddings[0][:, None], torch.stack(embeddings[1:], dim=1), "asymmetric")
    flagged = labels[:, 1:] > 0.5  # only row 2's first negative (0.6)
    assert flagged.sum() == 1
    positive, valid = candidate_masks(z.shape, z.device, flagged, to_positive=mode == "to_positive")
    expected = contrastive_imitation_loss(z, labels, 1.0, positive, valid)
    unfiltered = contrastive_imitation_loss(z, labels)
    assert terms["contrastive_imitation"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["contrastive_imitation"].item() != pytest.approx(unfiltered.item(), rel=1e-3)


def test_in_batch_hard_negatives_widen_the_softmax_and_skip_own_false_negatives(tiny_llama):
    model = make_student(tiny_llama).eval()
    false_negative_filter = DynamicFalseNegativeFilter(theta=0.5)  # flags row 1's first negative (0.6)
    loss = D2LLMDistillLoss(
        model, in_batch_hard_negatives=True, false_negative_filter=false_negative_filter, alpha=0.0, beta=0.0
    )
    features, labels = collate(model, ROWS)
    terms = loss(features, labels)

    with torch.no_grad():
        embeddings = [model(dict(f))["sentence_embedding"] for f in features]
        anchors = embeddings[0]
        positives = model.iem.pairwise_logits(anchors, embeddings[1], "asymmetric")
        negatives = model.iem.pairwise_logits(anchors, torch.cat(embeddings[2:]), "asymmetric")  # [3, 2 x 3]
    # hand-built: log-sum-exp over 3 positives + 6 negatives, row 1 without its own negative_1 (column 1)
    expected = []
    for row in range(3):
        row_negatives = [negatives[row, column] for column in range(6) if not (row == 1 and column == 1)]
        row_logits = torch.stack([*positives[row], *row_negatives])
        expected.append(torch.logsumexp(row_logits, 0) - positives[row, row])
    assert terms["in_batch"].item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    assert terms["in_batch"].item() > in_batch_loss(positives).item()  # more negatives, larger loss


def test_gradient_checkpointing_keeps_lora_gradients(tiny_llama):
    model = make_student(tiny_llama)
    model.gradient_checkpointing_enable({"use_reentrant": False})
    loss = D2LLMDistillLoss(model)
    features, labels = collate(model, ROWS)
    sum(loss(features, labels).values()).backward()
    lora = [p for name, p in model.named_parameters() if "lora_" in name]
    assert lora and all(p.grad is not None and p.grad.abs().max() > NO_GRADIENT for p in lora)


@pytest.mark.slow
def test_word_level_alignment_with_the_real_tokenizer_and_chat_template(smollm2):
    """SmolLM2's BPE tokenizer and chat template: every student text token finds its teacher token."""
    from d2llm_st.teacher import LLMTeacher

    model = D2LLM.from_llm(smollm2, lora_r=4, max_seq_length=64, query_prompt="Query: ", passage_prompt="Passage: ")
    alignment = WordAlignment(LLMTeacher(smollm2, device="cpu"), model.backbone.tokenizer, 64, "asymmetric")
    queries = ["how are glacier caves formed?", "Who wrote   Hamlet , the play?"]
    passages = ["A glacier cave is a cave formed within the ice of a glacier.", "Hamlet is a tragedy by Shakespeare."]
    query_features = model.preprocess(queries, prompt="Query: ")
    passage_features = model.preprocess(passages, prompt="Passage: ")
    attention, passage_mask = alignment(queries, passages, query_features, passage_features, "Query: ", "Passage: ")
    tokenizer = model.backbone.tokenizer
    prompt_tokens = {"Query", ":", "Pass", "age"}
    for b in range(2):
        query_tokens = tokenizer.convert_ids_to_tokens(query_features["input_ids"][b])
        real = query_features["attention_mask"][b].bool()
        for i, token in enumerate(query_tokens):
            has_mass = attention[b, i].sum() > 0
            assert has_mass == (bool(real[i]) and token not in prompt_tokens), (b, token)
        passage_tokens = tokenizer.convert_ids_to_tokens(passage_features["input_ids"][b])
        expected = [
            bool(m) and t not in prompt_tokens for t, m in zip(passage_tokens, passage_features["attention_mask"][b])
        ]
        assert passage_mask[b].tolist() == expected
    assert len(alignment.attention["asymmetric"]._cache) == 2


def filters_of(losses: dict[str, D2LLMDistillLoss]) -> dict:
    return {name: loss.false_negative_filter for name, loss in losses.items()}


def test_filter_callback_updates_saves_and_restores_the_threshold(tiny_llama, tmp_path):
    from d2llm_st.training import FalseNegativeFilterCallback

    model = make_student(tiny_llama)
    shared = DynamicFalseNegativeFilter(quantile=0.5)
    losses = {
        "a": D2LLMDistillLoss(model, false_negative_filter=shared),
        "b": D2LLMDistillLoss(model, false_negative_filter=shared),
        "c": D2LLMDistillLoss(model, false_negative_filter=DynamicFalseNegativeFilter()),
        "d": D2LLMDistillLoss(model),
    }
    callback = FalseNegativeFilterCallback(filters_of(losses), every_n_steps=None)
    assert list(callback.filters) == ["a+b", "c"]
    features, labels = collate(model, ROWS)
    assert shared.theta is None
    losses["a"](features, labels)  # no threshold yet: nothing flagged, positives recorded
    assert shared.flagged == 0 and len(shared.pending) == 1
    callback.update(step=3)
    assert shared.theta == pytest.approx(0.9) and callback.history == {"a+b": [(3, pytest.approx(0.9))], "c": []}
    assert shared.pending == [] and losses["c"].false_negative_filter.theta is None

    losses["b"](features, labels)  # observed after the update, not yet used: kept in the checkpoint too
    callback.save_state(str(tmp_path))
    fresh = DynamicFalseNegativeFilter(quantile=0.5)
    restored = FalseNegativeFilterCallback(
        filters_of({name: D2LLMDistillLoss(model, false_negative_filter=fresh) for name in ("a", "b")})
    )
    restored.load_state(str(tmp_path))
    assert fresh.theta == pytest.approx(0.9) and restored.history["a+b"] == callback.history["a+b"]
    assert list(fresh.recent) == list(shared.recent) and len(fresh.pending) == 1
    assert fresh.update(step=4) == shared.update(step=4)  # the resumed filter continues where it stopped
    with pytest.raises(ValueError, match="every_n_steps"):
        FalseNegativeFilterCallback(filters_of(losses), every_n_steps=0)


def reference_in_loss_alignment(teacher, tokenizer, max_length, query_features, passage_features):
    """What ``D2LLMDistillLoss`` computed inside ``forward`` before the alignment moved to the collator (the old
    ``TeacherAttention.aligned``): re-tokenize ``prompt + text`` of the anchor and positive columns, find each
    text token's padded position, and map the teacher's attention onto them."""
    from d2llm_st.training.word_alignment import TeacherAttention, align_pair_attention, student_text_spans

    def positions(features):
        encoded = student_text_spans(tokenizer, features["text"], features["prompt"], max_length)
        input_ids, mask = features["input_ids"], features["attention_mask"].bool()
        rows = []
        for b, (ids, spans) in enumerate(encoded):
            found = mask[b].nonzero().squeeze(-1)
            assert input_ids[b, found].tolist() == ids
            rows.append((found.numpy(), spans))
        return rows

    attentions = TeacherAttention(teacher, "asymmetric", tokenizer)(query_features["text"], passage_features["text"])
    query_rows, passage_rows = positions(query_features), positions(passage_features)
    batch, width_q = len(attentions), query_features["input_ids"].shape[1]
    width_p = passage_features["input_ids"].shape[1]
    aligned = np.zeros((batch, width_q, width_p), dtype=np.float32)
    passage_mask = np.zeros((batch, width_p), dtype=bool)
    for b, attention in enumerate(attentions):
        (query_positions, query_spans), (passage_positions, passage_spans) = query_rows[b], passage_rows[b]
        aligned[b][np.ix_(query_positions, passage_positions)] = align_pair_attention(
            attention, query_spans, passage_spans
        )
        passage_mask[b, passage_positions] = [span is not None for span in passage_spans]
    return torch.from_numpy(aligned), torch.from_numpy(passage_mask)


# A negative longer than every positive (the positive's width must still be its own column's).
LONG_NEGATIVE_ROWS = [dict(ROWS[0], negative_2="the cat sat on the mat and the dog ran in the river and the sea")]
LONG_NEGATIVE_ROWS += ROWS[1:]


@pytest.mark.parametrize("rows", [ROWS, LONG_NEGATIVE_ROWS], ids=["positives-widest", "negative-widest"])
@pytest.mark.parametrize(("padding_side", "max_seq_length"), [("right", 512), ("left", 6)])
def test_collator_alignment_equals_the_old_in_loss_alignment(tiny_llama, teacher, padding_side, max_seq_length, rows):
    torch.manual_seed(0)
    model = D2LLM.from_llm(
        tiny_llama,
        lora_r=4,
        pma_heads=4,
        iem_hidden_dim=16,
        query_prompt=PROMPTS["query"],
        passage_prompt=PROMPTS["passage"],
        padding_side=padding_side,
        max_seq_length=max_seq_length,  # 6 truncates most texts: the alignment must follow the cut
        device="cpu",
        model_kwargs={"dtype": torch.float32},
    ).eval()
    features, labels = collate(model, rows, teacher=teacher)
    tokenizer = model.backbone.tokenizer
    old_style = [
        {**features[0], "text": [row["anchor"] for row in rows], "prompt": PROMPTS["query"]},
        {**features[1], "text": [row["positive"] for row in rows], "prompt": PROMPTS["passage"]},
    ]
    expected_attention, expected_mask = reference_in_loss_alignment(teacher, tokenizer, max_seq_length, *old_style)
    assert expected_attention.sum() > 0 and expected_mask.any()
    assert torch.equal(features[0]["word_attention"], expected_attention)
    assert torch.equal(features[1]["word_mask"], expected_mask)

    # And the loss term is the one the old loss computed from that alignment (the anchor and the positive in a
    # forward pass of their own, for their token states).
    from d2llm_st.losses import word_level_loss

    loss = D2LLMDistillLoss(model, **only("word_level"))
    with torch.no_grad():
        term = loss(features, labels)["word_level"]
        anchor = model({k: v for k, v in features[0].items() if k != "word_attention"})
        positive = model({k: v for k, v in features[1].items() if k != "word_mask"})
        old = word_level_loss(
            anchor["token_embeddings"],
            positive["token_embeddings"],
            expected_attention,
            expected_mask & positive["attention_mask"].bool(),
            loss.word_level_temperature,
        )
    assert term.item() == pytest.approx(old.item(), rel=1e-6)


FOURTH_ROW = {
    "anchor": "who cooks pizza in the kitchen",
    "positive": "the chef cooks pizza",
    "negative_1": "the man eat bread",
    "negative_2": "the river and the sea",
    "label": [0.85, 0.5, 0.03],
}


def as_process(monkeypatch, rank: int, others: torch.Tensor, shapes: list | None = None) -> None:
    """Make D2LLMDistillLoss gather as process ``rank`` of 2 whose other process holds the candidate embeddings
    ``others`` ``[B, C, d]`` (what the all-gather brings: positives ``[B, d]`` or hard negatives ``[B, K, d]``)."""
    import d2llm_st.losses.d2llm_distill as module

    def all_gather_with_grad(tensor):
        other = others[:, 0] if tensor.ndim == 2 else others[:, 1:]
        return torch.cat([tensor, other] if rank == 0 else [other, tensor])

    def all_gather(tensor):  # the shape check: both processes alike unless told otherwise
        return torch.stack([tensor, torch.tensor(shapes or tensor.tolist())]).flatten()

    monkeypatch.setattr(module, "get_world_size", lambda: 2)
    monkeypatch.setattr(module, "get_rank", lambda: rank)
    monkeypatch.setattr(module, "all_gather_with_grad", all_gather_with_grad)
    monkeypatch.setattr(module, "all_gather", all_gather)


@torch.no_grad()
def one_and_two_processes(monkeypatch, model, rows: list[dict], **kwargs) -> tuple[dict, dict]:
    """The loss terms of ``rows`` in one process, and the average of two gathering processes with half each."""
    whole = D2LLMDistillLoss(model, **kwargs)(*collate(model, rows))
    halves = [collate(model, rows[2 * rank : 2 * rank + 2]) for rank in (0, 1)]
    embedded = [D2LLMDistillLoss(model)._embed(model, features, False)[1] for features, _ in halves]
    per_process = []
    for rank in (0, 1):
        with monkeypatch.context() as patch:
            as_process(patch, rank, embedded[1 - rank])
            per_process.append(D2LLMDistillLoss(model, gather_across_devices=True, **kwargs)(*halves[rank]))
    alone = D2LLMDistillLoss(model, **kwargs)(*halves[0])  # no gathering: each process sees its own rows only
    assert alone["in_batch"].item() < per_process[0]["in_batch"].item()
    return whole, {name: (per_process[0][name] + per_process[1][name]) / 2 for name in per_process[0]}


@pytest.mark.parametrize("hard_negatives", [False, True])
def test_gathering_gives_each_process_its_share_of_the_one_process_loss(tiny_llama, monkeypatch, hard_negatives):
    """Two processes with 2 rows each, gathering, average to one process with the 4 rows: every term (the in-batch
    ones see all 4 positives, or all 4 x 3 candidates; the anchor's own positive and flagged negatives sit at its
    process's offset)."""
    model = make_student(tiny_llama).eval()
    rows = [*ROWS, FOURTH_ROW]
    generator = np.random.default_rng(0)
    featured = [dict(row, label=[[s, *generator.normal(size=6)] for s in row["label"]]) for row in rows]
    kwargs = dict(gamma=0.3, eta=0.7, in_batch_hard_negatives=hard_negatives, word_level_weight=0.0)
    whole, average = one_and_two_processes(monkeypatch, model, featured, **kwargs)
    assert set(whole) == set(average) == set(TERMS) - {"word_level"}
    for name, value in whole.items():
        assert average[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name

    # The own flagged negatives are masked at the process's offset too: the per-row terms still average to the
    # one-process ones (the RI terms, means over the valid candidates of all rows, would not).
    flagged = dict(kwargs, false_negative_filter=DynamicFalseNegativeFilter(theta=0.45))
    whole, average = one_and_two_processes(monkeypatch, model, rows, **flagged)
    for name in ("in_batch", "contrastive_imitation"):
        assert average[name].item() == pytest.approx(whole[name].item(), rel=1e-5), name


def test_gathering_refuses_processes_on_different_datasets(tiny_llama, monkeypatch):
    model = make_student(tiny_llama).eval()
    loss = D2LLMDistillLoss(model, gather_across_devices=True, word_level_weight=0.0)
    features, labels = collate(model, ROWS)
    others = torch.zeros(3, 3, model.iem.embedding_dim)
    as_process(monkeypatch, 0, others, shapes=[3, 2, model.iem.embedding_dim, 1])
    with pytest.raises(ValueError, match=r"rank 0: 3 rows x 3 candidates \(asymmetric\); rank 1: 3 rows x 2 candid"):
        loss(features, labels)
