"""Evaluators and scorers: same figures as sentence-transformers' evaluators for a bi-encoder, IEM scores for a
D2LLM, joint scores for cross-encoders and teachers, and the ``d2llm eval`` command."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder, SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling

from d2llm_st import D2LLM
from d2llm_st.cli import main as cli_main
from d2llm_st.data import subsample
from d2llm_st.evaluation import (
    IEMBinaryClassificationEvaluator,
    IEMInformationRetrievalEvaluator,
    IEMRerankingEvaluator,
    IEMSimilarityEvaluator,
    Scorer,
    as_scorer,
    correlation,
    detect_model_type,
    ranking,
)

PAIRS = [
    ("the cat sat on the mat", "a cat sat on a mat"),
    ("the dog ran in the city", "the cat sat on the mat"),
    ("paris is the capital of france", "the capital of france is paris"),
    ("the chef cooks pizza", "rain and cold weather"),
    ("a boy play football", "a child play soccer"),
    ("the sun is hot in summer", "winter is cold"),
]
GOLD = [0.9, 0.1, 1.0, 0.0, 0.7, 0.3]
CORPUS = {
    "d1": "paris is the capital of france",
    "d2": "the chef cooks pizza in the kitchen",
    "d3": "the cat sat on the mat",
    "d4": "a team play football and score a goal",
    "d5": "rain and cold weather in winter",
    "d6": "the drug increases protein in patients",
}
QUERIES = {"q1": "what is the capital of france ?", "q2": "who cooks pizza ?", "q3": "what drug increases protein ?"}
QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d6": 1}}


@pytest.fixture(scope="module")
def student(tiny_llama):
    torch.manual_seed(0)
    model = D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=16, query_prompt="query :", device="cpu")
    for branch in (model.iem.symmetric, model.iem.asymmetric):  # an untrained head is near zero everywhere
        torch.nn.init.normal_(branch.head.weight, std=3.0)
    return model


@pytest.fixture(scope="module")
def cross_encoder(tiny_llama):
    model = CrossEncoder(tiny_llama, device="cpu")
    model.tokenizer.pad_token = model.tokenizer.eos_token
    return model


class FixedScorer(Scorer):
    """Scores looked up from a table, to check metric plumbing exactly."""

    model_type = "fixed"
    score_name = "fixed"

    def __init__(self, table: dict[tuple[str, str], float]) -> None:
        super().__init__(None, show_progress_bar=False, name="fixed")
        self.table = table
        self.calls: list[tuple[list, str]] = []

    def score_pairs(self, pairs, task):
        self.calls.append((list(pairs), task))
        return np.array([self.table[tuple(pair)] for pair in pairs], dtype=np.float32)


def test_similarity_uses_the_symmetric_iem(student):
    evaluator = IEMSimilarityEvaluator([a for a, _ in PAIRS], [b for _, b in PAIRS], GOLD, name="sts")
    metrics = evaluator(student)
    expected = correlation(student.predict(PAIRS, "symmetric", apply_sigmoid=False), GOLD)
    assert metrics == pytest.approx({"sts_spearman": expected["spearman"], "sts_pearson": expected["pearson"]})
    assert evaluator.primary_metric == "sts_spearman"
    swapped = IEMSimilarityEvaluator([b for _, b in PAIRS], [a for a, _ in PAIRS], GOLD, name="sts")(student)
    assert swapped == pytest.approx(metrics, abs=1e-6)  # symmetric branch: order does not matter


def test_binary_classification_on_fixed_scores():
    table = {pair: score for pair, score in zip(PAIRS, [0.9, 0.2, 0.8, 0.7, 0.1, 0.3])}
    labels = [1, 0, 1, 0, 1, 0]
    evaluator = IEMBinaryClassificationEvaluator([a for a, _ in PAIRS], [b for _, b in PAIRS], labels)
    metrics = evaluator(FixedScorer(table))
    # positives score 0.9, 0.8, 0.1; negatives 0.7, 0.3, 0.2: 6 of 9 positive-negative pairs ordered right.
    assert metrics["auc"] == pytest.approx(6 / 9)
    assert metrics["accuracy"] == pytest.approx(5 / 6)  # positive above 0.75: 0.9, 0.8 right, 0.1 wrong
    assert evaluator.primary_metric == "auc"  # the headline figure of NLI sets (issue 19: headline = primary)
    with pytest.raises(ValueError, match="both 0 and 1"):
        IEMBinaryClassificationEvaluator(["a"], ["b"], [1])


def test_accuracy_at_a_threshold_chosen_on_another_split():
    from d2llm_st.evaluation import binary_classification

    dev = binary_classification([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [1, 1, 0, 1, 0, 0])
    assert dev["accuracy"] == pytest.approx(5 / 6) and dev["accuracy_threshold"] == pytest.approx(0.75)
    assert "accuracy_at_threshold" not in dev
    # Its own threshold reproduces the best accuracy; on other scores it gives what a fixed rule gets there.
    assert binary_classification([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [1, 1, 0, 1, 0, 0], dev["accuracy_threshold"])[
        "accuracy_at_threshold"
    ] == pytest.approx(5 / 6)
    test = binary_classification([0.76, 0.74, 0.5, 0.9], [1, 1, 0, 0], threshold=dev["accuracy_threshold"])
    assert test["accuracy_at_threshold"] == pytest.approx(2 / 4)  # 0.76 and 0.5 right; 0.74, 0.9 wrong
    assert test["accuracy"] == pytest.approx(3 / 4)  # the optimistic figure: best cut of the test scores
    # Ties are cut together, and a threshold may be anywhere, also below every score or above it.
    tied = binary_classification([0.5, 0.5, 0.5, 0.1], [1, 0, 1, 0])
    assert tied["accuracy"] == pytest.approx(3 / 4) and tied["accuracy_threshold"] == pytest.approx(0.3)
    worst = binary_classification([0.1, 0.2, 0.9], [1, 0, 0])
    assert worst["accuracy"] == pytest.approx(2 / 3) and worst["accuracy_threshold"] > 0.9  # all negative
    assert binary_classification([0.1, 0.2], [1, 0], threshold=-5.0)["accuracy_at_threshold"] == 0.5


def test_nli_evaluator_and_cli_take_a_dev_threshold(student, tmp_path):
    from d2llm_st.evaluation import binary_classification, build_evaluator

    rows = [
        {"premise": a, "hypothesis": b, "label": "entailment" if g > 0.5 else "contradiction"}
        for (a, b), g in zip(PAIRS, GOLD)
    ]
    rows.append({"premise": "the cat sat", "hypothesis": "a cat", "label": "neutral"})  # dropped
    data = tmp_path / "nli"
    data.mkdir()
    for split in ("dev", "test"):
        with gzip.open(data / f"{split}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    scores = student.predict(PAIRS, "symmetric", apply_sigmoid=False)
    labels = [int(g > 0.5) for g in GOLD]
    threshold = float(np.median(scores))
    expected = binary_classification(scores, labels, threshold)
    evaluator = build_evaluator("nli", str(data), split="test", threshold=threshold)
    assert evaluator(student) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="nli eval sets only"):
        build_evaluator("sts", str(data), threshold=0.5)

    student.save_pretrained(str(tmp_path / "student"))
    argv = ["eval", "--model", str(tmp_path / "student"), "--task", "nli", "--data", str(data), "--device", "cpu"]
    assert cli_main([*argv, "--split", "dev", "--output", str(tmp_path / "dev.json")]) == 0
    dev = json.loads((tmp_path / "dev.json").read_text())
    chosen = dev["metrics"]["accuracy_threshold"]
    assert dev["settings"]["threshold"] is None and "accuracy_at_threshold" not in dev["metrics"]
    assert cli_main([*argv, "--threshold", repr(chosen), "--output", str(tmp_path / "test.json")]) == 0
    test = json.loads((tmp_path / "test.json").read_text())
    assert test["settings"]["threshold"] == chosen
    assert test["metrics"]["accuracy_at_threshold"] == pytest.approx(dev["metrics"]["accuracy"])  # same pairs here
    assert cli_main([*argv, "--threshold", "-2.5", "--output", str(tmp_path / "neg.json")]) == 0
    assert json.loads((tmp_path / "neg.json").read_text())["settings"]["threshold"] == -2.5
    assert (
        cli_main(
            ["eval", "--model", str(tmp_path / "student"), "--task", "sts", "--data", str(data), "--threshold", "1"]
        )
        == 2
    )


def test_reranking_map_and_mrr_on_fixed_scores():
    samples = [
        {"query": "q1", "positive": ["p1"], "negative": ["n1", "n2"]},  # ranked 2nd: AP 1/2, RR 1/2
        {"query": "q2", "positive": ["p2", "p3"], "negative": ["n3"]},  # ranked 1st and 3rd: AP (1 + 2/3)/2, RR 1
        {"query": "q3", "positive": [], "negative": ["n4"]},  # no positive: skipped
    ]
    table = {("q1", "p1"): 0.5, ("q1", "n1"): 0.9, ("q1", "n2"): 0.1}
    table |= {("q2", "p2"): 0.8, ("q2", "p3"): 0.1, ("q2", "n3"): 0.4}
    scorer = FixedScorer(table)
    metrics = IEMRerankingEvaluator(samples, name="as")(scorer)
    assert metrics["as_map"] == pytest.approx((0.5 + (1 + 2 / 3) / 2) / 2)
    assert metrics["as_mrr"] == pytest.approx((0.5 + 1) / 2)
    assert {task for _, task in scorer.calls} == {"asymmetric"}


def test_d2llm_is_ranked_by_logits_where_its_p_yes_rounds_to_one(tiny_llama):
    torch.manual_seed(0)
    model = D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=16, device="cpu")
    torch.nn.init.normal_(model.iem.asymmetric.head.weight, std=3.0)
    torch.nn.init.constant_(model.iem.asymmetric.head.bias, 60.0)  # float32 sigmoid: 1.0 for every pair
    docs = list(CORPUS.values())
    pairs = [("what is the capital of france ?", doc) for doc in docs]
    assert (model.predict(pairs) == 1.0).all()
    logits = model.predict(pairs, apply_sigmoid=False)
    assert len(set(logits.tolist())) == len(docs)
    assert as_scorer(model).score_pairs(pairs, "asymmetric") == pytest.approx(logits, abs=1e-4)
    # The worst-scored document listed first: tied scores would keep that order and rank it first.
    worst = int(np.argmin(logits))
    sample = {
        "query": pairs[0][0],
        "positive": [docs[worst]],
        "negative": [d for i, d in enumerate(docs) if i != worst],
    }
    metrics = IEMRerankingEvaluator([sample], name="as")(model)
    assert metrics["as_mrr"] == pytest.approx(1 / len(docs))


def test_bi_encoder_matches_sentence_transformers_evaluators(minilm, shared_data):
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        InformationRetrievalEvaluator,
    )

    model = SentenceTransformer(minilm, device="cpu")
    sts = IEMSimilarityEvaluator.from_file(os.path.join(shared_data, "sts/stsb/test.jsonl.gz"), limit=60)
    ours = sts(model)
    sentences1, sentences2 = [a for a, _ in sts.pairs], [b for _, b in sts.pairs]
    reference = EmbeddingSimilarityEvaluator(sentences1, sentences2, sts.gold, main_similarity="cosine")(model)
    assert ours["spearman"] == pytest.approx(reference["spearman_cosine"], abs=1e-6)
    assert ours["pearson"] == pytest.approx(reference["pearson_cosine"], abs=1e-5)

    ir = IEMInformationRetrievalEvaluator.from_beir(
        os.path.join(shared_data, "ir/scifact"), limit=8, max_corpus=150, candidate_k=100
    )
    ours = ir(model)
    assert not any(key.startswith("first_stage") for key in ours)  # a bi-encoder is not reranked
    reference = InformationRetrievalEvaluator(
        ir.queries,
        ir.corpus,
        {q: set(d) for q, d in ir.qrels.items()},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[100],
        map_at_k=[100],
        show_progress_bar=False,
        write_csv=False,
    )(model)
    assert ours["ndcg@10"] == pytest.approx(reference["cosine_ndcg@10"], abs=1e-5)
    assert ours["mrr@10"] == pytest.approx(reference["cosine_mrr@10"], abs=1e-5)
    assert ours["recall@100"] == pytest.approx(reference["cosine_recall@100"], abs=1e-5)


def test_ir_reranks_cosine_candidates_with_the_iem(student):
    evaluator = IEMInformationRetrievalEvaluator(QUERIES, CORPUS, QRELS, candidate_k=3, k=10, recall_k=(3, 6))
    metrics = evaluator(student)
    doc_ids = list(CORPUS)
    passages = student.encode_texts(list(CORPUS.values()), "passage")
    run = {}
    for query_id, text in QUERIES.items():
        query = student.encode_texts([text], "query")[0]
        cosine = torch.nn.functional.cosine_similarity(query[None], passages)
        order = cosine.argsort(descending=True).tolist()
        top = order[:3]
        iem = student.score(query, passages[top]).tolist()
        ranked = [top[i] for i in sorted(range(3), key=lambda i: -iem[i])] + order[3:]
        run[query_id] = {doc_ids[j]: float(len(ranked) - r) for r, j in enumerate(ranked)}
    expected = ranking(run, QRELS, k=10, recall_k=(3, 6))
    assert {key: metrics[key] for key in expected} == pytest.approx(expected)
    assert metrics["recall@3"] == pytest.approx(metrics["first_stage_recall@3"])  # rerank keeps the candidate set
    first_only = IEMInformationRetrievalEvaluator(QUERIES, CORPUS, QRELS, candidate_k=0, recall_k=(3,))(student)
    assert first_only["ndcg@10"] == pytest.approx(metrics["first_stage_ndcg@10"])
    assert "first_stage_ndcg@10" not in first_only


def test_ir_cross_encoder_reranks_a_first_stage(student, cross_encoder):
    evaluator = IEMInformationRetrievalEvaluator(QUERIES, CORPUS, QRELS, candidate_k=6, recall_k=(6,))
    with pytest.raises(ValueError, match="first_stage"):
        evaluator(cross_encoder)
    evaluator.first_stage = student
    metrics = evaluator(cross_encoder)
    run = {
        query_id: dict(zip(CORPUS, cross_encoder.predict([(text, passage) for passage in CORPUS.values()]).tolist()))
        for query_id, text in QUERIES.items()
    }
    expected = ranking(run, QRELS, k=10, recall_k=(6,))  # all 6 candidates reranked: the CE's own order
    assert {key: metrics[key] for key in expected} == pytest.approx(expected)


def test_teacher_scores_through_the_teacher_interface(tiny_llama):
    from d2llm_st.teacher import LLMTeacher

    teacher = LLMTeacher(tiny_llama, device="cpu")
    samples = [{"query": "who cooks pizza ?", "positive": ["the chef cooks pizza"], "negative": ["rain", "cat"]}]
    scorer = as_scorer(teacher, show_progress_bar=False)
    pairs = [("who cooks pizza ?", text) for text in ("the chef cooks pizza", "rain", "cat")]
    expected = teacher.score(pairs, "asymmetric").scores
    np.testing.assert_allclose(scorer.score_pairs(pairs, "asymmetric"), expected, rtol=1e-6)
    metrics = IEMRerankingEvaluator(samples)(teacher)
    assert metrics["mrr"] == pytest.approx(1.0 / (1 + int((expected[1:] > expected[0]).sum())))


def test_works_as_a_trainer_evaluator(student, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    evaluator = IEMSimilarityEvaluator([a for a, _ in PAIRS], [b for _, b in PAIRS], GOLD, name="sts-dev")
    trainer = SentenceTransformerTrainer(
        model=student,
        args=SentenceTransformerTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True),
        train_dataset=Dataset.from_dict({"anchor": ["the cat"], "positive": ["a cat"]}),
        loss=MultipleNegativesRankingLoss(student),
        evaluator=evaluator,
    )
    metrics = trainer.evaluate()
    assert metrics["eval_sts-dev_spearman"] == pytest.approx(evaluator(student)["sts-dev_spearman"])


def test_detect_model_type(student, cross_encoder, tiny_llama, minilm, tmp_path):
    student.save_pretrained(str(tmp_path / "student"))
    cross_encoder.save_pretrained(str(tmp_path / "ce"))
    assert detect_model_type(str(tmp_path / "student")) == "d2llm"
    assert detect_model_type(str(tmp_path / "ce")) == "cross-encoder"
    assert detect_model_type(minilm) == "bi-encoder"
    baseline = SentenceTransformer(
        modules=[student[0], Pooling(student[0].get_embedding_dimension(), pooling_mode="mean")]
    )
    baseline.save_pretrained(str(tmp_path / "mean-pooled-llm"))  # the MNRL baseline's layout: LLMBackbone + Pooling
    assert detect_model_type(str(tmp_path / "mean-pooled-llm")) == "bi-encoder"
    assert detect_model_type(tiny_llama) == "teacher"  # a plain causal LM: a (zero-shot) yes/no teacher
    with pytest.raises(ValueError, match="--model-type"):
        detect_model_type(str(tmp_path))
    with pytest.raises(TypeError, match="D2LLM"):
        as_scorer(SentenceTransformer(str(tmp_path / "student"), device="cpu"))


def test_load_scorer_merges_the_lora_of_an_llm_bi_encoder(tiny_llama, tmp_path, monkeypatch):
    from d2llm_st.evaluation import load_scorer
    from d2llm_st.training import StudentConfig, build_baseline

    monkeypatch.setenv("D2LLM_CPU_DTYPE", "float32")  # an exact merge (bf16 rounds it)
    baseline = build_baseline(StudentConfig(model_name_or_path=tiny_llama, lora_r=4))
    with torch.no_grad():
        for name, param in baseline[0].named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # a trained adapter: merged or not matters
    baseline.save_pretrained(str(tmp_path))
    texts = [a for a, _ in PAIRS]
    expected = baseline.encode(texts, convert_to_tensor=True)
    scorer = load_scorer(str(tmp_path), device="cpu")
    assert not scorer.model[0].has_lora
    torch.testing.assert_close(scorer.model.encode(texts, convert_to_tensor=True), expected, atol=1e-5, rtol=0)


def test_subsample_is_fixed_and_keeps_order():
    items = list(range(100))
    first, second = subsample(items, 10, what="items"), subsample(items, 10, what="items")
    assert first == second == sorted(first) and len(set(first)) == 10 and first != items[:10]
    assert subsample(items, None, what="items") == items


def test_cli_eval(student, tmp_path, capsys):
    student.save_pretrained(str(tmp_path / "student"))
    data = tmp_path / "sts"
    data.mkdir()
    with gzip.open(data / "test.jsonl.gz", "wt", encoding="utf-8") as f:
        for (a, b), score in zip(PAIRS, GOLD):
            f.write(json.dumps({"sentence1": a, "sentence2": b, "score": 5 * score}) + "\n")
    output = tmp_path / "result.json"
    argv = ["eval", "--model", str(tmp_path / "student"), "--task", "sts", "--data", str(data), "--device", "cpu"]
    assert cli_main([*argv, "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["settings"]["model_type"] == "d2llm" and result["settings"]["score"] == "IEM logit"
    expected = correlation(D2LLM(str(tmp_path / "student"), device="cpu").predict(PAIRS, "symmetric"), GOLD)
    assert result["metrics"]["spearman"] == pytest.approx(expected["spearman"], abs=1e-6)
    assert "spearman" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["eval", "--help"])
    assert "answer-selection" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_evaluates_the_real_llm_as_a_teacher(smollm2, shared_data, tmp_path):
    from d2llm_st.teacher import LLMTeacher

    output = tmp_path / "result.json"
    data = os.path.join(shared_data, "ir/wikiqa")
    argv = ["eval", "--model", smollm2, "--task", "answer-selection", "--data", data, "--limit", "3"]
    assert cli_main([*argv, "--device", "cpu", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["settings"]["model_type"] == "teacher"  # a plain causal LM folder is a zero-shot judge
    evaluator = IEMRerankingEvaluator.from_beir(data, "test", limit=3)
    expected = evaluator(LLMTeacher(smollm2, device="cpu"))
    assert result["metrics"] == pytest.approx(expected, abs=1e-6)


def test_one_factory_builds_every_eval_type_and_the_headline_is_its_primary_metric(tmp_path, student):
    from d2llm_st.evaluation import EVALUATOR_CLASSES, build_evaluator, evaluate, headline_metric
    from d2llm_st.tasks import EVAL_TYPES

    assert set(EVALUATOR_CLASSES) == set(EVAL_TYPES)
    sts = tmp_path / "sts"
    sts.mkdir()
    with gzip.open(sts / "dev.jsonl.gz", "wt", encoding="utf-8") as f:
        for (a, b), score in zip(PAIRS, GOLD):
            f.write(json.dumps({"sentence1": a, "sentence2": b, "score": score}) + "\n")
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "candidates").mkdir()
    with gzip.open(beir / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": doc, "title": "", "text": text}) + "\n" for doc, text in CORPUS.items())
    with gzip.open(beir / "queries.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": query, "text": text}) + "\n" for query, text in QUERIES.items())
    lines = "".join(f"{q}\t{d}\t1\n" for q, docs in QRELS.items() for d in docs)
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + lines)
    wrong = "".join(f"{q}\td5\t0\n" for q in QRELS)
    (beir / "candidates" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + lines + wrong)

    data = {"sts": str(sts), "ir": str(beir), "answer-selection": str(beir)}
    for eval_type, path in data.items():
        evaluator = build_evaluator(eval_type, path, split="dev", name=eval_type, candidate_k=3)
        assert isinstance(evaluator, EVALUATOR_CLASSES[eval_type])
        metrics = evaluate(student, [evaluator])[eval_type]
        # The headline is the evaluator's own primary_metric (after a call ST prefixes it with the name).
        assert evaluator.primary_metric == f"{eval_type}_{headline_metric(evaluator)}"
        assert headline_metric(evaluator) == headline_metric(eval_type) and headline_metric(evaluator) in metrics
    assert [headline_metric(t) for t in ("sts", "nli", "ir", "answer-selection")] == [
        "spearman",
        "auc",
        "ndcg@10",
        "ndcg@10",
    ]
    with pytest.raises(ValueError, match="it is spelled 'answer-selection'"):
        build_evaluator("answer_selection", str(beir))


def test_the_cli_builds_its_evaluator_with_the_factory_and_marks_the_primary_metric(
    monkeypatch, student, tmp_path, capsys
):
    """``d2llm eval`` builds its evaluator with build_evaluator and marks the primary metric."""
    from d2llm_st.evaluation import factory

    calls = []
    original = factory.build_evaluator

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(factory, "build_evaluator", recording)
    import d2llm_st.evaluation as evaluation

    monkeypatch.setattr(evaluation, "build_evaluator", recording)
    student.save_pretrained(str(tmp_path / "student"))
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) + "\n" for (a, b), s in zip(PAIRS, GOLD))
    )
    assert cli_main(["eval", "--model", str(tmp_path / "student"), "--task", "sts", "--data", str(data)]) == 0
    assert calls and calls[0][0][:2] == ("sts", str(data))
    assert "spearman" in capsys.readouterr().out.split("(primary)")[0].splitlines()[-1]
