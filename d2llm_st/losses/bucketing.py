"""Embed the texts of a training step in length buckets, so padding costs little.

A step of D2LLM distillation embeds ``B`` anchors and ``B (1 + K)`` candidates. Padded together, every text
costs as much as the longest one: on WikiQA (short questions, passages up to 60 tokens) over half of the
tokens the backbone sees are padding. Sorting the texts by length and cutting them into chunks of ``B`` before
the forward pass keeps each chunk's padding small; the embeddings are returned in the original order. The
result is the same as one padded forward (positions come from the attention mask, PMA masks padding), up to
floating-point rounding of different matrix shapes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def unpadded_rows(features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The token ids of each row of a tokenized batch without its padding (left or right)."""
    mask = features["attention_mask"].bool()
    return [ids[row_mask] for ids, row_mask in zip(features["input_ids"], mask)]


def pad_rows(rows: list[torch.Tensor], pad_token_id: int, padding_side: str) -> dict[str, torch.Tensor]:
    """``input_ids`` / ``attention_mask`` of ``rows`` padded to the longest, on the given side."""
    length = max(len(row) for row in rows)
    input_ids = rows[0].new_full((len(rows), length), pad_token_id)
    attention_mask = rows[0].new_zeros((len(rows), length))
    for i, row in enumerate(rows):
        span = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
        input_ids[i, span] = row
        attention_mask[i, span] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def embed_in_length_buckets(
    model: nn.Module, columns: list[dict[str, Any]], bucket_size: int, pad_token_id: int, padding_side: str
) -> list[torch.Tensor]:
    """``sentence_embedding`` ``[B_c, d]`` of every column's texts, embedded in chunks of ``bucket_size`` texts
    of similar length (the columns are tokenized batches, e.g. a loss's ``sentence_features``)."""
    rows = [row for features in columns for row in unpadded_rows(features)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    embeddings: list[torch.Tensor | None] = [None] * len(rows)
    for start in range(0, len(order), bucket_size):
        chunk = order[start : start + bucket_size]
        output = model(pad_rows([rows[i] for i in chunk], pad_token_id, padding_side))["sentence_embedding"]
        for i, embedding in zip(chunk, output):
            embeddings[i] = embedding
    sizes = [len(features["input_ids"]) for features in columns]
    stacked = torch.stack(embeddings)  # type: ignore[arg-type]
    return list(stacked.split(sizes))
