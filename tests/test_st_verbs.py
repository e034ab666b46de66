"""A D2LLM speaks sentence-transformers' verbs: ``similarity`` / ``similarity_pairwise`` are the IEM, ``rank`` is
``CrossEncoder.rank``, and sentence-transformers' own evaluators measure the IEM (checked against direct scoring)."""

from __future__ import annotations

import inspect
import json
import os

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sentence_transformers import CrossEncoder, SimilarityFunction
from sentence_transformers.sentence_transformer.evaluation import (
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
)

import d2llm_st.model
from d2llm_st import D2LLM
from d2llm_st.evaluation import IEMInformationRetrievalEvaluator, IEMSimilarityEvaluator
from d2llm_st.evaluation.metrics import ranking

QUERIES = {
    "q1": "what is the capital of france ?",
    "q2": "who cooks pizza in the kitchen ?",
    "q3": "where do fish swim ?",
    "q4": "what is the effect of the drug on patients ?",
}
CORPUS = {
    "d0": "paris is the capital of france",
    "d1": "the chef cooks pizza in the kitchen",
    "d2": "fish swam in the river",
    "d3": "the drug increases the effect of the protein",
    "d4": "the cat sat on the mat",
    "d5": "a dog ran in the city",
    "d6": "the team play football in the rain",
    "d7": "the sun is hot in summer",
    "d8": "a study of patients and treatment",
}
STS = [
    ("the cat sat on the mat", "a cat sat on the sofa", 4.0),
    ("a dog ran in the city", "the dog ran to the river", 3.0),
    ("the chef cooks pizza", "a man is eating bread", 1.5),
    ("the sun is hot in summer", "it is cold in winter", 1.0),
    ("paris is the capital of france", "the capital of france is paris", 5.0),
    ("the team play football", "people play soccer", 3.5),
    ("fish swam in the sea", "the bird flew to the tree", 0.5),
    ("the drug increases the effect", "the drug decreases the effect", 2.0),
]


def build(path: str, **kwargs) -> D2LLM:
    torch.manual_seed(0)
    model = D2LLM.from_llm(
        path,
        pma_heads=4,
        iem_hidden_dim=16,
        query_prompt="query : ",
        passage_prompt="passage : ",
        symmetric_prompt="text : ",
        device="cpu",
        **kwargs,
    )
    with torch.no_grad():  # move PMA / IEM away from their init, so the IEM ranks unlike the cosine
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def model(tiny_llama) -> D2LLM:
    return build(tiny_llama)


def iem_run(model: D2LLM) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """``{query: {doc: score}}`` from the IEM (``D2LLM.score``) and from the embeddings' cosine, fresh encodings."""
    doc_ids = list(CORPUS)
    passages = model.encode_texts([CORPUS[d] for d in doc_ids], "passage")
    iem, cosine = {}, {}
    for query_id, text in QUERIES.items():
        query = model.encode_texts([text], "query")[0]
        iem[query_id] = dict(zip(doc_ids, model.score(query, passages, apply_sigmoid=False).tolist()))
        cosine[query_id] = dict(zip(doc_ids, torch.cosine_similarity(query[None], passages).tolist()))
    return iem, cosine


def top(run: dict[str, float], position: int) -> str:
    return sorted(run, key=lambda doc: -run[doc])[position]


# --- similarity / similarity_pairwise ----------------------------------------------------------------------


def test_similarity_is_the_iem_with_the_default_or_given_task(model):
    queries = model.encode_query(list(QUERIES.values()), convert_to_tensor=True)
    docs = model.encode_document(list(CORPUS.values()), convert_to_tensor=True)
    assert model.similarity_fn_name == "iem" and model.default_task == "asymmetric"

    scores = model.similarity(queries, docs)
    assert scores.shape == (len(QUERIES), len(CORPUS)) and scores.dtype == torch.float32
    for i in range(len(QUERIES)):
        torch.testing.assert_close(scores[i], model.score(queries[i], docs, apply_sigmoid=False))
    torch.testing.assert_close(model.similarity(queries, docs, task="asymmetric"), scores)
    symmetric = model.similarity(queries, docs, task="symmetric")
    with torch.no_grad():
        torch.testing.assert_close(symmetric, model.iem.pairwise_logits(queries, docs, "symmetric"))
    assert not torch.allclose(symmetric, scores, atol=1e-3)
    # Logits, not cosine: the cosine would be in [-1, 1] and rank differently.
    cosine = torch.cosine_similarity(queries[:, None], docs[None], dim=-1)
    assert not torch.equal(scores.argsort(dim=1), cosine.argsort(dim=1))

    # One [d] query, numpy and lists of vectors are accepted like sentence-transformers' similarity functions.
    torch.testing.assert_close(model.similarity(queries[0], docs), scores[:1])
    torch.testing.assert_close(model.similarity(queries.numpy(), list(docs.numpy())), scores)

    pairwise = model.similarity_pairwise(queries, docs[: len(QUERIES)])
    torch.testing.assert_close(pairwise, model.score(queries, docs[: len(QUERIES)], apply_sigmoid=False))
    torch.testing.assert_close(pairwise, scores.diagonal())
    torch.testing.assert_close(
        model.similarity_pairwise(queries, docs[: len(QUERIES)], task="symmetric"), symmetric.diagonal()
    )


