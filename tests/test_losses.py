"""D2LLM loss terms: hand-computed values, masks, and the combined loss's wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from d2llm_st.losses import (
    contrastive_imitation_loss,
    feature_imitation_loss,
    in_batch_loss,
    rank_correlation_loss,
    rank_pairwise_loss,
    word_level_loss,
)
from d2llm_st.losses.contrastive_imitation import candidate_masks
from d2llm_st.teacher.base import PairAttention
from d2llm_st.training.word_alignment import align_pair_attention, check_same_tokenizer, student_text_spans


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_in_batch_loss_hand_computed():
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    # Each row: -log(e^a / (e^a + e^b)) = log(1 + e^(b - a)), with b - a = -2 in both rows.
    assert in_batch_loss(logits).item() == pytest.approx(softplus(-2.0), abs=1e-6)
    assert in_batch_loss(logits, temperature=2.0).item() == pytest.approx(softplus(-1.0), abs=1e-6)
    # Extra columns are further negatives.
    extra = torch.tensor([[2.0, 0.0, 2.0], [1.0, 3.0, 3.0]])
    assert in_batch_loss(extra).item() == pytest.approx(
        (math.log(math.exp(2) * 2 + 1) - 2 + math.log(math.exp(1) + 2 * math.exp(3)) - 3) / 2, abs=1e-6
    )
    # Gathered from several processes: this batch's positives start at its offset (rows of the process before).
    shifted = torch.tensor([[0.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    assert in_batch_loss(shifted, offset=1).item() == pytest.approx(
        (math.log(2 + math.exp(2)) - 2 + math.log(1 + math.exp(1) + math.exp(3)) - 3) / 2, abs=1e-6
    )
    with pytest.raises(ValueError, match=r"B, N >= offset \+ B"):
        in_batch_loss(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="offset 2"):
        in_batch_loss(torch.zeros(2, 3), offset=2)


def test_contrastive_imitation_hand_computed():
    z = torch.tensor([[2.0, 1.0, -1.0]])
    s = torch.tensor([[0.8, 0.3, 0.1]])
    # Weights: s for the positive, 1 - s for negatives -> z * w = [1.6, 0.7, -0.9].
    expected = math.log(math.exp(1.6) + math.exp(0.7) + math.exp(-0.9)) - 1.6
    assert contrastive_imitation_loss(z, s).item() == pytest.approx(expected, abs=1e-6)
    expected_tau = math.log(math.exp(3.2) + math.exp(1.4) + math.exp(-1.8)) - 3.2
    assert contrastive_imitation_loss(z, s, temperature=0.5).item() == pytest.approx(expected_tau, abs=1e-6)

    flagged = torch.tensor([[True, False]])
    positive, valid = candidate_masks(z.shape, z.device, flagged, to_positive=False)
    dropped = math.log(math.exp(1.6) + math.exp(-0.9)) - 1.6
    assert contrastive_imitation_loss(z, s, 1.0, positive, valid).item() == pytest.approx(dropped, abs=1e-6)
    positive, valid = candidate_masks(z.shape, z.device, flagged, to_positive=True)
    # Moved to the positives: its weight becomes s = 0.3 -> z * w = 0.3, and it counts in the numerator.
    moved = math.log(math.exp(1.6) + math.exp(0.3) + math.exp(-0.9)) - math.log(math.exp(1.6) + math.exp(0.3))
    assert contrastive_imitation_loss(z, s, 1.0, positive, valid).item() == pytest.approx(moved, abs=1e-6)


def test_rank_correlation_hand_computed():
    s = torch.tensor([[0.1, 0.2, 0.3]])
    assert rank_correlation_loss(torch.tensor([[1.0, 2.0, 3.0]]), s).item() == pytest.approx(0.0, abs=1e-6)
    assert rank_correlation_loss(torch.tensor([[3.0, 2.0, 1.0]]), s).item() == pytest.approx(2.0, abs=1e-6)
    # Centered z = [-1, 1, 0], s = [-0.1, 0, 0.1]: r = 0.1 / (sqrt(2) * sqrt(0.02)) = 0.5.
    z = torch.tensor([[1.0, 3.0, 2.0]])
    assert rank_correlation_loss(z, s).item() == pytest.approx(0.5, abs=1e-6)
    # Masking the last candidate leaves [1, 3] vs [0.1, 0.2]: r = 1.
    valid = torch.tensor([[True, True, False]])
    assert rank_correlation_loss(z, s, valid).item() == pytest.approx(0.0, abs=1e-6)
    # A row with a single valid candidate has no correlation and leaves the mean.
    two_rows = rank_correlation_loss(torch.cat([z, z]), torch.cat([s, s]), torch.tensor([[1, 1, 1], [1, 0, 0]]).bool())
    assert two_rows.item() == pytest.approx(0.5, abs=1e-6)


def test_rank_pairwise_hand_computed():
    hard, easy, hard_scores = torch.tensor([[1.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([[0.6]])
    # Margins vs s_easy = 0: 0.6 for both; -log sigmoid(1) and -log sigmoid(-1).
    expected = 0.6 * (softplus(-1.0) + softplus(1.0)) / 2
    assert rank_pairwise_loss(hard, easy, hard_scores).item() == pytest.approx(expected, abs=1e-6)
    # An easy negative the teacher scores above the hard one contributes nothing (margin clamped at 0).
    per_easy = rank_pairwise_loss(hard, easy, hard_scores, torch.tensor([[0.0, 0.7]]))
    assert per_easy.item() == pytest.approx(0.6 * softplus(-1.0) / 2, abs=1e-6)
    masked = rank_pairwise_loss(hard, easy, hard_scores, hard_mask=torch.tensor([[False]]))
    assert masked.item() == 0.0


def test_feature_imitation_hand_computed():
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # orthogonal -> Gram = identity
    teacher = torch.tensor([[[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])  # parallel -> Gram = all ones
    assert feature_imitation_loss(student, teacher).item() == pytest.approx(2.0, abs=1e-6)
    assert feature_imitation_loss(teacher[..., :2] * 3, teacher).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same B and C"):
        feature_imitation_loss(student, teacher[:, :1])


def test_word_level_loss_hand_computed():
    query = torch.tensor([[[1.0, 0.0]]])
    passage = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    attention = torch.tensor([[[3.0, 1.0]]])
    mask = torch.tensor([[True, True]])
    # Student: softmax([cos 1, cos 0] / 1); teacher: [0.75, 0.25].
    p0, p1 = math.e / (math.e + 1), 1 / (math.e + 1)
    expected = 0.75 * math.log(0.75 / p0) + 0.25 * math.log(0.25 / p1)
    assert word_level_loss(query, passage, attention, mask, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)
    # Only the first passage token in the mask: both distributions are one-hot -> KL 0.
    single = word_level_loss(query, passage, attention, torch.tensor([[True, False]]), temperature=1.0)
    assert single.item() == pytest.approx(0.0, abs=1e-6)
    # Query tokens without teacher attention (e.g. prompt tokens) leave the mean.
    two_queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    padded = torch.tensor([[[3.0, 1.0], [0.0, 0.0]]])
    assert word_level_loss(two_queries, passage, padded, mask, 1.0).item() == pytest.approx(expected, abs=1e-6)


def test_student_text_spans_skip_the_prompt(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    [(ids, spans)] = student_text_spans(tokenizer, ["the cat sat"], "query ? ", max_length=32)
    assert tokenizer.convert_ids_to_tokens(ids) == ["query", "?", "the", "cat", "sat"]
    assert spans == [None, None, (0, 3), (4, 7), (8, 11)]
    [(ids, spans)] = student_text_spans(tokenizer, ["the cat sat"], None, max_length=2)
    assert spans == [(0, 3), (4, 7)]


def test_align_pair_attention_maps_teacher_tokens_onto_student_tokens():
    # Teacher: query "ab cd" as tokens "ab", "cd"; passage "xyz" as "x", "yz".
    attention = PairAttention(
        weights=np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32),
        tokens_a=["ab", "cd"],
        tokens_b=["x", "yz"],
        token_ids_a=[1, 2],
        token_ids_b=[3, 4],
        offsets_a=[(0, 2), (3, 5)],
        offsets_b=[(0, 1), (1, 3)],
    )
    # Student: a prompt token, then "ab", "cd"; passage as one token "xyz" (merges both teacher tokens).
    aligned = align_pair_attention(attention, [None, (0, 2), (3, 5)], [(0, 3)])
    np.testing.assert_allclose(aligned, [[0.0], [0.3], [0.7]], atol=1e-6)


def test_word_level_refuses_a_teacher_with_another_tokenizer(tiny_llama, tiny_qwen2):
    from transformers import AutoTokenizer

    with pytest.raises(ValueError, match="share one tokenizer"):
        check_same_tokenizer(AutoTokenizer.from_pretrained(tiny_qwen2), AutoTokenizer.from_pretrained(tiny_llama))
    check_same_tokenizer(AutoTokenizer.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(tiny_llama))


def test_term_shapes_are_checked():
    with pytest.raises(ValueError, match="must"):
        contrastive_imitation_loss(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="must"):
        rank_correlation_loss(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="must match"):
        rank_pairwise_loss(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="teacher_attention"):
        word_level_loss(torch.zeros(1, 2, 4), torch.zeros(1, 3, 4), torch.zeros(1, 3, 2), torch.ones(1, 3).bool())


def test_degenerate_rows_give_finite_gradients():
    """Rows a false-negative filter or truncation can produce: no NaN may reach the weights."""
    z = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], requires_grad=True)
    s = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.4, 0.2]])
    valid = torch.tensor([[True, True, True], [True, False, False]])  # row 2: every negative dropped
    loss = rank_correlation_loss(z, s, valid) + rank_correlation_loss(z, s)  # row 2 of the second: constant z
    loss.backward()
    assert torch.isfinite(z.grad).all()

    query = torch.randn(2, 2, 4, requires_grad=True)
    passage = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False]])  # row 2: a passage without text tokens
    attention = torch.rand(2, 2, 3)
    value = word_level_loss(query, passage, attention, mask)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(query.grad).all() and torch.isfinite(passage.grad).all()
