"""Rank imitation (RI) terms of D2LLM: make the student order candidates the way the teacher does.

- :func:`rank_correlation_loss` (RI a): ``1 - Pearson(z, s)`` over one anchor's candidates
  ``{p, n_1..n_K}``, so the student's logits follow the teacher's scores linearly, not only in argmax.
- :func:`rank_pairwise_loss` (RI b): every hard negative should score above every easy in-batch
  negative, pushed in proportion to how much more relevant the teacher finds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rank_correlation_loss(
    student_logits: torch.Tensor,
    teacher_scores: torch.Tensor,
    valid_mask: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """``mean_anchors (1 - Pearson(z, s))`` over each anchor's valid candidates.

    Args:
        student_logits: ``[B, C]`` student logits ``z``.
        teacher_scores: ``[B, C]`` teacher scores ``s``.
        valid_mask: ``[B, C]`` bool, candidates that take part (default: all). Anchors with fewer than
            two valid candidates have no correlation and are left out of the mean.
        eps: Keeps the denominator positive; a row where the teacher gives every candidate the same score
            has correlation 0 (loss 1).

    Returns:
        A scalar tensor (0 when no anchor has two valid candidates).
    """
    if student_logits.shape != teacher_scores.shape or student_logits.ndim != 2:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_scores {tuple(teacher_scores.shape)} must "
            "both be [B, C]."
        )
    valid = torch.ones_like(student_logits, dtype=torch.bool) if valid_mask is None else valid_mask
    weight = valid.float()
    count = weight.sum(dim=1)
    rows = count >= 2
    if not rows.any():
        return student_logits.sum() * 0.0
    z, s = student_logits.float(), teacher_scores.detach().float()
    z_centered = (z - (z * weight).sum(1, keepdim=True) / count.clamp(min=1)[:, None]) * weight
    s_centered = (s - (s * weight).sum(1, keepdim=True) / count.clamp(min=1)[:, None]) * weight
    covariance = (z_centered * s_centered).sum(1)
    # sqrt(var_z * var_s + eps^2), not sqrt(var_z) * sqrt(var_s) + eps: the gradient of sqrt at 0 is infinite,
    # and rows with constant logits (e.g. one valid candidate) would turn every gradient into NaN.
    norm = (z_centered.pow(2).sum(1) * s_centered.pow(2).sum(1) + eps**2).sqrt()
    correlation = covariance / norm
    return (1.0 - correlation)[rows].mean()


def rank_pairwise_loss(
    hard_logits: torch.Tensor,
    easy_logits: torch.Tensor,
    hard_scores: torch.Tensor,
    easy_scores: torch.Tensor | float = 0.0,
    hard_mask: torch.Tensor | None = None,
    easy_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Teacher-weighted pairwise loss pushing hard negatives above easy negatives.

    ``L = mean_{b, h, e} max(0, s_bh - s_be) * -log sigmoid(z_bh - z_be)``, the mean taken over the
    valid (anchor, hard, easy) triples.

    Args:
        hard_logits: ``[B, K]`` student logits of each anchor's hard negatives.
        easy_logits: ``[B, E]`` student logits of each anchor's easy negatives (e.g. the other anchors'
            positives in the batch).
        hard_scores: ``[B, K]`` teacher scores of the hard negatives.
        easy_scores: ``[B, E]`` teacher scores of the easy negatives, or one number for all of them
            (the D2LLM losses use 0: a random in-batch text is irrelevant to the anchor).
        hard_mask: ``[B, K]`` bool, hard negatives that take part (default: all).
        easy_mask: ``[B, E]`` bool, easy negatives that take part (default: all).

    Returns:
        A scalar tensor (0 when no triple is valid).
    """
    if hard_logits.shape != hard_scores.shape:
        raise ValueError(
            f"hard_logits {tuple(hard_logits.shape)} and hard_scores {tuple(hard_scores.shape)} must match."
        )
    easy_scores = torch.as_tensor(easy_scores, dtype=torch.float32, device=easy_logits.device)
    easy_scores = easy_scores.expand_as(easy_logits)
    margin = (hard_scores.detach().float()[:, :, None] - easy_scores.detach()[:, None, :]).clamp(min=0)
    difference = hard_logits.float()[:, :, None] - easy_logits.float()[:, None, :]
    valid = torch.ones_like(margin, dtype=torch.bool)
    if hard_mask is not None:
        valid = valid & hard_mask[:, :, None]
    if easy_mask is not None:
        valid = valid & easy_mask[:, None, :]
    if not valid.any():
        return difference.sum() * 0.0
    return (margin * F.softplus(-difference))[valid].mean()