def test_similarity_in_small_blocks_gives_the_same_scores(model, monkeypatch):
    queries = model.encode_query(list(QUERIES.values()), convert_to_tensor=True)
    docs = model.encode_document(list(CORPUS.values()), convert_to_tensor=True)
    whole, pairwise = model.similarity(queries, docs), model.similarity_pairwise(queries, docs[:4])
    width = 2 * model.iem.embedding_dim + 3 * model.iem.hidden_dim
    for pairs in (1, 3, 7, 20):  # 1 pair a block; blocks that split a row; several rows a block
        monkeypatch.setattr(d2llm_st.model, "SIMILARITY_BLOCK_ELEMENTS", pairs * width)
        assert model._pairs_per_block() == pairs
        torch.testing.assert_close(model.similarity(queries, docs), whole)
        torch.testing.assert_close(model.similarity_pairwise(queries, docs[:4]), pairwise)
    assert model.similarity(queries[:0], docs).shape == (0, len(CORPUS))


def test_similarity_records_autograd_only_when_an_input_requires_it(model):
    docs = model.encode_document(list(CORPUS.values()), convert_to_tensor=True)
    assert not model.similarity(docs, docs).requires_grad
    trainable = docs.clone().requires_grad_(True)  # clones: encode returns inference tensors
    model.similarity_pairwise(trainable, docs.clone()).sum().backward()
    assert trainable.grad is not None and model.iem.asymmetric.head.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_similarity_errors_name_the_fix(model):
    docs = model.encode_document(list(CORPUS.values())[:3], convert_to_tensor=True)
    with pytest.raises(ValueError, match="Unknown task"):
        model.similarity(docs, docs, task="sts")
    with pytest.raises(ValueError, match=r"this model's size, \[N, 32\]"):
        model.similarity(docs[:, :8], docs)
    with pytest.raises(ValueError, match="use similarity"):
        model.similarity_pairwise(docs, docs[:2])
    with pytest.raises(ValueError, match="always 'iem'.*cos"):
        model.similarity_fn_name = "cosine"
    with pytest.raises(ValueError, match="always 'iem'"):
        model.similarity_fn_name = SimilarityFunction.DOT_PRODUCT
    model.similarity_fn_name = "iem"
    assert model.similarity_fn_name == "iem"
    with pytest.raises(ValueError, match="Unknown task"):
        model.default_task = "ranking"


def test_encode_query_and_encode_document_apply_the_stored_prompts(model):
    query, passage = QUERIES["q1"], CORPUS["d0"]
    torch.testing.assert_close(
        model.encode_query(query, convert_to_tensor=True), model.encode_texts([query], "query")[0]
    )
    torch.testing.assert_close(
        model.encode_document([passage], convert_to_tensor=True), model.encode_texts([passage], "passage")
    )
    bare = model.encode(query, convert_to_tensor=True)
    assert not torch.allclose(bare, model.encode_query(query, convert_to_tensor=True), atol=1e-4)


