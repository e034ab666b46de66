"""The CPU runtime policy: which dtype LLM backbones get where, the switch, bf16 numerics, threads."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from d2llm_st import D2LLM, runtime
from d2llm_st.teacher import LLMTeacher
from d2llm_st.teacher.llm_teacher import resolve_dtype

PAIRS = [
    ("what is the capital of france ?", "paris is the capital of france ."),
    ("the cat sat on the mat", "a dog ran to the river"),
    ("who cooks pizza ?", "the chef cooks pizza in the kitchen"),
    ("is the sky blue ?", "the sea is blue and the sky is blue"),
    ("the boy plays football", "a girl eats bread"),
    ("rain in winter", "cold weather and rain"),
    ("the man drives a car", "the car is fast on the road"),
    ("what is a protein ?", "the study of cells and genes"),
]


@pytest.fixture
def policy(monkeypatch):
    """Set the CPU's bf16 support and the D2LLM_CPU_DTYPE setting for one test."""

    def set_policy(has_bf16: bool, setting: str | None = None) -> None:
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: has_bf16)
        if setting is None:
            monkeypatch.delenv(runtime.DTYPE_ENV, raising=False)
        else:
            monkeypatch.setenv(runtime.DTYPE_ENV, setting)

    return set_policy


@pytest.mark.parametrize(
    ("has_bf16", "setting", "expected"),
    [
        (True, None, torch.bfloat16),
        (True, "auto", torch.bfloat16),
        (True, "float32", torch.float32),
        (False, None, torch.float32),
        (False, "bfloat16", torch.bfloat16),
    ],
)
def test_cpu_dtype_follows_the_cpu_and_the_switch(policy, has_bf16, setting, expected):
    policy(has_bf16, setting)
    assert runtime.cpu_dtype() == expected
    assert runtime.backbone_dtype("cpu") == expected
    assert runtime.backbone_dtype("cuda:0") is None  # GPUs keep their own behaviour
    assert resolve_dtype("auto", "cpu") == expected


@pytest.mark.parametrize("has_bf16", [True, False])
def test_st_bf16_slowness_warning_is_dropped_only_where_bf16_is_fast(tiny_llama, policy, caplog, has_bf16):
    policy(has_bf16, "bfloat16")
    runtime.quiet_deliberate_bf16_warning()
    runtime.quiet_deliberate_bf16_warning()  # installed once however often it is called
    import logging

    st_logger = logging.getLogger("sentence_transformers.base.model")
    assert sum(isinstance(f, runtime.DeliberateCPUBf16Filter) for f in st_logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="sentence_transformers.base.model"):
        st_logger.warning("This model was loaded in torch.bfloat16 on CPU. Depending on your CPU, ...")
        st_logger.warning("another warning")
    messages = [record.getMessage() for record in caplog.records]
    assert "another warning" in messages
    assert any(m.startswith("This model was loaded") for m in messages) is (not has_bf16)


def test_a_bad_setting_names_the_variable(policy):
    policy(True, "fp8")
    with pytest.raises(ValueError, match="D2LLM_CPU_DTYPE='fp8'"):
        runtime.cpu_dtype()


def test_torch_reports_this_cpu():
    assert isinstance(runtime.cpu_has_bf16(), bool)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_student_base_weights_follow_the_policy_and_trainable_weights_stay_float32(tiny_llama, policy, has_bf16):
    policy(has_bf16)
    model = D2LLM.from_llm(tiny_llama, lora_r=4, pma_heads=4, iem_hidden_dim=16, device="cpu")
    expected = torch.bfloat16 if has_bf16 else torch.float32
    assert model.backbone.base_dtype == expected
    for name, param in model.backbone.named_parameters():
        assert param.dtype == (torch.float32 if "lora_" in name else expected), name
    assert {p.dtype for p in [*model.pma.parameters(), *model.iem.parameters()]} == {torch.float32}
    explicit = D2LLM.from_llm(tiny_llama, pma_heads=4, device="cpu", model_kwargs={"dtype": torch.float32})
    assert explicit.backbone.base_dtype == torch.float32


def test_teacher_follows_the_policy(tiny_llama, policy):
    policy(True)
    assert LLMTeacher(tiny_llama, device="cpu").model.dtype == torch.bfloat16
    policy(True, "float32")
    assert LLMTeacher(tiny_llama, device="cpu").model.dtype == torch.float32


