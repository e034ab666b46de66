"""IEM scoring of LlamaIndex nodes, shared by :class:`D2LLMRetriever` (stage 2) and :class:`D2LLMRerank`.

The IEM scores a (query, passage) pair from the two embeddings alone, so a node whose embedding is
at hand (stored in the vector store, or on the node) costs no backbone pass. Vectors that are not
this model's raw passage embeddings are refused and their passages re-encoded: a wrong size means
another embedding model, and a unit norm (when the model's own embeddings are not unit-norm) means a
copy normalised by the store for cosine distance (Qdrant does this), which the IEM cannot score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from d2llm_st import D2LLM

UNIT_NORM_TOLERANCE = 1e-3


def check_query(query_bundle: QueryBundle | None, who: str) -> str:
    """The query text, or a clear error: an empty query is a caller bug (e.g. an unfilled template)."""
    if query_bundle is None:
        raise ValueError(f"{who} needs the query: pass query_bundle= or query_str=.")
    if not query_bundle.query_str.strip():
        raise ValueError(f"{who} got an empty query: pass a non-empty question to score passages against.")
    return query_bundle.query_str


def check_top(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def usable_embeddings(
    model: D2LLM, query_embedding: torch.Tensor, candidates: Mapping[str, Sequence[float] | None]
) -> tuple[dict[str, torch.Tensor], str | None]:
    """Keep the candidate vectors the IEM can score; say why the others were refused (``None`` if none was).

    Args:
        model: The D2LLM whose IEM will score them.
        query_embedding: The query's embedding from the same model (``[d]``), the reference for the norm check.
        candidates: ``{node_id: vector or None}``.
    """
    dim = model.iem.embedding_dim
    query_is_unit = abs(float(query_embedding.norm()) - 1.0) < UNIT_NORM_TOLERANCE
    usable: dict[str, torch.Tensor] = {}
    wrong_size: set[int] = set()
    normalised = 0
    for node_id, vector in candidates.items():
        if vector is None:
            continue
        tensor = torch.as_tensor(vector, dtype=torch.float32)
        if tensor.shape != (dim,):
            wrong_size.add(tensor.numel())
        elif not query_is_unit and abs(float(tensor.norm()) - 1.0) < UNIT_NORM_TOLERANCE:
            normalised += 1
        else:
            usable[node_id] = tensor
    reasons = []
    if wrong_size:
        reasons.append(
            f"vectors of size {sorted(wrong_size)} are not this model's (size {dim}): they come from another "
            "embedding model"
        )
    if normalised:
        reasons.append(
            f"{normalised} vectors are unit-normalised copies (a store with cosine distance, e.g. Qdrant, normalises "
            "them), not the raw embeddings the IEM scores; a collection with dot-product distance keeps them raw"
        )
    return usable, "; ".join(reasons) or None


def rank_nodes(
    model: D2LLM,
    query_embedding: torch.Tensor,
    nodes: Sequence[NodeWithScore],
    embeddings: Mapping[str, torch.Tensor],
    top_n: int,
    batch_size: int = 32,
) -> tuple[list[NodeWithScore], int]:
    """Score ``nodes`` with the asymmetric IEM and return the best ``top_n`` (fewer if fewer nodes), and how
    many passages had to be encoded because ``embeddings`` (``{node_id: [d]}``) had no vector for them.

    Passages are encoded from ``get_content(MetadataMode.EMBED)``, the text a vector index embeds, so a
    re-encoded vector equals the stored one. Each returned ``NodeWithScore`` is new, with the IEM's
    ``P(yes)`` (in (0, 1)) as its score; ties keep the input order.
    """
    if not nodes:
        return [], 0
    vectors = dict(embeddings)
    missing = list(dict.fromkeys(n.node.node_id for n in nodes if n.node.node_id not in vectors))
    if missing:
        texts = {n.node.node_id: n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes}
        encoded = model.encode_texts(
            [texts[node_id] for node_id in missing], "passage", batch_size=batch_size, show_progress_bar=False
        )
        vectors.update(zip(missing, encoded.float().cpu()))
    passages = torch.stack([vectors[n.node.node_id] for n in nodes])
    # Rank by logit: a float32 sigmoid rounds logits above about 17 to exactly 1.0, which would tie them.
    logits = model.score(query_embedding, passages, task="asymmetric", apply_sigmoid=False).cpu()
    ranking, scores = logits.tolist(), logits.sigmoid().tolist()
    order = sorted(range(len(nodes)), key=lambda i: -ranking[i])[:top_n]
    return [NodeWithScore(node=nodes[i].node, score=scores[i]) for i in order], len(missing)
