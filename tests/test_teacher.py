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
    """A few LoRA steps on real SNLI pairs teach SmolLM2 to answer yes for entailment and no for contradiction.

    (Held-out quality after a real fine-tuning run is in docs/results.md; 12 CPU steps only show direction.)
    """
    rows = read_nli(f"{shared_data}/nli/snli/train.jsonl.gz")
    train = nli_pairs(rows[:400])[:64]
    texts = [(p.text_a, p.text_b) for p in train]
    labels = [int(p.label) for p in train]
    zero_shot = LLMTeacher(smollm2, device="cpu", max_length=64).score(texts, task="symmetric", batch_size=16).scores
    config = TeacherTrainingConfig(lora_r=8, batch_size=16, max_steps=12, learning_rate=1e-3, max_length=64)
    path = finetune_teacher(smollm2, train, str(tmp_path / "teacher"), config=config, device="cpu")
    teacher = LLMTeacher(path, device="cpu", max_length=64)
    tuned = teacher.score(texts, task="symmetric", batch_size=16).scores
    before, after = binary_classification(zero_shot, labels)["auc"], binary_classification(tuned, labels)["auc"]
    assert after > max(before + 0.1, 0.75), (before, after)
    assert isinstance(train[0], LabelledPair)

    # Real BPE tokens inside SmolLM2's chat template map back onto the words of each text.
    shortest = min(train, key=lambda pair: len(pair.text_a) + len(pair.text_b))
    premise, hypothesis = shortest.text_a, shortest.text_b
    assert not teacher.encode(premise, hypothesis, "symmetric").truncated
    attention = teacher.score([(premise, hypothesis)], task="symmetric", return_attention=True).attentions[0]
    assert "".join(premise[s:e] for s, e in attention.offsets_a).replace(" ", "") == premise.replace(" ", "")
    assert "".join(hypothesis[s:e] for s, e in attention.offsets_b).replace(" ", "") == hypothesis.replace(" ", "")
    assert attention.shape == (len(attention.tokens_a), len(attention.tokens_b)) and attention.weights.sum() > 0


KILL_SCRIPT = """
import sys, time
from d2llm_st.teacher import LLMTeacher

model, cache = sys.argv[1], sys.argv[2]
teacher = LLMTeacher(model, device="cpu", cache=cache)
original = teacher._score_batches


def slow(*args):
    for batch in original(*args):
        yield batch
        time.sleep(0.5)  # the parent kills us while we sleep between committed batches


teacher._score_batches = slow
words = "cat dog bird fish sun rain car road".split()
pairs = [(f"the {a} sat on the mat", f"a {b} ran to the river") for a in words for b in words]
teacher.score(pairs, task="asymmetric", batch_size=4, show_progress_bar=False)
"""


