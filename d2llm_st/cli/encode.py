"""Encode a corpus with a D2LLM into passage-embedding shards for an index (resumable, any number of processes).

--corpus is a BEIR folder or a .jsonl[.gz] file with _id (or id), text and optionally title per line. --output
receives manifest.json and shard-NNNNN.safetensors files (float32 embeddings of --shard-size passages each, with
their ids); a shard appears only once it is complete, so a killed run, started again, encodes only the missing
shards. Under torchrun or accelerate launch, process r of N encodes shards r, r+N, ...: --output must be a folder
every process sees. d2llm_llamaindex.index_from_embeddings loads the folder into a LlamaIndex vector store
(SimpleVectorStore, Qdrant embedded or served) for D2LLMRetriever. See docs/scaling.md.

Examples:
  d2llm encode --model runs/student --corpus ../shared/data/ir/scifact --output runs/scifact-embeddings
  torchrun --nproc_per_node 8 -m d2llm_st.cli encode --model runs/student --corpus corpus.jsonl.gz \\
      --output /shared/corpus-embeddings --batch-size 128
"""

from __future__ import annotations

import argparse

from d2llm_st.cli._types import existing_path, positive_int

COMMAND = "encode"
HELP = "Encode a corpus into passage-embedding shards for an index (resumable; torchrun / accelerate for many GPUs)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="A D2LLM folder or hub id.")
    parser.add_argument(
        "--corpus", required=True, type=existing_path, help="BEIR folder or .jsonl[.gz] of _id/id, text, title."
    )
    parser.add_argument("--output", required=True, help="Output folder (shared by all processes when launched).")
    parser.add_argument(
        "--role",
        default="passage",
        choices=("passage", "query", "symmetric"),
        help="Which of the model's prompts to encode with (default: passage, what an index holds).",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="Passages per forward pass.")
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=10_000,
        help="Passages per shard file: a process's unit of work, and the most a killed one loses (default 10000).",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace embeddings in --output made with another model or corpus."
    )


def run(args: argparse.Namespace) -> int:
    from d2llm_st.model_paths import resolve_model_path

    model_path = resolve_model_path(args.model, "--model")

    from d2llm_st import distributed

    dist = distributed.setup()
    dist.check_shared_folder(args.output, "The output folder")  # before the heavy imports and the model

    from d2llm_st.corpus import encode_corpus
    from d2llm_st.model import D2LLM

    model = D2LLM.for_inference(model_path, device=dist.device if dist.is_distributed else None)
    manifest = encode_corpus(
        model,
        args.corpus,
        args.output,
        dist=dist,
        role=args.role,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
    )
    distributed.teardown()
    if dist.is_main:
        print(
            f"{manifest['num_passages']} {args.role} embeddings ({manifest['embedding_dim']} dims) in "
            f"{manifest['num_shards']} shard(s) under {args.output}"
        )
    return 0
