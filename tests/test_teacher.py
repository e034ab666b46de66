"""Teachers: yes/no scoring, batch-size independence, the resumable score cache, CrossEncoder, fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest

from d2llm_st.data import LabelledPair, nli_pairs, read_nli
from d2llm_st.evaluation import binary_classification
from d2llm_st.teacher import CrossEncoderTeacher, LLMTeacher, ScoreCache, TeacherTrainingConfig, finetune_teacher

PAIRS = [
    ("what is the capital of france ?", "paris is the capital of france ."),
    ("the cat sat on the mat", "a dog ran to the river"),
    ("who cooks pizza ?", "the chef cooks pizza in the kitchen"),
    ("the sun is hot", "rain and cold weather in winter"),
    ("the team scored a goal", "football team score goal"),
]


def test_scores_are_probabilities_and_batch_size_independent(tiny_llm):
    teacher = LLMTeacher(tiny_llm, device="cpu")
    one = teacher.score(PAIRS, task="asymmetric", batch_size=1).scores
    many = teacher.score(PAIRS, task="asymmetric", batch_size=4).scores
    assert one.shape == (len(PAIRS),) and ((one > 0) & (one < 1)).all()
    np.testing.assert_allclose(one, many, atol=1e-4)
    assert not np.allclose(one, teacher.score(PAIRS, task="symmetric", batch_size=4).scores)


def test_features_and_attention_on_request(tiny_llama):
    teacher = LLMTeacher(tiny_llama, device="cpu")
    output = teacher.score(PAIRS[:2], task="asymmetric", return_features=True, return_attention=True)
    assert output.features.shape == (2, 32)
    attention = output.attentions[0]
    assert attention.shape == (len(attention.tokens_a), len(attention.tokens_b)) and attention.weights.min() >= 0


def test_cache_gives_same_scores_and_resumes_after_a_crash(tiny_llama, tmp_path, monkeypatch):
    plain = LLMTeacher(tiny_llama, device="cpu").score(PAIRS, task="asymmetric", batch_size=2).scores
    path = str(tmp_path / "scores.sqlite")
    teacher = LLMTeacher(tiny_llama, device="cpu", cache=path)
    original = teacher._score_batches
    scored: list[int] = []

    def crash_after_first_batch(pairs, *args):
        for n, batch in enumerate(original(pairs, *args)):
            if n == 1:
                raise KeyboardInterrupt("simulated kill")
            scored.extend(batch[0])
            yield batch

    monkeypatch.setattr(teacher, "_score_batches", crash_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        teacher.score(PAIRS, task="asymmetric", batch_size=2)
    assert len(ScoreCache(path)) == 2  # the finished batch was written before the kill

    resumed = LLMTeacher(tiny_llama, device="cpu", cache=path)
    calls: list[int] = []
    original_resumed = resumed._score_batches

    def counting(pairs, *args):
        calls.append(len(pairs))
        yield from original_resumed(pairs, *args)

    resumed._score_batches = counting
    scores = resumed.score(PAIRS, task="asymmetric", batch_size=2).scores
    assert calls == [len(PAIRS) - 2]  # only the pairs the crash lost
    np.testing.assert_allclose(scores, plain, atol=1e-5)
    calls.clear()
    np.testing.assert_allclose(resumed.score(PAIRS + PAIRS[:1], task="asymmetric").scores[:5], plain, atol=1e-5)
    assert calls == []  # nothing scored twice


def test_cross_encoder_teacher_has_the_same_interface(tiny_llama):
    teacher = CrossEncoderTeacher(tiny_llama, device="cpu")
    output = teacher.score(PAIRS, task="asymmetric", batch_size=2)
    assert output.scores.shape == (len(PAIRS),) and ((output.scores >= 0) & (output.scores <= 1)).all()


def test_errors(tiny_llama, minilm):
    teacher = LLMTeacher(tiny_llama, device="cpu")
    with pytest.raises(ValueError, match="Unknown task"):
        teacher.score(PAIRS, task="ranking")
    with pytest.raises(ValueError):
        teacher.score([], task="symmetric")
    with pytest.raises(ValueError, match="not a decoder-only causal LM"):
        LLMTeacher(minilm)


@pytest.mark.slow
def test_finetuning_the_real_teacher_separates_entailment_from_contradiction(smollm2, shared_data, tmp_path):
    """A few LoRA steps on real SNLI pairs move SmolLM2's P(yes) the right way on held-out pairs."""
    rows = read_nli(f"{shared_data}/nli/snli/train.jsonl.gz")
    pairs = nli_pairs(rows[:1000])
    train, held_out = pairs[:96], pairs[600:680]
    config = TeacherTrainingConfig(lora_r=8, batch_size=16, max_steps=12, learning_rate=5e-4, max_length=64)
    path = finetune_teacher(smollm2, train, str(tmp_path / "teacher"), config=config, device="cpu")
    teacher = LLMTeacher(path, device="cpu", max_length=64)
    scores = teacher.score([(p.text_a, p.text_b) for p in held_out], task="symmetric", batch_size=16).scores
    labels = [int(p.label) for p in held_out]
    assert binary_classification(scores, labels)["auc"] > 0.6
    assert isinstance(train[0], LabelledPair)
