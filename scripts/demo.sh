#!/usr/bin/env bash
# Install (idempotent), then run the end-to-end demo on the real small pretrained LLM:
#  1. build a D2LLM student on SmolLM2-135M-Instruct, encode texts, rank passages for a query;
#  2. index real WikiQA sentences (../shared/data) in LlamaIndex with D2LLMEmbedding and answer a few
#     test questions with D2LLMRetriever (vector stage + IEM rerank).
# Pass a distilled model to both with D2LLM_MODEL=path (e.g. the output of `d2llm distill`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
model_args=()
if [ -n "${D2LLM_MODEL:-}" ]; then model_args=(--model "$D2LLM_MODEL"); fi
d2llm demo "${model_args[@]}"
python3 examples/llamaindex_search.py "${model_args[@]}" --limit 200 --queries 2 --candidate-k 20 --top-k 3