def test_default_task_is_saved_and_old_folders_load_as_asymmetric(tiny_llama, tmp_path):
    model = build(tiny_llama, default_task="symmetric")
    a = model.encode_texts([pair[0] for pair in STS], "symmetric")
    b = model.encode_texts([pair[1] for pair in STS], "symmetric")
    symmetric = model.similarity(a, b, task="symmetric")
    torch.testing.assert_close(model.similarity(a, b), symmetric)
    torch.testing.assert_close(model.similarity_pairwise(a, b), symmetric.diagonal())
    model.save_pretrained(str(tmp_path))

    with open(tmp_path / "config_sentence_transformers.json") as f:
        assert json.load(f)["similarity_fn_name"] == "iem"
    with open(tmp_path / "README.md", encoding="utf-8") as f:
        assert "**Similarity Function:** IEM logit" in f.read()
    reloaded = D2LLM(str(tmp_path), device="cpu")
    assert reloaded.default_task == "symmetric" and reloaded.similarity_fn_name == "iem"
    torch.testing.assert_close(reloaded.similarity(a, b), symmetric)

    # A folder saved before default_task existed, with the "cosine" sentence-transformers then recorded.
    iem_config = tmp_path / "2_IEM" / "config.json"
    config = json.loads(iem_config.read_text())
    del config["default_task"]
    iem_config.write_text(json.dumps(config))
    st_config = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps(st_config | {"similarity_fn_name": "cosine"})
    )
    old = D2LLM(str(tmp_path), device="cpu")
    assert old.default_task == "asymmetric" and old.similarity_fn_name == "iem"
    torch.testing.assert_close(old.similarity(a, b), model.similarity(a, b, task="asymmetric"))
    with pytest.raises(ValueError, match="always 'iem'"):
        D2LLM(str(tmp_path), device="cpu", similarity_fn_name="cosine")


# --- sentence-transformers' evaluators ---------------------------------------------------------------------


def test_st_information_retrieval_evaluator_measures_the_iem(model):
    iem, cosine = iem_run(model)
    # Relevant: the IEM's 2nd and 4th passages per query, so the metrics are not 0 or 1 and depend on the order.
    qrels = {query: {top(iem[query], 1): 1, top(iem[query], 3): 1} for query in QUERIES}
    expected = ranking(iem, qrels, k=10, recall_k=(1, 3, 5))
    assert expected != ranking(cosine, qrels, k=10, recall_k=(1, 3, 5))  # the fixture tells the two apart

    evaluator = InformationRetrievalEvaluator(
        QUERIES, CORPUS, {query: set(docs) for query, docs in qrels.items()}, name="tiny", batch_size=4
    )
    metrics = evaluator(model)
    assert evaluator.primary_metric == "tiny_iem_ndcg@10"
    assert metrics["tiny_iem_ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-6)
    assert metrics["tiny_iem_mrr@10"] == pytest.approx(expected["mrr@10"], abs=1e-6)
    assert metrics["tiny_iem_map@100"] == pytest.approx(expected["map"], abs=1e-6)
    for r in (1, 3, 5):
        assert metrics[f"tiny_iem_recall@{r}"] == pytest.approx(expected[f"recall@{r}"], abs=1e-6)

    # The package's retrieve-then-rerank evaluator reranking the whole corpus is the same ranking.
    ours = IEMInformationRetrievalEvaluator(
        QUERIES, CORPUS, qrels, candidate_k=len(CORPUS), k=10, recall_k=(1, 3, 5), batch_size=4
    )(model)
    for key in ("ndcg@10", "mrr@10", "map", "recall@1", "recall@3", "recall@5"):
        assert ours[key] == pytest.approx(expected[key], abs=1e-6)


def test_st_embedding_similarity_evaluator_cannot_see_the_iem_and_iem_similarity_evaluator_does(model):
    """sentence-transformers 6.2's EmbeddingSimilarityEvaluator scores pairs with its own cosine / dot / euclidean
    / manhattan functions looked up by name and never calls ``model.similarity_pairwise``, so under the name "iem"
    it reports nothing. If this starts failing, sentence-transformers routes through the model: update docs/api.md.
    ``IEMSimilarityEvaluator`` is the IEM counterpart."""
    first, second, gold = (list(column) for column in zip(*STS))
    st_evaluator = EmbeddingSimilarityEvaluator(first, second, gold, name="sts", batch_size=4)
    assert st_evaluator(model) == {} and st_evaluator.primary_metric == "sts_spearman_iem"
    cosine = EmbeddingSimilarityEvaluator(first, second, gold, similarity_fn_names=["cosine"], batch_size=4)(model)
    a, b = model.encode(first, convert_to_tensor=True), model.encode(second, convert_to_tensor=True)
    expected_cosine = spearmanr(torch.cosine_similarity(a, b).numpy(), gold).statistic
    assert cosine["spearman_cosine"] == pytest.approx(expected_cosine, abs=1e-6)

    a, b = model.encode_texts(first, "symmetric"), model.encode_texts(second, "symmetric")
    iem_scores = model.similarity_pairwise(a, b, task="symmetric").numpy()
    expected = spearmanr(iem_scores, gold).statistic
    assert abs(expected - expected_cosine) > 1e-3
    metrics = IEMSimilarityEvaluator(first, second, gold, task="symmetric", batch_size=4)(model)
    assert metrics["spearman"] == pytest.approx(expected, abs=1e-6)


# --- rank ----------------------------------------------------------------------------------------------------


def test_rank_matches_predict_and_cross_encoder_format(model, tiny_llama):
    query, documents = QUERIES["q1"], list(CORPUS.values())
    logits = model.predict([(query, doc) for doc in documents], apply_sigmoid=False)
    probabilities = model.predict([(query, doc) for doc in documents])

    ranked = model.rank(query, documents, return_documents=True)
    assert [hit["corpus_id"] for hit in ranked] == sorted(range(len(documents)), key=lambda i: -logits[i])
    for hit in ranked:
        assert set(hit) == {"corpus_id", "score", "text"} and hit["text"] == documents[hit["corpus_id"]]
        assert hit["score"] == pytest.approx(float(probabilities[hit["corpus_id"]]), abs=1e-5)
    raw = model.rank(query, documents, top_k=3, apply_sigmoid=False)
    assert [hit["corpus_id"] for hit in raw] == [hit["corpus_id"] for hit in ranked[:3]]
    assert [hit["score"] for hit in raw] == pytest.approx([float(logits[hit["corpus_id"]]) for hit in raw], abs=1e-5)
    assert all(set(hit) == {"corpus_id", "score"} for hit in raw)
    assert model.rank(query, []) == [] and model.rank(query, documents, top_k=0) == []

    symmetric = model.rank(STS[0][0], [pair[1] for pair in STS], task="symmetric", apply_sigmoid=False)
    expected = model.predict([(STS[0][0], pair[1]) for pair in STS], task="symmetric", apply_sigmoid=False)
    assert [hit["score"] for hit in symmetric] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)

    cross_encoder = CrossEncoder(tiny_llama, device="cpu")
    cross_encoder.tokenizer.pad_token = cross_encoder.tokenizer.eos_token
    reference = cross_encoder.rank(query, documents, top_k=4, return_documents=True)
    ours = model.rank(query, documents, top_k=4, return_documents=True)
    assert [{key: type(value) for key, value in hit.items()} for hit in ours] == [
        {key: type(value) for key, value in hit.items()} for hit in reference
    ]
    ce_parameters = inspect.signature(CrossEncoder.rank).parameters
    our_parameters = inspect.signature(D2LLM.rank).parameters
    assert list(our_parameters)[:5] == list(ce_parameters)[:5]  # self, query, documents, top_k, return_documents
    for name in set(our_parameters) & set(ce_parameters):
        assert our_parameters[name].default == ce_parameters[name].default, name