def test_sigkill_mid_run_loses_nothing_already_written(tiny_llama, tmp_path):
    """A real kill -9 between batches: every committed batch survives and the rerun scores only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cache = str(tmp_path / "scores.sqlite")
    script = tmp_path / "score.py"
    script.write_text(KILL_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), tiny_llama, cache])
    deadline = time.time() + 120
    written = 0
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
        if os.path.exists(cache):
            written = len(ScoreCache(cache))
            if written >= 8:
                break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and 8 <= written < 64
    survived = len(ScoreCache(cache))
    assert survived >= written and survived % 4 == 0  # whole batches only

    words = "cat dog bird fish sun rain car road".split()
    pairs = [(f"the {a} sat on the mat", f"a {b} ran to the river") for a in words for b in words]
    teacher = LLMTeacher(tiny_llama, device="cpu", cache=cache)
    original = teacher._score_batches
    counted: list[int] = []

    def counting(pairs, *args):
        counted.append(len(pairs))
        yield from original(pairs, *args)

    teacher._score_batches = counting
    resumed = teacher.score(pairs, task="asymmetric", batch_size=8).scores
    assert counted == [len(pairs) - survived]
    fresh = LLMTeacher(tiny_llama, device="cpu").score(pairs, task="asymmetric", batch_size=8).scores
    np.testing.assert_array_equal(resumed, fresh)  # cached values are bit-identical float32


def test_cross_encoder_teacher_matches_the_llm_teacher_with_the_same_prompt(tiny_llama):
    """A causal-LM CrossEncoder scores sigmoid(logit_yes - logit_no) of "a b": the LLM teacher with that template."""
    from d2llm_st.teacher import PromptTemplate

    bare = PromptTemplate(instruction="", pair_format="{a} {b}", answer_prefix="")
    llm = LLMTeacher(  # float32, as the CrossEncoder loads it
        tiny_llama, device="cpu", dtype="float32", templates={"asymmetric": bare}, use_chat_template=False
    )
    ce = CrossEncoderTeacher(tiny_llama, device="cpu")
    expected = llm.score(PAIRS, task="asymmetric", return_features=True)
    got = ce.score(PAIRS, task="asymmetric", batch_size=2, return_features=True)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)
    np.testing.assert_allclose(got.features, expected.features, atol=1e-4)
    assert ce.identity != llm.identity and ce.tokenizer is ce.model.tokenizer
    with pytest.raises(NotImplementedError, match="attention"):
        ce.score(PAIRS, task="asymmetric", return_attention=True)


def test_attention_is_the_last_layer_passage_to_query_map(tiny_llama):
    """weights[i, j] is the head-averaged last-layer attention of passage token j on query token i."""
    import torch

    teacher = LLMTeacher(tiny_llama, device="cpu", dtype="float32")  # compared with a direct forward below
    query, passage = PAIRS[0]
    attention = teacher.score([(query, passage)], task="asymmetric", return_attention=True).attentions[0]
    assert attention.tokens_a == query.split() and attention.tokens_b == passage.split()
    assert [query[s:e] for s, e in attention.offsets_a] == query.split()
    assert [passage[s:e] for s, e in attention.offsets_b] == passage.split()

    encoded = teacher.encode(query, passage, "asymmetric")
    teacher.model.set_attn_implementation("eager")
    with torch.no_grad():
        output = teacher.model(torch.tensor([encoded.input_ids]), output_attentions=True)
    full = output.attentions[-1][0].mean(0)
    expected = full[encoded.positions_b][:, encoded.positions_a].T.numpy()
    np.testing.assert_allclose(np.asarray(attention), expected, atol=1e-5)
    assert teacher.model.config._attn_implementation == "eager"  # (set by this test, not by score())


def test_chat_template_rendering_and_answer_tokens(tiny_llama, tmp_path):
    """With a chat template the instruction is the system turn and the answer follows the assistant header."""
    from transformers import AutoTokenizer

    from d2llm_st.teacher import ASYMMETRIC_TEMPLATE, PromptTemplate
    from d2llm_st.teacher.templates import PromptRenderer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.chat_template = (
        "{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
        "{% if add_generation_prompt %}<s> assistant\n{% endif %}"
    )
    renderer = PromptRenderer(tokenizer)
    rendered = renderer.render(ASYMMETRIC_TEMPLATE, "who cooks pizza ?", "the chef")
    assert rendered.text.startswith(f"<s> system {ASYMMETRIC_TEMPLATE.instruction} </s>")
    assert rendered.text[slice(*rendered.span_a)] == "who cooks pizza ?"
    assert rendered.text[slice(*rendered.span_b)] == "the chef" and rendered.text.endswith("assistant\n")
    assert renderer.answer_follows_whitespace(ASYMMETRIC_TEMPLATE)

    tokenizer.chat_template = (  # a template that refuses the system role (like Gemma's)
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "<s> {{ m['content'] }} </s> {% endfor %}<s> assistant\n"
    )
    rendered = PromptRenderer(tokenizer).render(ASYMMETRIC_TEMPLATE, "who cooks pizza ?", "the chef")
    assert rendered.text.startswith(f"<s> {ASYMMETRIC_TEMPLATE.instruction}\n\nQuery: who cooks pizza ?")

    with pytest.raises(ValueError, match=r"\{a\} and \{b\}"):
        PromptTemplate(instruction="x", pair_format="{a} only")
    with pytest.raises(ValueError, match="cannot write the answer word"):
        LLMTeacher(tiny_llama, device="cpu", answer_words=("affirmative", "no"))
    with pytest.raises(ValueError, match="same token"):
        LLMTeacher(tiny_llama, device="cpu", answer_words=("no", "no"))


def test_long_pairs_are_cut_passage_first_with_a_warning(tiny_llama, caplog):
    teacher = LLMTeacher(tiny_llama, device="cpu", max_length=30)
    query, passage = "who cooks pizza ?", " ".join(["the chef cooks pizza in the kitchen"] * 4)
    with caplog.at_level("WARNING"):
        encoded = teacher.encode_batch([(query, passage)], ["asymmetric"])[0]
    assert "longer than max_length=30" in caplog.text and encoded.truncated
    assert len(encoded.input_ids) == 30
    assert len(encoded.positions_a) == 4 and len(encoded.positions_b) == 8  # the passage pays (query <= half)
    assert encoded.input_ids[-1] == teacher.encode(query, "the chef", "asymmetric").input_ids[-1]  # answer line kept
    assert 0 < teacher.score([(query, passage)], task="asymmetric").scores[0] < 1


def test_models_that_cannot_teach_are_refused_naming_what_they_are(tiny_llama, minilm, tmp_path):
    """A CrossEncoder built from any of these would score with a newly initialised head: ~0.5 for every pair."""
    import torch
    from transformers import BertConfig

    from d2llm_st import D2LLM
    from d2llm_st.evaluation import load_scorer
    from d2llm_st.model_folders import check_pair_scorer, inspect_folder
    from d2llm_st.teacher import load_teacher

    bi_encoder = r"is a sentence-transformers bi-encoder \(Transformer -> Pooling -> Normalize\), not a pair scorer"
    for load in (load_teacher, CrossEncoderTeacher, lambda path: load_teacher(path, kind="cross-encoder")):
        with pytest.raises(ValueError, match=bi_encoder):
            load(minilm)

    def bert(name: str, architecture: str) -> str:
        config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
        config.architectures = [architecture]
        config.save_pretrained(str(tmp_path / name))
        return str(tmp_path / name)

    with pytest.raises(ValueError, match=r"without a scoring or LM head \(BertModel\).*newly initialised"):
        load_teacher(bert("encoder", "BertModel"))
    check_pair_scorer(inspect_folder(bert("classifier", "BertForSequenceClassification")), "teacher")  # has a head

    torch.manual_seed(0)
    student = str(tmp_path / "student")
    D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=8, device="cpu").save_pretrained(student)
    with pytest.raises(ValueError, match=r"is a D2LLM student .*not a pair scorer"):
        load_teacher(student)
    with pytest.raises(ValueError, match=r"is a D2LLM student .*--model-type d2llm"):
        load_scorer(student, "cross-encoder")


@pytest.mark.slow
def test_a_cut_inside_a_character_split_over_several_tokens_still_ends(smollm2):
    """SmolLM2's byte-level BPE spells "∼" with several tokens that share one character span: cutting one of them
    by characters removed nothing, and SciFact abstracts made the cut loop spin forever."""
    import signal

    teacher = LLMTeacher(smollm2, device="cpu", max_length=512)
    query, passage = "Is DNA methylation dynamic?", "We quantified genome-wide patterns of DNA methylation at ∼"
    full = len(teacher.encode(query, passage, "asymmetric").input_ids)
    teacher.max_length = full - 1  # the cut must drop the last token, one piece of "∼"

    def hang(*_):
        raise TimeoutError("the cut loop did not end")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        encoded = teacher.encode(query, passage, "asymmetric")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert encoded.truncated and len(encoded.input_ids) <= full - 1
    assert len(encoded.positions_b) < len(teacher.tokenizer(passage, add_special_tokens=False)["input_ids"])
