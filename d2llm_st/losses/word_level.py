"""Word-level distillation, from MD2PR (Li, Hai and Tang, "A Multi-level Distillation based Dense Passage
Retrieval Model", arXiv 2312.16821): the loss term.

Beside the sentence-level terms, the student's token states should reproduce where the teacher looks:
for each query token ``i``, the student's similarities to the passage tokens,
``softmax_j(cos(q_i, p_j) / tau)``, should match the teacher's attention between query token ``i`` and
the passage tokens ``j`` of the same pair, normalised over ``j`` (KL divergence over passage tokens).

The teacher's attention, aligned to the student's token positions, is prepared once per batch in the data
collator (:mod:`d2llm_st.training.word_alignment`); this term only compares tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ATTENTION_KEY = "word_attention"
"""The anchor feature that holds the aligned teacher attention ``[B, Lq, Lp]`` (``anchor_word_attention`` in a
collated batch)."""
MASK_KEY = "word_mask"
"""The positive feature that holds the passage's text-token mask ``[B, Lp]`` (``positive_word_mask``)."""
WORD_KEYS = (ATTENTION_KEY, MASK_KEY)
"""Feature keys of the word-level alignment: loss inputs, not model inputs."""


def word_level_loss(
    query_states: torch.Tensor,
    passage_states: torch.Tensor,
    teacher_attention: torch.Tensor,
    passage_mask: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """KL(teacher attention || student token similarities) over passage tokens, averaged over query tokens.

    ``P_t(j | i) = A[i, j] / sum_j A[i, j]``, ``P_s(j | i) = softmax_j(cos(q_i, p_j) / tau)`` over the
    passage tokens in ``passage_mask``; ``L = mean_{(b, i)} KL(P_t(. | i) || P_s(. | i))`` over the query
    tokens whose teacher row has mass.

    Args:
        query_states: ``[B, Lq, D]`` student token states of the queries (anchors).
        passage_states: ``[B, Lp, D]`` student token states of the passages (positives).
        teacher_attention: ``[B, Lq, Lp]`` non-negative teacher attention aligned to the student's token
            positions (zero rows for query positions without a teacher counterpart, e.g. prompt tokens).
        passage_mask: ``[B, Lp]`` bool, the passage positions the student's softmax runs over (text tokens).
        temperature: Divides the cosine similarities.

    Returns:
        A scalar tensor (0 when no query token has teacher attention).
    """
    if teacher_attention.shape != (*query_states.shape[:2], passage_states.shape[1]):
        raise ValueError(
            f"teacher_attention {tuple(teacher_attention.shape)} must be [B, Lq, Lp] for query_states "
            f"{tuple(query_states.shape)} and passage_states {tuple(passage_states.shape)}."
        )
    passage_mask = passage_mask.bool()
    target = teacher_attention.float().clamp(min=0) * passage_mask[:, None, :]
    mass = target.sum(dim=-1, keepdim=True)
    rows = mass.squeeze(-1) > 0
    if not rows.any():
        return query_states.sum() * 0.0
    target = target / mass.clamp(min=1e-12)
    similarity = F.normalize(query_states.float(), dim=-1) @ F.normalize(passage_states.float(), dim=-1).transpose(1, 2)
    # A finite fill, not -inf: a passage without text tokens would make a whole row -inf, and the softmax
    # backward of such a row is NaN even where the target is 0.
    masked = (similarity / temperature).masked_fill(~passage_mask[:, None, :], torch.finfo(torch.float32).min)
    kl = torch.xlogy(target, target) - target * masked.log_softmax(-1)
    return kl.sum(dim=-1)[rows].mean()
