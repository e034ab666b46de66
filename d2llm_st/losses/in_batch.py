"""In-batch contrastive term of D2LLM: every anchor against every positive in the batch.

The ``B x B`` IEM logit matrix has the anchor's own positive on the diagonal; the other rows'
positives are easy negatives. This is the term that teaches the student to separate relevant from
random texts before the imitation terms refine the order among hard candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_loss(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy over an in-batch score matrix whose positives sit on the diagonal.

    ``L = mean_i -log softmax(logits[i] / temperature)[i]``

    Args:
        logits: ``[B, N]`` student IEM logits, ``N >= B``; column ``i`` holds row ``i``'s positive
            (extra columns beyond ``B`` are further negatives).
        temperature: Divides the logits before the softmax.

    Returns:
        A scalar tensor.
    """
    if logits.ndim != 2 or logits.shape[1] < logits.shape[0]:
        raise ValueError(f"in_batch_loss needs a [B, N >= B] logit matrix, got shape {tuple(logits.shape)}.")
    targets = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits.float() / temperature, targets)
