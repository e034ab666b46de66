"""LlamaIndex adapters on a tiny random D2LLM: embedding, two-stage retriever, IEM reranker, query engines."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os

import pytest
import torch
from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from sentence_transformers import SentenceTransformer

from d2llm_llamaindex import D2LLMEmbedding, D2LLMRerank, D2LLMRetriever
from d2llm_llamaindex.models import IN_MEMORY
from d2llm_st import D2LLM

# llama-index's Qdrant store asks for a payload index, which Qdrant's local mode does not have (a server does).
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

PASSAGES = [
    "the cat sat on the mat",
    "a dog ran in the city",
    "the bird flew to the tree",
    "fish swam in the river",
    "the chef cooks pizza in the kitchen",
    "the team play football in the rain",
    "paris is the capital of france",
    "the drug increases the effect of the protein",
    "a study of patients and treatment",
    "the sun is hot in summer",
]
QUERY = "what is the capital of france ?"
# UUID-shaped ids: Qdrant point ids must be UUIDs or ints.
NODE_IDS = [f"00000000-0000-0000-0000-{i:012d}" for i in range(len(PASSAGES))]
TEXTS = dict(zip(NODE_IDS, PASSAGES))


@pytest.fixture(scope="module")
def d2llm_path(tiny_llama, tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = D2LLM.from_llm(
        tiny_llama, pma_heads=4, iem_hidden_dim=16, query_prompt="query : ", passage_prompt="passage : ", device="cpu"
    )
    path = str(tmp_path_factory.mktemp("d2llm-tiny"))
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def embed_model(d2llm_path) -> D2LLMEmbedding:
    return D2LLMEmbedding(model=d2llm_path, embed_batch_size=4, device="cpu")


@pytest.fixture(scope="module")
def model(embed_model) -> D2LLM:
    return embed_model.model


def make_nodes() -> list[TextNode]:
    return [TextNode(text=text, id_=node_id) for node_id, text in TEXTS.items()]


@pytest.fixture
def index(embed_model) -> VectorStoreIndex:
    return VectorStoreIndex(make_nodes(), embed_model=embed_model)


def iem_ranking(model: D2LLM, query: str, node_ids: list[str]) -> list[tuple[str, float]]:
    """The order the model's own ``score`` gives, from fresh encodings."""
    texts = [TEXTS[node_id] for node_id in node_ids]
    scores = model.score(model.encode_texts([query], "query")[0], model.encode_texts(texts, "passage")).tolist()
    return sorted(zip(node_ids, scores), key=lambda pair: -pair[1])


def ids_and_scores(nodes: list[NodeWithScore]) -> list[tuple[str, float]]:
    return [(n.node.node_id, n.score) for n in nodes]


def assert_same_ranking(actual: list[NodeWithScore], expected: list[tuple[str, float]]) -> None:
    assert [node_id for node_id, _ in ids_and_scores(actual)] == [node_id for node_id, _ in expected]
    assert [score for _, score in ids_and_scores(actual)] == pytest.approx([s for _, s in expected], abs=1e-5)


@pytest.fixture
def passage_encodings(model, monkeypatch) -> list[int]:
    """Counts passages the model encodes from here on (stage 2 should need none when vectors are stored)."""
    counts: list[int] = []
    original = model.encode_texts

    def spy(texts, role, **kwargs):
        if role == "passage":
            counts.append(len(texts))
        return original(texts, role, **kwargs)

    monkeypatch.setattr(model, "encode_texts", spy)
    return counts


# --- embedding ---------------------------------------------------------------------------------------------


def test_embedding_applies_query_and_passage_prompts(embed_model, model):
    text = "the cat sat on the mat"
    query_vector = embed_model.get_query_embedding(text)
    text_vector = embed_model.get_text_embedding(text)
    assert query_vector == pytest.approx(model.encode_texts([text], "query")[0].tolist(), abs=1e-6)
    assert text_vector == pytest.approx(model.encode_texts([text], "passage")[0].tolist(), abs=1e-6)
    assert len(query_vector) == model.iem.embedding_dim
    assert query_vector != pytest.approx(text_vector, abs=1e-3)  # different prompts, different vectors


