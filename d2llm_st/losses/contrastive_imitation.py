"""Contrastive imitation (CI) term of D2LLM: a contrastive loss over an anchor's hard candidates whose
logits are weighted by the teacher's confidence.

For the candidates ``{p, n_1..n_K}`` of one anchor, the student logit ``z`` of each candidate is scaled by
``w = s`` for a positive and ``w = 1 - s`` for a negative (``s`` = teacher ``P(yes)``), so a negative the
teacher finds half relevant is pushed down less than one it rejects outright.
"""

from __future__ import annotations

import torch


def candidate_masks(
    shape: torch.Size | tuple[int, ...],
    device: torch.device,
    false_negatives: torch.Tensor | None = None,
    to_positive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, valid)`` boolean masks ``[B, 1 + K]`` for candidates ``[p, n_1..n_K]``.

    Column 0 is the positive. ``false_negatives`` (``[B, K]``, True = flagged) are removed from the
    candidates (``to_positive=False``) or counted as extra positives (``to_positive=True``).
    """
    positive = torch.zeros(shape, dtype=torch.bool, device=device)
    positive[:, 0] = True
    valid = torch.ones(shape, dtype=torch.bool, device=device)
    if false_negatives is not None:
        if to_positive:
            positive[:, 1:] |= false_negatives
        else:
            valid[:, 1:] &= ~false_negatives
    return positive, valid


def contrastive_imitation_loss(
    student_logits: torch.Tensor,
    teacher_scores: torch.Tensor,
    temperature: float = 1.0,
    positive_mask: torch.Tensor | None = None,
    valid_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """D2LLM's contrastive imitation loss.

    ``w_c = s_c`` if ``c`` is a positive else ``1 - s_c``;
    ``L = mean_anchors -log( sum_{c in P} exp(z_c w_c / tau) / sum_{c in V} exp(z_c w_c / tau) )``
    with ``P`` the positives (column 0 unless ``positive_mask`` says more) and ``V`` the valid candidates.

    Args:
        student_logits: ``[B, C]`` student IEM logits of each anchor's candidates (column 0 = positive).
        teacher_scores: ``[B, C]`` teacher ``P(yes)`` of the same pairs, in [0, 1].
        temperature: ``tau``.
        positive_mask: ``[B, C]`` bool, candidates that count as positives (default: column 0).
        valid_mask: ``[B, C]`` bool, candidates that take part (default: all).

    Returns:
        A scalar tensor.
    """
    if student_logits.shape != teacher_scores.shape or student_logits.ndim != 2:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_scores {tuple(teacher_scores.shape)} must "
            "both be [B, 1 + K]."
        )
    default_positive, default_valid = candidate_masks(student_logits.shape, student_logits.device)
    positive = default_positive if positive_mask is None else positive_mask
    valid = default_valid if valid_mask is None else valid_mask
    teacher = teacher_scores.detach().float()
    weights = torch.where(positive, teacher, 1.0 - teacher)
    logits = student_logits.float() * weights / temperature
    log_all = logits.masked_fill(~valid, float("-inf")).logsumexp(dim=1)
    log_positive = logits.masked_fill(~(positive & valid), float("-inf")).logsumexp(dim=1)
    return (log_all - log_positive).mean()
