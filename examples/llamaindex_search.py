"""Search a real corpus (WikiQA or SciFact) with a D2LLM inside LlamaIndex: index it, ask queries, print nodes.

Stage 1 takes the ``--candidate-k`` nearest passages by embedding similarity from the vector store;
stage 2 rescores them with the IEM from the stored embeddings and keeps the best ``--top-k``.

    python examples/llamaindex_search.py --limit 300 --queries 3
    python examples/llamaindex_search.py --dataset scifact --limit 40 --model runs/student-smollm2
    python examples/llamaindex_search.py --store qdrant --qdrant-path /tmp/qdrant     # Qdrant, local mode
    python examples/llamaindex_search.py --store qdrant --qdrant-url http://localhost:6333   # a Qdrant server

``--model`` (a folder saved by ``model.save_pretrained``, e.g. the output of ``d2llm distill``) defaults to the
``D2LLM_MODEL`` environment variable, as in ``scripts/demo.sh``; without either, an untrained student is built
on the bundled SmolLM2-135M (its rankings then only show the plumbing). The
corpus is cut to ``--limit`` passages, the gold passages of the asked queries always included. Indexing
is the slow part on a CPU: WikiQA sentences are short (~20 a second with SmolLM2 on 2 cores), SciFact
abstracts are long (300+ tokens; well under one a second on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode

from d2llm_llamaindex import D2LLMEmbedding, D2LLMRetriever
from d2llm_st import D2LLM
from d2llm_st.data.readers import BEIRDataset, read_beir

logger = logging.getLogger("llamaindex_search")

MODEL_ENV = "D2LLM_MODEL"
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def load_student(path: str | None) -> D2LLM:
    """The saved student at ``path`` (default: ``$D2LLM_MODEL``), else a freshly built untrained one."""
    path = path or os.environ.get(MODEL_ENV) or None
    if path is not None:
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"{path}: no saved D2LLM there (--model / ${MODEL_ENV} takes a folder from model.save_pretrained)."
            )
        logger.info(f"Loading the D2LLM student from {path}")
        return D2LLM(path, device="cpu")
    from d2llm_st.gguf import bundled_smollm2

    logger.warning(
        f"No --model given and {MODEL_ENV} not set: using an UNTRAINED student "
        "(SmolLM2-135M with random PMA and IEM). Its rankings only show the plumbing, not D2LLM's quality."
    )
    return D2LLM.from_llm(
        bundled_smollm2(),
        pma_heads=8,
        iem_hidden_dim=256,
        query_prompt="query: ",
        passage_prompt="passage: ",
        device="cpu",
    )


def select(dataset: BEIRDataset, n_queries: int, limit: int) -> tuple[dict[str, str], dict[str, str]]:
    """The first ``n_queries`` queries and up to ``limit`` passages: their gold passages, then corpus order."""
    queries = dict(list(dataset.queries.items())[:n_queries])
    gold = [doc_id for query_id in queries for doc_id in dataset.qrels[query_id] if doc_id in dataset.corpus]
    if len(gold) > limit:
        raise ValueError(f"--limit {limit} is below the {len(gold)} gold passages of {n_queries} queries: raise it.")
    doc_ids = list(dict.fromkeys(gold + list(dataset.corpus)))[:limit]
    logger.info(f"{len(queries)} queries over {len(doc_ids)} of {len(dataset.corpus)} passages")
    return {doc_id: dataset.corpus[doc_id] for doc_id in doc_ids}, queries


def to_nodes(corpus: dict[str, str], dataset: str) -> list[TextNode]:
    """One node per passage; UUID node ids (Qdrant needs them) and the BEIR id kept out of the embedded text."""
    return [
        TextNode(
            id_=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{dataset}/{doc_id}")),
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


def build_index(
    nodes: list[TextNode], embed_model: D2LLMEmbedding, storage_context: StorageContext
) -> VectorStoreIndex:
    return VectorStoreIndex(nodes, storage_context=storage_context, embed_model=embed_model, show_progress=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help=f"saved D2LLM folder (default: ${MODEL_ENV}, else an untrained student)")
    parser.add_argument("--data", default=os.environ.get("D2LLM_SHARED_DATA", DEFAULT_DATA), help="shared/data folder")
    parser.add_argument("--dataset", choices=("wikiqa", "scifact"), default="wikiqa", help="corpus in shared/data/ir")
    parser.add_argument("--limit", type=int, default=300, help="passages to index")
    parser.add_argument("--queries", type=int, default=3, help="queries to ask (from the test split)")
    parser.add_argument("--candidate-k", type=int, default=20, help="stage-1 candidates per query")
    parser.add_argument("--top-k", type=int, default=3, help="nodes printed per query")
    parser.add_argument("--store", choices=("simple", "qdrant"), default="simple", help="vector store")
    parser.add_argument("--qdrant-path", help="Qdrant local-mode folder (default: in memory)")
    parser.add_argument("--qdrant-url", help="a Qdrant server instead of local mode")
    parser.add_argument("--collection", default="d2llm-example", help="Qdrant collection name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    dataset = read_beir(os.path.join(args.data, "ir", args.dataset), split="test")
    corpus, queries = select(dataset, args.queries, args.limit)
    model = load_student(args.model)
    embed_model = D2LLMEmbedding(model=model, embed_batch_size=16)
    index = build_index(to_nodes(corpus, args.dataset), embed_model, storage(args, model.iem.embedding_dim))
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=args.candidate_k, similarity_top_k=args.top_k)

    for query_id, query in queries.items():
        gold = set(dataset.qrels[query_id])
        print(f"\nQuery {query_id}: {query}\n  gold: {', '.join(sorted(gold))}")
        for rank, scored in enumerate(retriever.retrieve(query), start=1):
            doc_id = scored.node.metadata["doc_id"]
            mark = "  <- gold" if doc_id in gold else ""
            text = scored.node.get_content()
            snippet = text if len(text) <= 110 else text[:110] + "..."
            print(f"  {rank}. IEM {scored.score:.4f}  doc {doc_id}{mark}\n     {snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