def test_embedding_batches_sync_and_async_agree(embed_model, model):
    batched = embed_model.get_text_embedding_batch(PASSAGES)  # embed_batch_size=4: three batches
    expected = model.encode_texts(PASSAGES, "passage").tolist()
    assert len(batched) == len(PASSAGES)
    for got, want in zip(batched, expected):
        assert got == pytest.approx(want, abs=1e-5)
    async_batched = asyncio.run(embed_model.aget_text_embedding_batch(PASSAGES))
    for got, want in zip(async_batched, batched):
        assert got == pytest.approx(want, abs=1e-5)
    assert asyncio.run(embed_model.aget_query_embedding(QUERY)) == pytest.approx(
        embed_model.get_query_embedding(QUERY), abs=1e-6
    )


def test_model_given_by_path_is_loaded_once_and_shared(d2llm_path, embed_model):
    assert isinstance(embed_model.model, D2LLM)
    rerank = D2LLMRerank(model=d2llm_path, device="cpu")
    assert rerank.model is embed_model.model
    assert D2LLMEmbedding(model=embed_model.model).model_name == embed_model.model_name == d2llm_path


def test_model_argument_errors_name_the_fix(d2llm_path):
    with pytest.raises(TypeError, match="not a D2LLM"):
        D2LLMEmbedding(model=SentenceTransformer(modules=[torch.nn.Identity()]))
    with pytest.raises(TypeError, match="D2LLM or the path"):
        D2LLMEmbedding(model=42)
    with pytest.raises(ValueError, match="Pass model="):
        D2LLMRerank()


def test_a_folder_that_is_not_a_d2llm_is_refused_naming_what_it_is(minilm, tiny_llama):
    with pytest.raises(ValueError, match=r"is a sentence-transformers bi-encoder .*not a saved D2LLM"):
        D2LLMEmbedding(model=minilm)
    with pytest.raises(ValueError, match=r"is a causal LM \(LlamaForCausalLM\), not a saved D2LLM"):
        D2LLMRerank(model=tiny_llama)


def test_serialisation_round_trips(d2llm_path, embed_model, model):
    data = embed_model.to_dict()
    assert data["class_name"] == "D2LLMEmbedding" and data["model_name"] == d2llm_path
    restored = D2LLMEmbedding.from_json(embed_model.to_json())
    assert restored.embed_batch_size == 4 and restored.model is model
    assert restored.get_query_embedding(QUERY) == pytest.approx(embed_model.get_query_embedding(QUERY))

    rerank = D2LLMRerank(model=d2llm_path, top_n=3, keep_retrieval_score=True)
    data = rerank.to_dict()
    assert data["class_name"] == "D2LLMRerank" and data["top_n"] == 3 and data["model_name"] == d2llm_path
    restored_rerank = D2LLMRerank.from_dict(data)
    assert restored_rerank.top_n == 3 and restored_rerank.keep_retrieval_score and restored_rerank.model is model


def test_in_memory_model_serialises_but_needs_the_model_back(tiny_llama):
    memory_model = D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=16, device="cpu")
    data = D2LLMRerank(model=memory_model, top_n=2).to_dict()
    assert data["model_name"] == IN_MEMORY
    with pytest.raises(ValueError, match="from_dict\\(data, model="):
        D2LLMRerank.from_dict(data)
    assert D2LLMRerank.from_dict(data, model=memory_model).model is memory_model


# --- retriever ---------------------------------------------------------------------------------------------


def test_retriever_order_is_the_models_own_iem_score_without_reencoding(index, model, passage_encodings):
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=len(PASSAGES), similarity_top_k=4)
    results = retriever.retrieve(QUERY)
    assert passage_encodings == []  # stage 2 read the vectors from SimpleVectorStore
    expected = iem_ranking(model, QUERY, NODE_IDS)[:4]
    assert_same_ranking(results, expected)
    stage1_order = [n.node.node_id for n in index.as_retriever(similarity_top_k=4).retrieve(QUERY)]
    assert stage1_order != [node_id for node_id, _ in expected]  # stage 2 really reordered
    assert all(0.0 < n.score < 1.0 for n in results)


