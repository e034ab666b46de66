"""Hard-negative mining: for each anchor, top-ranked corpus texts that are not its positives.

Two first-stage rankers: BM25 (the maintained ``bm25s`` package, English stemming and stopwords) and
any sentence-transformers bi-encoder (through sentence-transformers' own ``mine_hard_negatives``, which
can cache the embeddings on disk so a re-run skips encoding). Positives, texts equal to the anchor and
texts in ``exclude`` are removed first; then ``range_min`` ranks are skipped (unlabelled positives
concentrate at the very top) and ``num_negatives`` are taken from ranks ``[range_min, range_max)``:
the hardest ones (``sampling="top"``) or a seeded random sample (``"random"``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

METHODS = ("bm25", "bi-encoder")
SAMPLING = ("top", "random")


def _bm25_rankings(anchors: Sequence[str], corpus: Sequence[str], depth: int, progress: bool) -> list[list[int]]:
    """Corpus indices per anchor, best BM25 score first; texts sharing no term with the anchor come last."""
    try:
        import bm25s
        import Stemmer
    except ImportError as error:
        raise ImportError("BM25 mining needs bm25s and PyStemmer: pip install 'd2llm[bm25]'") from error
    tokenizer = bm25s.tokenization.Tokenizer(stemmer=Stemmer.Stemmer("english"), stopwords="en")
    retriever = bm25s.BM25()
    retriever.index(tokenizer.tokenize(list(corpus), return_as="ids", show_progress=False), show_progress=False)
    # The same tokenizer maps the anchors into the corpus vocabulary (unknown terms are dropped).
    query_ids = tokenizer.tokenize(list(anchors), return_as="ids", update_vocab=False, show_progress=False)
    results, _ = retriever.retrieve(query_ids, k=min(depth, len(corpus)), show_progress=progress, n_threads=0)
    return [list(map(int, row)) for row in results]


def _bi_encoder_rankings(
    anchors: Sequence[str],
    corpus: Sequence[str],
    positives: Sequence[set[int]],
    depth: int,
    model: Any,
    batch_size: int,
    cache_folder: str | None,
    progress: bool,
) -> list[list[int]]:
    """Corpus indices per anchor by bi-encoder similarity (positives already out), via ST's mine_hard_negatives."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    if model is None:
        raise ValueError("Bi-encoder mining needs a model: pass mining_model (a SentenceTransformer or its path).")
    missing = [anchors[i] for i, positive in enumerate(positives) if not positive]
    if missing:
        raise ValueError(f"Bi-encoder mining needs at least one positive per anchor; {missing[0]!r} has none.")
    encoder = model if isinstance(model, SentenceTransformer) else SentenceTransformer(model)
    rows = [(anchor, corpus[i]) for anchor, positive in zip(anchors, positives) for i in sorted(positive)]
    unique_texts = len(set(corpus))
    depth = max(1, min(depth, unique_texts - max(map(len, positives))))
    mined = mine_hard_negatives(
        Dataset.from_dict({"anchor": [a for a, _ in rows], "positive": [p for _, p in rows]}),
        encoder,
        corpus=list(corpus),
        range_max=depth,
        num_negatives=depth,
        output_format="labeled-list",
        batch_size=batch_size,
        cache_folder=cache_folder,
        verbose=progress,
    )
    position = {}
    for i, text in enumerate(corpus):
        position.setdefault(text, i)
    # One output row per (anchor, positive); rows of an anchor share its ranked negatives after the positive.
    ranked = {row["anchor"]: [position[text] for text in row["positive"][1:]] for row in mined}
    return [ranked.get(anchor, []) for anchor in anchors]


def mine_negatives(
    anchors: Sequence[str],
    corpus: Sequence[str],
    positives: Sequence[set[int]],
    num_negatives: int,
    method: str = "bm25",
    range_min: int = 0,
    range_max: int = 50,
    model: Any = None,
    sampling: str = "top",
    exclude: Sequence[set[int]] | None = None,
    seed: int = 0,
    batch_size: int = 64,
    cache_folder: str | None = None,
    show_progress_bar: bool | None = None,
) -> list[list[int]]:
    """For each anchor, up to ``num_negatives`` corpus indices from ranks ``[range_min, range_max)``.

    Args:
        anchors: Queries / premises / first sentences.
        corpus: Candidate texts.
        positives: Per anchor, the corpus indices of its positives (never negatives; nor is the anchor's own text).
        num_negatives: ``K``.
        method: ``"bm25"`` or ``"bi-encoder"`` (needs ``model``).
        range_min, range_max: The rank window, counted after removing positives and ``exclude``.
        model: The bi-encoder (``SentenceTransformer`` or its path / hub id).
        sampling: ``"top"`` (hardest first) or ``"random"`` (a seeded sample of the window, in rank order).
        exclude: Per anchor, more corpus indices to skip (e.g. negatives it already has).
        seed: Seed of ``sampling="random"``.
        batch_size: Bi-encoder batch size.
        cache_folder: Bi-encoder only: embeddings are cached there, so a re-run does not encode again.
        show_progress_bar: Progress bars (default: when logging at INFO).

    Returns:
        Corpus indices per anchor; fewer than ``num_negatives`` only when the corpus is too small.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown mining method {method!r}; use one of {METHODS}.")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}.")
    if num_negatives < 1 or range_min < 0 or range_max - range_min < num_negatives:
        raise ValueError(
            f"The rank window [range_min={range_min}, range_max={range_max}) must hold num_negatives={num_negatives} "
            "candidates: raise range_max or lower range_min."
        )
    if len(positives) != len(anchors):
        raise ValueError(f"positives has {len(positives)} entries for {len(anchors)} anchors.")
    exclude = exclude if exclude is not None else [set() for _ in anchors]
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
    depth = range_max + max(len(p) + len(e) for p, e in zip(positives, exclude)) + 1
    if method == "bm25":
        rankings = _bm25_rankings(anchors, corpus, depth, show_progress_bar)
    else:
        rankings = _bi_encoder_rankings(
            anchors, corpus, positives, depth, model, batch_size, cache_folder, show_progress_bar
        )
    rng = random.Random(seed)
    negatives = []
    for anchor, ranking, positive, skip in zip(anchors, rankings, positives, exclude):
        banned, banned_texts = positive | skip, {corpus[i] for i in positive} | {anchor}
        candidates = [i for i in dict.fromkeys(ranking) if i not in banned and corpus[i] not in banned_texts]
        window = candidates[range_min:range_max]
        if sampling == "random" and len(window) > num_negatives:
            window = sorted(rng.sample(window, num_negatives), key=window.index)
        negatives.append(window[:num_negatives])
    short = sum(len(found) < num_negatives for found in negatives)
    if short:
        logger.warning(f"{short} of {len(anchors)} anchors got fewer than {num_negatives} mined negatives.")
    return negatives


def mine_negative_ids(
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    num_negatives: int,
    **kwargs: Any,
) -> dict[str, list[str]]:
    """:func:`mine_negatives` for a BEIR set: ``{query id: [negative corpus ids]}``; kwargs go to it."""
    doc_ids = list(corpus)
    position = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    query_ids = list(queries)
    positives = [{position[d] for d, g in qrels.get(q, {}).items() if g > 0 and d in position} for q in query_ids]
    mined = mine_negatives(
        [queries[q] for q in query_ids], [corpus[d] for d in doc_ids], positives, num_negatives, **kwargs
    )
    return {q: [doc_ids[i] for i in negatives] for q, negatives in zip(query_ids, mined)}
