#!/usr/bin/env bash
# Install (idempotent) and run the end-to-end demo on the real small pretrained LLM.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
d2llm demo "$@"