def test_retriever_rescores_only_the_stage1_candidates(index, model):
    candidates = index.as_retriever(similarity_top_k=3).retrieve(QUERY)
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=3, similarity_top_k=2)
    expected = iem_ranking(model, QUERY, [n.node.node_id for n in candidates])[:2]
    assert_same_ranking(retriever.retrieve(QUERY), expected)


def test_async_retrieval_matches_sync(index, model):
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=6, similarity_top_k=3)
    assert_same_ranking(asyncio.run(retriever.aretrieve(QUERY)), ids_and_scores(retriever.retrieve(QUERY)))


def test_custom_embedding_strs_steer_stage1_and_the_iem_scores_the_query(index, model):
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=3, similarity_top_k=3)
    hyde = QueryBundle(query_str=QUERY, custom_embedding_strs=["the cat sat on the mat"])
    stage1 = index.as_retriever(similarity_top_k=3, embed_model=retriever.embed_model).retrieve(
        QueryBundle(
            query_str=QUERY, embedding=retriever.embed_model.get_agg_embedding_from_queries(["the cat sat on the mat"])
        )
    )
    expected = iem_ranking(model, QUERY, [n.node.node_id for n in stage1])
    assert_same_ranking(retriever.retrieve(hyde), expected)


def test_retriever_constructor_checks(index, model):
    with pytest.raises(ValueError, match="candidate_k=2 is smaller than similarity_top_k=5"):
        D2LLMRetriever(index=index, model=model, candidate_k=2, similarity_top_k=5)
    with pytest.raises(ValueError, match="similarity_top_k must be a positive int"):
        D2LLMRetriever(index=index, model=model, similarity_top_k=0)
    with pytest.raises(TypeError, match="VectorStoreIndex"):
        D2LLMRetriever(index=None, model=model)
    assert D2LLMRetriever.class_name() == "D2LLMRetriever"


def test_edges_empty_index_empty_query_and_top_n_beyond_candidates(embed_model, index, model):
    empty = VectorStoreIndex([], embed_model=embed_model)
    assert D2LLMRetriever(index=empty, model=model).retrieve(QUERY) == []
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=50, similarity_top_k=20)
    results = retriever.retrieve(QUERY)  # only 10 nodes exist: all of them, IEM-ordered
    assert_same_ranking(results, iem_ranking(model, QUERY, NODE_IDS))
    for bad in ("", "   "):
        with pytest.raises(ValueError, match="empty query"):
            retriever.retrieve(bad)
        with pytest.raises(ValueError, match="empty query"):
            D2LLMRerank(model=model).postprocess_nodes(results, query_str=bad)
    with pytest.raises(ValueError, match="needs the query"):
        D2LLMRerank(model=model).postprocess_nodes(results)
    assert D2LLMRerank(model=model).postprocess_nodes([], query_str=QUERY) == []
    reranked = D2LLMRerank(model=model, top_n=50).postprocess_nodes(results[:3], query_str=QUERY)
    assert_same_ranking(reranked, iem_ranking(model, QUERY, [n.node.node_id for n in results[:3]]))


def test_persisted_index_reloads_and_retrieves_the_same_nodes(index, d2llm_path, model, tmp_path, passage_encodings):
    before = D2LLMRetriever(index=index, model=d2llm_path, candidate_k=6, similarity_top_k=3).retrieve(QUERY)
    index.storage_context.persist(persist_dir=str(tmp_path))
    reloaded = load_index_from_storage(
        StorageContext.from_defaults(persist_dir=str(tmp_path)), embed_model=D2LLMEmbedding(model=d2llm_path)
    )
    after = D2LLMRetriever(index=reloaded, model=d2llm_path, candidate_k=6, similarity_top_k=3).retrieve(QUERY)
    assert_same_ranking(after, ids_and_scores(before))
    assert passage_encodings == []


# --- reranker ----------------------------------------------------------------------------------------------


