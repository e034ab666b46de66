#!/usr/bin/env bash
# Install (idempotent) and run the whole test suite, the slow real-weight tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python3 -m pytest -q -p no:cacheprovider "$@"
