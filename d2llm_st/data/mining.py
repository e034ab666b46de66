"""Hard-negative mining: for each anchor, the top-ranked corpus texts that are not its positives.

Two first-stage rankers: BM25 (the maintained ``bm25s`` package) and any sentence-transformers
bi-encoder (embeddings + ``sentence_transformers.util.semantic_search``). ``range_min`` skips the very
top of the ranking, where unlabelled positives concentrate; negatives are taken from ranks
``[range_min, range_max)``, hardest first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

METHODS = ("bm25", "bi-encoder")


def _bm25_rankings(anchors: Sequence[str], corpus: Sequence[str], depth: int) -> list[list[int]]:
    try:
        import bm25s
    except ImportError as error:
        raise ImportError("BM25 mining needs bm25s: pip install 'd2llm[bm25]'") from error
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(corpus), stopwords="en", show_progress=False), show_progress=False)
    results, _ = retriever.retrieve(
        bm25s.tokenize(list(anchors), stopwords="en", show_progress=False),
        k=min(depth, len(corpus)),
        show_progress=len(anchors) > 1000,
    )
    return [list(map(int, row)) for row in results]


def _bi_encoder_rankings(
    anchors: Sequence[str], corpus: Sequence[str], depth: int, model, batch_size: int
) -> list[list[int]]:
    from sentence_transformers import SentenceTransformer, util

    if model is None:
        raise ValueError("Bi-encoder mining needs a model: pass mining_model (a SentenceTransformer or its path).")
    encoder = model if isinstance(model, SentenceTransformer) else SentenceTransformer(model)
    corpus_embeddings = encoder.encode_document(
        list(corpus),
        batch_size=batch_size,
        convert_to_tensor=True,
        normalize_embeddings=True,
        show_progress_bar=len(corpus) > 1000,
    )
    anchor_embeddings = encoder.encode_query(
        list(anchors),
        batch_size=batch_size,
        convert_to_tensor=True,
        normalize_embeddings=True,
        show_progress_bar=len(anchors) > 1000,
    )
    hits = util.semantic_search(anchor_embeddings, corpus_embeddings, top_k=min(depth, len(corpus)))
    return [[hit["corpus_id"] for hit in row] for row in hits]


def mine_negatives(
    anchors: Sequence[str],
    corpus: Sequence[str],
    positives: Sequence[set[int]],
    num_negatives: int,
    method: str = "bm25",
    range_min: int = 0,
    range_max: int = 50,
    model=None,
    batch_size: int = 64,
) -> list[list[int]]:
    """For each anchor, up to ``num_negatives`` corpus indices ranked in ``[range_min, range_max)``, not positives.

    A corpus text equal to the anchor itself or to one of its positives is never a negative.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown mining method {method!r}; use one of {METHODS}.")
    if not 0 <= range_min < range_max:
        raise ValueError(f"Need 0 <= range_min < range_max, got range_min={range_min}, range_max={range_max}.")
    if len(positives) != len(anchors):
        raise ValueError(f"positives has {len(positives)} entries for {len(anchors)} anchors.")
    if method == "bm25":
        rankings = _bm25_rankings(anchors, corpus, range_max)
    else:
        rankings = _bi_encoder_rankings(anchors, corpus, range_max, model, batch_size)
    negatives = []
    for anchor, ranking, positive in zip(anchors, rankings, positives):
        positive_texts = {corpus[i] for i in positive} | {anchor}
        candidates = [i for i in ranking[range_min:range_max] if i not in positive and corpus[i] not in positive_texts]
        negatives.append(list(dict.fromkeys(candidates))[:num_negatives])
    return negatives


def mine_negative_ids(
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    num_negatives: int,
    **kwargs,
) -> dict[str, list[str]]:
    """:func:`mine_negatives` for a BEIR set: ``{query id: [negative corpus ids]}``."""
    doc_ids = list(corpus)
    position = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    query_ids = list(queries)
    positives = [{position[d] for d, g in qrels.get(q, {}).items() if g > 0 and d in position} for q in query_ids]
    mined = mine_negatives(
        [queries[q] for q in query_ids], [corpus[d] for d in doc_ids], positives, num_negatives, **kwargs
    )
    return {q: [doc_ids[i] for i in negatives] for q, negatives in zip(query_ids, mined)}