def test_rerank_encodes_passages_and_uses_usable_node_embeddings(model, passage_encodings):
    nodes = [NodeWithScore(node=node, score=0.5) for node in make_nodes()]
    expected = iem_ranking(model, QUERY, [n.node.node_id for n in nodes])[:3]
    passage_encodings.clear()
    assert_same_ranking(D2LLMRerank(model=model, top_n=3).postprocess_nodes(nodes, query_str=QUERY), expected)
    assert passage_encodings == [len(nodes)]  # no embeddings on the nodes: all encoded, in one call

    vectors = model.encode_texts(PASSAGES, "passage")
    with_vectors = [
        NodeWithScore(node=TextNode(text=t, id_=NODE_IDS[i], embedding=vectors[i].tolist()))
        for i, t in enumerate(PASSAGES)
    ]
    passage_encodings.clear()
    assert_same_ranking(D2LLMRerank(model=model, top_n=3).postprocess_nodes(with_vectors, query_str=QUERY), expected)
    assert passage_encodings == []

    # Same-size vectors from elsewhere: refused only when asked; wrong-size or unit-norm vectors: always refused.
    foreign = [
        NodeWithScore(node=TextNode(text=t, id_=NODE_IDS[i], embedding=[0.5] * 3)) for i, t in enumerate(PASSAGES)
    ]
    unit = [
        NodeWithScore(node=TextNode(text=t, id_=NODE_IDS[i], embedding=(v / v.norm()).tolist()))
        for i, (t, v) in enumerate(zip(PASSAGES, vectors))
    ]
    for nodes_in, kwargs in ((foreign, {}), (unit, {}), (with_vectors, {"use_node_embeddings": False})):
        passage_encodings.clear()
        reranked = D2LLMRerank(model=model, top_n=3, **kwargs).postprocess_nodes(nodes_in, query_str=QUERY)
        assert_same_ranking(reranked, expected)
        assert passage_encodings == [len(PASSAGES)]


def test_rerank_orders_by_logit_where_p_yes_rounds_to_one(d2llm_path):
    model = D2LLM(d2llm_path, device="cpu")
    torch.nn.init.constant_(model.iem.asymmetric.head.bias, 60.0)  # float32 sigmoid: 1.0 for every pair
    nodes = [NodeWithScore(node=node, score=0.5) for node in make_nodes()]
    query = model.encode_texts([QUERY], "query")[0]
    logits = model.score(
        query, model.encode_texts([TEXTS[n.node.node_id] for n in nodes], "passage"), apply_sigmoid=False
    )
    expected = [nodes[i].node.node_id for i in logits.argsort(descending=True).tolist()]
    assert expected != [n.node.node_id for n in nodes]  # input order differs from the logit order
    reranked = D2LLMRerank(model=model, top_n=len(nodes)).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in reranked] == expected
    assert [n.score for n in reranked] == [1.0] * len(nodes)


def test_kept_retrieval_score_does_not_leak_into_embedded_or_llm_text(model):
    nodes = [NodeWithScore(node=node, score=0.1 * i) for i, node in enumerate(make_nodes())]
    texts_before = {n.node.node_id: n.node.get_content(MetadataMode.EMBED) for n in nodes}
    rerank = D2LLMRerank(model=model, top_n=5, keep_retrieval_score=True, use_node_embeddings=False)
    first = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert {n.node.node_id: n.node.metadata["retrieval_score"] for n in first} == {
        n.node.node_id: n.score for n in nodes if n.node.node_id in {m.node.node_id for m in first}
    }
    for n in first:
        assert n.node.get_content(MetadataMode.EMBED) == texts_before[n.node.node_id]
        assert "retrieval_score" not in n.node.get_content(MetadataMode.LLM)
    again = rerank.postprocess_nodes(first, query_str=QUERY)  # a second rerank sees the same texts
    assert_same_ranking(again, ids_and_scores(first))


def test_async_rerank_matches_sync(model):
    nodes = [NodeWithScore(node=node) for node in make_nodes()]
    rerank = D2LLMRerank(model=model, top_n=4)
    assert_same_ranking(
        asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY)),
        ids_and_scores(rerank.postprocess_nodes(nodes, query_str=QUERY)),
    )


# --- query engines -----------------------------------------------------------------------------------------


