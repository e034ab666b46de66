"""Feature imitation (FI) term of D2LLM: the IEM's hidden vectors of one anchor's candidate pairs should
relate to each other the way the teacher's features of the same pairs do.

The student's IEM hidden size and the teacher's hidden size differ, so the vectors are not compared
directly; their cosine Gram matrices over the ``1 + K`` pairs of an anchor are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_gram(vectors: torch.Tensor) -> torch.Tensor:
    """``[B, C, D]`` -> ``[B, C, C]`` cosine similarities between the ``C`` vectors of each row."""
    unit = F.normalize(vectors.float(), dim=-1)
    return unit @ unit.transpose(-1, -2)


def feature_imitation_loss(student_hidden: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """``mean_anchors || G(h) - G(f) ||_F^2`` with ``G`` the cosine Gram matrix over an anchor's pairs.

    Args:
        student_hidden: ``[B, C, h]`` IEM hidden vectors of the pairs (anchor, candidate_c).
        teacher_features: ``[B, C, H]`` teacher features of the same pairs.

    Returns:
        A scalar tensor.
    """
    if student_hidden.ndim != 3 or teacher_features.ndim != 3 or student_hidden.shape[:2] != teacher_features.shape[:2]:
        raise ValueError(
            f"student_hidden {tuple(student_hidden.shape)} and teacher_features {tuple(teacher_features.shape)} "
            "must be [B, C, h] and [B, C, H] with the same B and C."
        )
    difference = cosine_gram(student_hidden) - cosine_gram(teacher_features.detach())
    return difference.pow(2).sum(dim=(1, 2)).mean()
