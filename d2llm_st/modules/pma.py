"""Pooling by Multihead Attention (PMA, Set Transformer, Lee et al. 2019), D2LLM's pooling.

Learnable seed vectors attend over the backbone's token states (padding masked out), then go
through the Set Transformer block: ``H = LN(S' + Attn(S, X))``, ``O = LN(H + ReLU(W H))``,
where ``S'`` is the projected seeds. With ``k`` seeds the ``k`` outputs are concatenated, and an
optional linear projection maps them to ``output_dim``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from d2llm_st.errors import UserError
from d2llm_st.modules.base import ConfiguredModule, check_count

ATTENTION_SCALES = ("head_dim", "model_dim")


class PMAPooling(ConfiguredModule):
    """Pool ``token_embeddings`` into one ``sentence_embedding`` with learnable attention seeds.

    Args:
        embedding_dim: Size of the incoming token states (the LLM hidden size).
        num_heads: Attention heads; must divide ``embedding_dim``.
        num_seeds: Number of learnable seeds; their outputs are concatenated.
        output_dim: If set, a linear projection of the concatenated seeds to this size.
        layer_norm: Use the Set Transformer's two layer norms.
        attention_scale: ``"head_dim"`` scales scores by ``sqrt(embedding_dim / num_heads)`` (standard
            multi-head attention); ``"model_dim"`` by ``sqrt(embedding_dim)``, as the official Set Transformer
            and D2LLM code do.
    """

    config_keys = ["embedding_dim", "num_heads", "num_seeds", "output_dim", "layer_norm", "attention_scale"]

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int = 8,
        num_seeds: int = 1,
        output_dim: int | None = None,
        layer_norm: bool = True,
        attention_scale: Literal["head_dim", "model_dim"] = "head_dim",
    ) -> None:
        super().__init__()
        check_count("embedding_dim", embedding_dim)
        check_count("num_heads", num_heads)
        check_count("num_seeds", num_seeds)
        check_count("output_dim", output_dim, optional=True)
        if embedding_dim % num_heads:
            raise UserError(f"num_heads={num_heads} must divide embedding_dim={embedding_dim}.")
        if attention_scale not in ATTENTION_SCALES:
            raise UserError(f"attention_scale must be 'head_dim' or 'model_dim', got {attention_scale!r}.")
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.num_seeds = num_seeds
        self.output_dim = output_dim
        self.layer_norm = layer_norm
        self.attention_scale = attention_scale

        self.seeds = nn.Parameter(torch.empty(num_seeds, embedding_dim))
        nn.init.xavier_uniform_(self.seeds)
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(embedding_dim, embedding_dim)
        self.v_proj = nn.Linear(embedding_dim, embedding_dim)
        self.ffn = nn.Linear(embedding_dim, embedding_dim)
        self.norm_attention = nn.LayerNorm(embedding_dim) if layer_norm else nn.Identity()
        self.norm_output = nn.LayerNorm(embedding_dim) if layer_norm else nn.Identity()
        self.projection = nn.Linear(num_seeds * embedding_dim, output_dim) if output_dim else None

    def pool(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` token states and ``[B, L]`` mask -> ``[B, output size]`` embeddings."""
        batch, length, dim = token_embeddings.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        x = token_embeddings.to(self.seeds.dtype)
        q = self.q_proj(self.seeds).expand(batch, -1, -1)  # [B, S, D]
        k = self.k_proj(x).view(batch, length, heads, head_dim).transpose(1, 2)  # [B, H, L, d]
        v = self.v_proj(x).view(batch, length, heads, head_dim).transpose(1, 2)
        q_heads = q.view(batch, self.num_seeds, heads, head_dim).transpose(1, 2)  # [B, H, S, d]

        scale = math.sqrt(head_dim if self.attention_scale == "head_dim" else dim)
        scores = q_heads @ k.transpose(-1, -2) / scale  # [B, H, S, L]
        padding = ~attention_mask.bool()[:, None, None, :]
        scores = scores.masked_fill(padding, torch.finfo(scores.dtype).min)
        attended = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, self.num_seeds, dim)

        hidden = self.norm_attention(q + attended)
        output = self.norm_output(hidden + torch.relu(self.ffn(hidden)))
        output = output.reshape(batch, self.num_seeds * dim)
        return self.projection(output) if self.projection is not None else output

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        features["sentence_embedding"] = self.pool(features["token_embeddings"], features["attention_mask"])
        return features

    def get_embedding_dimension(self) -> int:
        return self.output_dim or self.num_seeds * self.embedding_dim