def test_retriever_and_rerank_in_query_engines(index, model, d2llm_path):
    retriever = D2LLMRetriever(index=index, model=d2llm_path, candidate_k=8, similarity_top_k=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(QUERY)
    assert_same_ranking(response.source_nodes, ids_and_scores(retriever.retrieve(QUERY)))
    assert str(response)  # the MockLLM answered from the retrieved context

    rerank = D2LLMRerank(model=d2llm_path, top_n=2)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=6, node_postprocessors=[rerank])
    candidates = index.as_retriever(similarity_top_k=6).retrieve(QUERY)
    expected = iem_ranking(model, QUERY, [n.node.node_id for n in candidates])[:2]
    assert_same_ranking(engine.query(QUERY).source_nodes, expected)
    assert_same_ranking(asyncio.run(engine.aquery(QUERY)).source_nodes, expected)


# --- vector stores that do not hand vectors back -----------------------------------------------------------


def test_store_without_vectors_reencodes_and_logs_once(embed_model, model, caplog, passage_encodings):
    faiss = pytest.importorskip("faiss")
    faiss_store = pytest.importorskip("llama_index.vector_stores.faiss")
    store = faiss_store.FaissVectorStore(faiss_index=faiss.IndexFlatIP(model.iem.embedding_dim))
    index = VectorStoreIndex(
        make_nodes(), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=len(PASSAGES), similarity_top_k=3)
    passage_encodings.clear()
    with caplog.at_level(logging.WARNING, logger="d2llm_llamaindex"):
        first = retriever.retrieve(QUERY)
        retriever.retrieve("where is the cat ?")
    assert passage_encodings == [len(PASSAGES)] * 2
    assert_same_ranking(first, iem_ranking(model, QUERY, NODE_IDS)[:3])
    warnings = [r.getMessage() for r in caplog.records if "re-encoded" in r.getMessage()]
    assert len(warnings) == 1 and "FaissVectorStore does not return stored vectors" in warnings[0]


# --- a real vector database: Qdrant in local (embedded) mode; the same code runs against a Qdrant server --------


def qdrant_index(client, embed_model: D2LLMEmbedding, dot_dim: int | None = None) -> VectorStoreIndex:
    """An index in a Qdrant collection. With ``dot_dim`` the collection uses dot-product distance, which keeps
    the raw vectors; llama-index's default (cosine) stores unit-normalised copies."""
    qdrant_store = pytest.importorskip("llama_index.vector_stores.qdrant")
    from qdrant_client.http import models as rest

    dense_config = rest.VectorParams(size=dot_dim, distance=rest.Distance.DOT) if dot_dim else None
    store = qdrant_store.QdrantVectorStore(collection_name="passages", client=client, dense_config=dense_config)
    return VectorStoreIndex(
        make_nodes(), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )


def test_qdrant_local_mode_stage2_reads_stored_vectors_and_survives_reopen(
    tmp_path, embed_model, model, passage_encodings
):
    qdrant_client = pytest.importorskip("qdrant_client")
    qdrant_store = pytest.importorskip("llama_index.vector_stores.qdrant")
    client = qdrant_client.QdrantClient(path=str(tmp_path / "qdrant"))
    index = qdrant_index(client, embed_model, dot_dim=model.iem.embedding_dim)
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=len(PASSAGES), similarity_top_k=4)
    passage_encodings.clear()
    before = retriever.retrieve(QUERY)
    assert passage_encodings == []  # stage 2 scored the vectors Qdrant returned
    assert [n.node.get_content() for n in before] == [TEXTS[n.node.node_id] for n in before]
    assert_same_ranking(before, iem_ranking(model, QUERY, NODE_IDS)[:4])
    client.close()

    reopened = qdrant_client.QdrantClient(path=str(tmp_path / "qdrant"))
    store = qdrant_store.QdrantVectorStore(collection_name="passages", client=reopened)
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    passage_encodings.clear()
    after = D2LLMRetriever(index=index, model=model, candidate_k=len(PASSAGES), similarity_top_k=4).retrieve(QUERY)
    assert passage_encodings == []
    assert_same_ranking(after, ids_and_scores(before))
    reopened.close()


