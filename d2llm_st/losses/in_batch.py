"""In-batch contrastive term of D2LLM: every anchor against every positive in the batch.

The ``B x B`` IEM logit matrix has the anchor's own positive on the diagonal; the other rows'
positives are easy negatives. This is the term that teaches the student to separate relevant from
random texts before the imitation terms refine the order among hard candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_loss(logits: torch.Tensor, temperature: float = 1.0, offset: int = 0) -> torch.Tensor:
    """Cross-entropy over an in-batch score matrix whose positives sit on the (shifted) diagonal.

    ``L = mean_i -log softmax(logits[i] / temperature)[offset + i]``

    Args:
        logits: ``[B, N]`` student IEM logits, ``N >= offset + B``; column ``offset + i`` holds row ``i``'s
            positive (every other column is a negative).
        temperature: Divides the logits before the softmax.
        offset: Where this batch's positives start among the columns: 0 for one process; with candidates gathered
            from several processes (rank ``r``'s positives after those of ranks ``0..r-1``), ``r * B``.

    Returns:
        A scalar tensor.
    """
    if logits.ndim != 2 or offset < 0 or logits.shape[1] < offset + logits.shape[0]:
        raise ValueError(
            f"in_batch_loss needs a [B, N >= offset + B] logit matrix, got shape {tuple(logits.shape)} with "
            f"offset {offset}."
        )
    targets = torch.arange(offset, offset + logits.shape[0], device=logits.device)
    return F.cross_entropy(logits.float() / temperature, targets)
