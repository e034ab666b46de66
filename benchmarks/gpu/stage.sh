#!/usr/bin/env bash
# Stage one carried part (.gpu/pN) onto the lent GPU machine, which has no network: wheels go to
# /tmp/site, GGUF chunks and data to /root/stage. Run once per part, back to back (the machine stays
# warm between calls), then benchmarks/gpu/env.sh assembles the model.
set -euo pipefail
part=$1
mkdir -p /root/stage
if [ -d ".gpu/$part/wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/$part/wheels/*.whl
fi
cp .gpu/$part/part0* /root/stage/ 2>/dev/null || true
if [ -d ".gpu/$part/data" ]; then rm -rf /root/stage/data; cp -r ".gpu/$part/data" /root/stage/data; fi
ls -la /root/stage