def test_qdrant_cosine_collection_is_detected_and_reencoded(embed_model, model, caplog, passage_encodings):
    qdrant_client = pytest.importorskip("qdrant_client")
    index = qdrant_index(qdrant_client.QdrantClient(location=":memory:"), embed_model)
    candidates = index.as_retriever(similarity_top_k=6).retrieve(QUERY)
    retriever = D2LLMRetriever(index=index, model=model, candidate_k=6, similarity_top_k=3)
    passage_encodings.clear()
    with caplog.at_level(logging.WARNING, logger="d2llm_llamaindex"):
        results = retriever.retrieve(QUERY)
    assert passage_encodings == [6]
    assert_same_ranking(results, iem_ranking(model, QUERY, [n.node.node_id for n in candidates])[:3])
    assert any("unit-normalised" in record.getMessage() for record in caplog.records)


# --- passage embeddings written by `d2llm encode` (any number of processes), loaded into a store -------------


@pytest.mark.parametrize("store", ["simple", "qdrant"])
def test_encoded_corpus_loads_into_the_store_and_nothing_is_encoded_again(store, model, tmp_path, passage_encodings):
    """The same code for the embedded stores shown here and a Qdrant server: only the client changes
    (``QdrantClient(url=...)`` instead of ``QdrantClient(path=...)``)."""
    from d2llm_llamaindex.corpus import CORPUS_ID_KEY, index_from_embeddings
    from d2llm_st.corpus import encode_corpus

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(f'{{"_id": "p{i}", "text": "{text}"}}\n' for i, text in enumerate(PASSAGES)))
    encode_corpus(model, str(corpus), str(tmp_path / "embeddings"), shard_size=4, show_progress_bar=False)
    vector_store = None
    if store == "qdrant":
        qdrant_client = pytest.importorskip("qdrant_client")
        qdrant_store = pytest.importorskip("llama_index.vector_stores.qdrant")
        from qdrant_client.http import models as rest

        dense_config = rest.VectorParams(size=model.iem.embedding_dim, distance=rest.Distance.DOT)
        client = qdrant_client.QdrantClient(path=str(tmp_path / "qdrant"))
        vector_store = qdrant_store.QdrantVectorStore(
            collection_name="corpus", client=client, dense_config=dense_config
        )
    passage_encodings.clear()
    index = index_from_embeddings(tmp_path / "embeddings", model, vector_store=vector_store)
    results = D2LLMRetriever(index=index, model=model, candidate_k=len(PASSAGES), similarity_top_k=4).retrieve(QUERY)
    assert passage_encodings == []  # neither loading the index nor stage 2 encoded a passage
    by_text = {text: f"p{i}" for i, text in enumerate(PASSAGES)}
    assert [n.node.metadata[CORPUS_ID_KEY] for n in results] == [by_text[n.node.get_content()] for n in results]
    assert CORPUS_ID_KEY not in results[0].node.get_content(MetadataMode.EMBED)
    expected = iem_ranking(model, QUERY, NODE_IDS)[:4]
    assert [n.node.get_content() for n in results] == [TEXTS[node_id] for node_id, _ in expected]
    assert [n.score for n in results] == pytest.approx([score for _, score in expected], abs=1e-5)


def test_embeddings_of_another_model_or_corpus_are_refused(model, tmp_path):
    from d2llm_llamaindex.corpus import index_from_embeddings
    from d2llm_st.corpus import encode_corpus
    from d2llm_st.errors import UserError

    corpus, output = tmp_path / "corpus.jsonl", tmp_path / "embeddings"
    corpus.write_text('{"_id": "a", "text": "the cat sat"}\n{"_id": "b", "text": "a dog ran"}\n')
    encode_corpus(model, str(corpus), str(output), show_progress_bar=False)
    corpus.write_text('{"_id": "a", "text": "the cat sat"}\n{"_id": "b", "text": "a dog sat"}\n')
    with pytest.raises(UserError, match="is not the corpus encoded in"):
        index_from_embeddings(output, model)
    manifest = json.loads((output / "manifest.json").read_text())
    (output / "manifest.json").write_text(json.dumps({**manifest, "model_fingerprint": "0" * 16}))
    with pytest.raises(UserError, match="not passage embeddings of this one"):
        index_from_embeddings(output, model)