def test_rank_orders_by_logit_where_p_yes_rounds_to_one(tiny_llama):
    model = build(tiny_llama)
    with torch.no_grad():
        model.iem.asymmetric.head.bias.add_(60.0)
    documents = list(CORPUS.values())
    ranked = model.rank(QUERIES["q2"], documents)
    assert all(hit["score"] == 1.0 for hit in ranked)  # float32 sigmoid saturates: P(yes) alone would tie
    logits = model.predict([(QUERIES["q2"], doc) for doc in documents], apply_sigmoid=False)
    assert len(set(logits.tolist())) == len(documents)
    assert [hit["corpus_id"] for hit in ranked] == np.argsort(-logits, kind="stable").tolist()


def test_rank_errors(model):
    with pytest.raises(TypeError, match="one text"):
        model.rank([QUERIES["q1"]], list(CORPUS.values()))
    with pytest.raises(TypeError, match="wrap it in a list"):
        model.rank(QUERIES["q1"], CORPUS["d0"])
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        model.rank(QUERIES["q1"], [CORPUS["d0"], None])
    with pytest.raises(ValueError, match="top_k"):
        model.rank(QUERIES["q1"], list(CORPUS.values()), top_k=-1)
    with pytest.raises(ValueError, match="Unknown task"):
        model.rank(QUERIES["q1"], list(CORPUS.values()), task="sts")


def test_no_machine_paths_in_code_configs_or_examples():
    root = os.path.join(os.path.dirname(__file__), "..")
    folders = ("d2llm_st", "d2llm_llamaindex", "llama_index", "examples", "configs", "scripts", "tests")
    hits = []
    for folder in folders:
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if os.path.realpath(os.path.join(directory, name)) == os.path.realpath(__file__):
                    continue
                if name.endswith((".py", ".yaml", ".yml", ".sh", ".toml", ".json", ".md")):  # .md: model cards
                    with open(os.path.join(directory, name), encoding="utf-8") as f:
                        text = f.read()
                    hits += [f"{folder}/{name}: {p}" for p in ("/work/", "/root/", "/home/") if p in text]
    assert not hits
