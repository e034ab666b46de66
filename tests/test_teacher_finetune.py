"""Teacher fine-tuning: it learns the labels, resumes from its checkpoint, saves merged or as an adapter, has a CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors.torch import load_file

from d2llm_st.data import LabelledPair
from d2llm_st.teacher import LLMTeacher, TeacherTrainingConfig, finetune_teacher
from d2llm_st.teacher import trainer as trainer_module

POSITIVE = [("who cooks pizza ?", "the chef cooks pizza"), ("the cat sat", "a cat sat on the mat")]
NEGATIVE = [("who cooks pizza ?", "rain in winter"), ("the cat sat", "the team scored a goal")]
PAIRS = [LabelledPair(a, b, 1.0, "asymmetric") for a, b in POSITIVE] + [
    LabelledPair(a, b, 0.0, "asymmetric") for a, b in NEGATIVE
]
PAIRS = PAIRS * 3 + [LabelledPair("the sun is hot", "summer sun hot", 1.0, "symmetric")]
CONFIG = TeacherTrainingConfig(
    lora_r=8, lora_dropout=0.0, learning_rate=1e-2, batch_size=4, max_steps=40, checkpoint_every=10, warmup_ratio=0.0
)


def _margin(teacher: LLMTeacher) -> float:
    scores = teacher.score(POSITIVE + NEGATIVE, task="asymmetric").scores
    return float(scores[: len(POSITIVE)].mean() - scores[len(POSITIVE) :].mean())


@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory) -> str:
    return finetune_teacher(tiny_llama, PAIRS, str(tmp_path_factory.mktemp("teacher")), CONFIG, device="cpu")


def test_finetuned_teacher_learns_yes_and_no_and_reloads_with_its_settings(tiny_llama, trained):
    base, tuned = LLMTeacher(tiny_llama, device="cpu"), LLMTeacher(trained, device="cpu")
    assert _margin(tuned) > _margin(base) + 0.2
    assert tuned.identity != base.identity
    with open(os.path.join(trained, "d2llm_teacher.json")) as f:
        saved = json.load(f)
    assert saved["max_length"] == CONFIG.max_length and saved["training"]["steps"] == 40
    assert tuned.max_length == CONFIG.max_length and tuned.templates == base.templates
    assert not [name for name in os.listdir(trained) if name.startswith("checkpoint")]  # removed once saved


def test_interrupted_training_resumes_to_the_same_weights(tiny_llama, trained, tmp_path, monkeypatch):
    output = str(tmp_path / "teacher")
    original = trainer_module.yes_no_loss
    calls = []

    def crash_at_step_15(*args):
        calls.append(1)
        if len(calls) == 15:
            raise KeyboardInterrupt("simulated kill")
        return original(*args)

    monkeypatch.setattr(trainer_module, "yes_no_loss", crash_at_step_15)
    with pytest.raises(KeyboardInterrupt):
        finetune_teacher(tiny_llama, PAIRS, output, CONFIG, device="cpu")
    with open(os.path.join(output, "checkpoint-10", "trainer_state.json")) as f:
        assert json.load(f)["global_step"] == 10  # mid-epoch: 4 batches per epoch
    monkeypatch.setattr(trainer_module, "yes_no_loss", original)
    calls.clear()
    finetune_teacher(tiny_llama, PAIRS, output, CONFIG, device="cpu")
    resumed, straight = load_file(f"{output}/model.safetensors"), load_file(f"{trained}/model.safetensors")
    assert resumed.keys() == straight.keys()
    for name in straight:
        np.testing.assert_allclose(
            resumed[name].float().numpy(), straight[name].float().numpy(), atol=1e-6, err_msg=name
        )

    other = TeacherTrainingConfig(**{**CONFIG.to_dict(), "learning_rate": 1e-3})
    monkeypatch.setattr(trainer_module, "yes_no_loss", crash_at_step_15)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        finetune_teacher(tiny_llama, PAIRS, output, CONFIG, device="cpu")
    with pytest.raises(ValueError, match="another model, data or config"):
        finetune_teacher(tiny_llama, PAIRS, output, other, device="cpu")


def test_adapter_only_save_loads_as_the_same_teacher(tiny_llama, trained, tmp_path):
    path = finetune_teacher(tiny_llama, PAIRS, str(tmp_path / "adapter"), CONFIG, device="cpu", merge=False)
    assert os.path.isfile(os.path.join(path, "adapter_config.json"))
    assert not os.path.isfile(os.path.join(path, "model.safetensors"))
    adapter_scores = LLMTeacher(path, device="cpu").score(POSITIVE + NEGATIVE, task="asymmetric").scores
    merged_scores = LLMTeacher(trained, device="cpu").score(POSITIVE + NEGATIVE, task="asymmetric").scores
    np.testing.assert_allclose(adapter_scores, merged_scores, atol=1e-5)


def test_cli_teacher_train_and_help(tiny_llama, shared_data, tmp_path, capsys):
    from d2llm_st.cli import main

    for command in ("teacher-train", "teacher-score", "mine"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "--kind" in capsys.readouterr().out
    output = str(tmp_path / "teacher")
    args = ["--model", tiny_llama, "--kind", "nli", "--data", f"{shared_data}/nli/snli/dev.jsonl.gz"]
    assert main(["teacher-train", *args, "--limit", "16", "--batch-size", "8", "--output", output]) == 0
    assert "teacher saved" in capsys.readouterr().out
    assert LLMTeacher(output, device="cpu").score(POSITIVE, task="symmetric").scores.shape == (2,)
    with open(os.path.join(output, "d2llm_teacher.json"), encoding="utf-8") as f:
        assert json.load(f)["base_model"] == tiny_llama  # the name as given (bundled:smollm2 stays that name)