# --- the runnable example over real data (shared/data) ---------------------------------------------------------


def load_example():
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "llamaindex_search.py")
    spec = importlib.util.spec_from_file_location("llamaindex_search", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("store", ["simple", "qdrant"])
def test_example_searches_a_real_corpus(d2llm_path, shared_data, store, capsys):
    if store == "qdrant":
        pytest.importorskip("llama_index.vector_stores.qdrant")
    example = load_example()
    argv = ["--model", d2llm_path, "--data", shared_data, "--queries", "3", "--store", store, "--candidate-k", "12"]
    assert example.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("\nQuestion wikiqa-test-q") == 2  # --show 2
    scores = [float(line.split("IEM ")[1].split()[0]) for line in printed.splitlines() if " IEM " in line]
    assert len(scores) == 6
    assert scores[:3] == sorted(scores[:3], reverse=True) and scores[3:] == sorted(scores[3:], reverse=True)
    table = {line.split(" | ")[0].strip("| "): line for line in printed.splitlines() if line.startswith("| ")}
    assert {"BM25 (bm25s)", "all-MiniLM-L6-v2 (cosine)"} <= set(table) and len(table) == 4  # header and 3 rows
    for name in ("BM25 (bm25s)", "all-MiniLM-L6-v2 (cosine)"):
        ndcg, mrr = (float(cell) for cell in table[name].strip("| ").split(" | ")[1:])
        assert 0 < ndcg <= 1 and 0 < mrr <= 1


@pytest.mark.slow
def test_real_student_ranks_real_passages_by_its_iem_from_stored_vectors(shared_data, monkeypatch):
    """The shipped SmolLM2 student (or the one named by $D2LLM_MODEL) over real WikiQA sentences."""
    example = load_example()
    dataset = example.read_beir(os.path.join(shared_data, "ir", "wikiqa"), split="test")
    corpus, queries = example.select(dataset, n_queries=2, limit=40)
    student = D2LLM(os.environ.get(example.MODEL_ENV) or example.SHIPPED_MODEL, device="cpu")
    index = VectorStoreIndex(example.to_nodes(corpus), embed_model=D2LLMEmbedding(model=student))
    retriever = D2LLMRetriever(index=index, model=student, candidate_k=8, similarity_top_k=3)
    roles: list[str] = []
    original = student.encode_texts
    monkeypatch.setattr(
        student, "encode_texts", lambda texts, role, **kw: roles.append(role) or original(texts, role, **kw)
    )
    for query in queries.values():
        roles.clear()
        results = retriever.retrieve(query)
        assert roles == ["query"]  # stage 2 scored the stored passage vectors
        candidates = index.as_retriever(similarity_top_k=8, embed_model=retriever.embed_model).retrieve(query)
        texts = [n.node.get_content() for n in candidates]
        scores = student.score(student.encode_texts([query], "query")[0], student.encode_texts(texts, "passage"))
        expected = sorted(zip([n.node.node_id for n in candidates], scores.tolist()), key=lambda p: -p[1])[:3]
        assert [n.node.node_id for n in results] == [node_id for node_id, _ in expected]
        assert [n.score for n in results] == pytest.approx([s for _, s in expected], abs=1e-4)


def test_a_model_loaded_from_a_path_serves_with_its_lora_merged(tiny_llama, tmp_path):
    torch.manual_seed(0)
    student = D2LLM.from_llm(
        tiny_llama, lora_r=4, pma_heads=4, iem_hidden_dim=16, device="cpu", model_kwargs={"dtype": torch.float32}
    )
    with torch.no_grad():
        for name, param in student.backbone.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    student.save_pretrained(str(tmp_path))
    expected = student.encode_texts(PASSAGES, "passage")

    by_path = D2LLMEmbedding(model=str(tmp_path), device="cpu")
    assert not by_path.model.backbone.has_lora  # merged for serving
    by_object = D2LLMEmbedding(model=student)
    assert student.backbone.has_lora  # a model passed in is left as it is
    torch.testing.assert_close(
        torch.tensor(by_path.get_text_embedding_batch(PASSAGES)), expected, atol=0.05 * expected.abs().max(), rtol=0
    )
    assert by_object.model is student