def trained_pair(path: str, policy) -> tuple[D2LLM, D2LLM]:
    """The same trained-looking student in float32 and with bf16 base weights."""
    models = []
    for has_bf16 in (False, True):
        policy(has_bf16)
        torch.manual_seed(0)
        model = D2LLM.from_llm(path, lora_r=4, pma_heads=4, iem_hidden_dim=16, query_prompt="query : ", device="cpu")
        models.append(model)
    with torch.no_grad():
        for param in models[0].parameters():
            if param.requires_grad:  # LoRA, PMA, IEM: what training moves
                param.add_(0.05 * torch.randn_like(param))
        for (_, reference), (_, param) in zip(models[0].named_parameters(), models[1].named_parameters()):
            param.copy_(reference.to(param.dtype))
    return models[0], models[1]


def test_bf16_scores_agree_with_float32(tiny_llama, policy):
    float32, bf16 = trained_pair(tiny_llama, policy)
    for task in ("symmetric", "asymmetric"):
        a = float32.predict(PAIRS, task=task, apply_sigmoid=False)
        b = bf16.predict(PAIRS, task=task, apply_sigmoid=False)
        assert spearmanr(a, b).statistic >= 0.95, (task, a, b)
        np.testing.assert_allclose(b, a, atol=0.05 * np.abs(a).max())
    texts = [text for pair in PAIRS for text in pair]
    cosine = torch.nn.functional.cosine_similarity(
        float32.encode(texts, convert_to_tensor=True), bf16.encode(texts, convert_to_tensor=True)
    )
    assert cosine.min() > 0.99


def test_bf16_training_step_updates_float32_lora_and_leaves_the_base(tiny_llama, policy):
    policy(True)
    torch.manual_seed(0)
    model = D2LLM.from_llm(tiny_llama, lora_r=4, pma_heads=4, iem_hidden_dim=16, device="cpu")
    base_before = {n: p.clone() for n, p in model.backbone.named_parameters() if "lora_" not in n}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    features = model.preprocess([a for a, _ in PAIRS])
    embeddings = model(features)["sentence_embedding"]
    assert features["token_embeddings"].dtype == torch.bfloat16 and embeddings.dtype == torch.float32
    embeddings.pow(2).mean().backward()
    lora = {n: p for n, p in model.backbone.named_parameters() if "lora_A" in n}
    assert lora and all(p.grad is not None and p.grad.dtype == torch.float32 for p in lora.values())
    before = {n: p.detach().clone() for n, p in lora.items()}
    optimizer.step()
    assert any(not torch.equal(before[n], p) for n, p in lora.items())
    for name, param in model.backbone.named_parameters():
        if "lora_" not in name:
            assert param.grad is None and torch.equal(param, base_before[name]), name


def test_bf16_round_trip_and_base_reference(tiny_llama, tmp_path, policy):
    policy(True)
    _, model = trained_pair(tiny_llama, policy)
    expected = model.predict(PAIRS, apply_sigmoid=False)
    model.save_pretrained(str(tmp_path / "full"))
    assert os.path.isfile(tmp_path / "full" / "model.safetensors")  # a local base is saved whole
    model.backbone.save_base_weights = False
    model.save_pretrained(str(tmp_path / "reference"))
    assert not os.path.isfile(tmp_path / "reference" / "model.safetensors")
    for folder in ("full", "reference"):
        reloaded = D2LLM(str(tmp_path / folder), device="cpu")
        assert reloaded.backbone.base_dtype == torch.bfloat16
        np.testing.assert_array_equal(reloaded.predict(PAIRS, apply_sigmoid=False), expected)


def test_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv(runtime.THREADS_ENV, "1")
    assert runtime.default_num_threads() == (1, runtime.THREADS_ENV)
    monkeypatch.setenv(runtime.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="D2LLM_NUM_THREADS"):
        runtime.default_num_threads()
    monkeypatch.delenv(runtime.THREADS_ENV)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads, reason = runtime.default_num_threads()
    assert 1 <= threads <= runtime.usable_cores() and "cores" in reason


def test_threads_leave_the_cores_other_work_keeps_busy(monkeypatch):
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 4)
    for busy, expected in ((0.2, 4), (1.9, 2), (3.7, 1), (8.0, 1)):
        monkeypatch.setattr(runtime, "busy_cores", lambda busy=busy: busy)
        assert runtime.default_num_threads()[0] == expected


def test_busy_cores_sees_a_busy_process():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert runtime.busy_cores(interval=0.5) > 0.5
    finally:
        spinner.kill()


def test_cli_logs_threads_and_dtype():
    env = {**os.environ, runtime.THREADS_ENV: "1"}
    result = subprocess.run(
        [sys.executable, "-m", "d2llm_st.cli", "--cpu-dtype", "float32", "turning-point", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
