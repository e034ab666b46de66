"""Interaction Emulation Module (IEM): D2LLM's small MLP that scores a pair from two embeddings.

It emulates the teacher's yes/no judgement without a joint LLM pass. Each branch maps the pair
features ``[a, b, a * b, |a - b|]`` through ``Linear -> GELU`` to a hidden vector ``h`` and a
linear head to a logit ``z``; ``sigmoid(z)`` is the emulated ``P(yes)``.

- ``symmetric`` (NLI / STS): ``h = (f(a, b) + f(b, a)) / 2``, so the score ignores the order.
- ``asymmetric`` (query -> passage IR): ``h = f(query, passage)``.

With ``cosine_residual`` the logit is ``head(h) + c * cos(a, b)`` with a learnable scale ``c``: the MLP
then learns the interaction *on top of* the embeddings' cosine instead of from a random start, which
matters when a student trains for few steps (the PMA embeddings' cosine is already a usable similarity,
a random MLP's logit is not; see docs/results.md). Off by default, as in D2LLM.

The hidden vector ``h`` is what feature imitation aligns with the teacher's features. The IEM is a
pass-through module in the sentence-transformers pipeline: ``encode`` returns embeddings, and
scoring goes through :meth:`IEM.logits` (``D2LLM.score`` / ``D2LLM.predict``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from d2llm_st.modules.base import ConfiguredModule, check_count, check_number
from d2llm_st.tasks import Task, check_task


class _Branch(nn.Module):
    """``Linear(4d -> h) -> GELU`` over ``[a, b, a*b, |a-b|]``, split so ``a`` and ``b`` broadcast cheaply."""

    def __init__(self, embedding_dim: int, hidden_dim: int, dropout: float, cosine_scale: float | None) -> None:
        super().__init__()
        self.cosine_scale = None if cosine_scale is None else nn.Parameter(torch.tensor(float(cosine_scale)))
        self.a_proj = nn.Linear(embedding_dim, hidden_dim)
        self.b_proj = nn.Linear(embedding_dim, hidden_dim, bias=False)
        self.product_proj = nn.Linear(embedding_dim, hidden_dim, bias=False)
        self.difference_proj = nn.Linear(embedding_dim, hidden_dim, bias=False)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_dim, 1)

    def hidden(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pre = self.a_proj(a) + self.b_proj(b) + self.product_proj(a * b) + self.difference_proj((a - b).abs())
        return self.dropout(self.activation(pre))


class IEM(ConfiguredModule):
    """Score pairs of embeddings with a symmetric and an asymmetric MLP branch.

    Args:
        embedding_dim: Size of the sentence embeddings (PMA output).
        hidden_dim: Width of each branch's hidden layer.
        dropout: Dropout on the hidden vector during training.
        cosine_residual: Add ``c * cos(a, b)`` to each branch's logit, ``c`` learnable per branch and
            initialised to ``cosine_scale``.
        cosine_scale: Initial ``c`` (20, the scale of sentence-transformers' MultipleNegativesRankingLoss).
        default_task: The branch ``D2LLM.similarity`` / ``similarity_pairwise`` / ``rank`` use when no task is
            given: ``"asymmetric"`` (query -> passage, the default, also for folders saved without this key) or
            ``"symmetric"`` (NLI / STS). Saved with the module's config.
    """

    config_keys = ["embedding_dim", "hidden_dim", "dropout", "cosine_residual", "cosine_scale", "default_task"]

    def __init__(
        self,
        embedding_dim: int,
        hidden_dim: int = 512,
        dropout: float = 0.0,
        cosine_residual: bool = False,
        cosine_scale: float = 20.0,
        default_task: Task = "asymmetric",
    ) -> None:
        super().__init__()
        check_count("embedding_dim", embedding_dim)
        check_count("hidden_dim", hidden_dim)  # 0 would score every pair 0.5
        check_number("dropout", dropout, low=0, high=1)
        check_number("cosine_scale", cosine_scale)
        self.default_task = check_task(default_task)
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.cosine_residual = cosine_residual
        self.cosine_scale = cosine_scale
        self.symmetric = _Branch(embedding_dim, hidden_dim, dropout, cosine_scale if cosine_residual else None)
        self.asymmetric = _Branch(embedding_dim, hidden_dim, dropout, cosine_scale if cosine_residual else None)

    def hidden(self, a: torch.Tensor, b: torch.Tensor, task: Task) -> torch.Tensor:
        """Hidden interaction vectors ``[..., hidden_dim]`` for broadcastable ``a``, ``b`` of shape ``[..., d]``."""
        a, b = a.to(self.symmetric.head.weight.dtype), b.to(self.symmetric.head.weight.dtype)
        if check_task(task) == "symmetric":
            return (self.symmetric.hidden(a, b) + self.symmetric.hidden(b, a)) / 2
        return self.asymmetric.hidden(a, b)

    def logits(
        self, a: torch.Tensor, b: torch.Tensor, task: Task, return_hidden: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Pair logits ``[...]`` (``sigmoid`` = emulated P(yes)) for broadcastable ``[..., d]`` inputs."""
        hidden = self.hidden(a, b, task)
        branch = self.symmetric if task == "symmetric" else self.asymmetric
        logits = branch.head(hidden).squeeze(-1)
        if branch.cosine_scale is not None:
            a, b = a.to(hidden.dtype), b.to(hidden.dtype)
            logits = logits + branch.cosine_scale * F.cosine_similarity(a, b, dim=-1)
        return (logits, hidden) if return_hidden else logits

    def pairwise_logits(self, a: torch.Tensor, b: torch.Tensor, task: Task) -> torch.Tensor:
        """All-pairs logits: ``[Q, d]`` x ``[N, d]`` -> ``[Q, N]`` (e.g. the in-batch score matrix)."""
        return self.logits(a[:, None, :], b[None, :, :], task)

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        return features
