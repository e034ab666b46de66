"""Rerank latency, corpus encoding throughput and peak memory: LLM cross-encoder teacher vs D2LLM student.

Per query and for N candidate passages:

- cross-encoder (the teacher's cost): tokenize N ``prompt + query + passage`` sequences and run them through
  the LLM in batches; the score is ``sigmoid(logit_yes - logit_no)`` at the last token. It is timed at its best:
  only the two vocabulary rows of the LM head are computed.
- D2LLM (the student's cost): the passages are embedded offline; per query, one backbone + PMA pass over the
  query, then the IEM over the N stored embeddings. Timed through the plain API (``encode_texts`` + ``score``)
  and through :class:`d2llm_st.inference.FastReranker` (CUDA graphs on a GPU).

Both use the same backbone weights, so they are the same size. Backbones are the real SmolLM2-135M
(``--shapes smollm2``) or random weights of Qwen2 shapes built directly on the device (speed does not
depend on the values); ``tiny`` is for tests.

Usage::

    python benchmarks/speed.py --device cpu --shapes smollm2 --output-dir runs/speed-cpu
    python benchmarks/speed.py --device cuda --shapes qwen2-0.5b qwen2-1.5b qwen2-7b --output-dir $OUT
    python benchmarks/speed.py --report runs/speed-gpu/speed.json runs/speed-cpu/speed.json \\
        --plot docs/images/benchmark_latency.png

Each run writes ``speed.json`` (every figure, with machine, command and date), ``speed.md`` (the tables)
and ``benchmark_latency.png`` (latency vs N, log scale) to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable

import torch
from common import (
    machine_info,
    markdown_table,
    median_ms,
    peak_memory_mib,
    reset_peak_memory,
    synchronize,
    text_of_tokens,
    time_calls,
)

logger = logging.getLogger("speed")

VOCAB_SIZE = 151936
SHAPES = {
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        tie_word_embeddings=True,
        vocab_size=None,  # the tokenizer's
    ),
    "qwen2-0.5b": dict(
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        tie_word_embeddings=True,
    ),
    "qwen2-1.5b": dict(
        hidden_size=1536,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        intermediate_size=8960,
        tie_word_embeddings=True,
    ),
    "qwen2-7b": dict(
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        tie_word_embeddings=False,
    ),
}
REAL_MODELS = ("smollm2",)
QUERY_PROMPT = "Represent this question for retrieving passages: "
CE_TEMPLATE = "Does the passage answer the question? Answer yes or no.\nQuestion: {query}\nPassage: {passage}\nAnswer:"
TARGETS = {"d2llm_ms_at_100": 8.0, "speedup_at_100": 50.0, "iem_ms_at_1000": 1.0}


def build_student(shape: str, tokenizer_dir: str, device: torch.device, dtype: torch.dtype):
    """A D2LLM (backbone -> PMA (8 heads) -> IEM (512 hidden)) of the given shape on ``device``."""
    from transformers import AutoModel, AutoTokenizer, LlamaConfig, LlamaModel, Qwen2Config

    from d2llm_st import D2LLM, IEM, LLMBackbone, PMAPooling

    if shape == "smollm2":
        # A student as users get one: LoRA r=8 (made non-zero, as after training), saved, loaded with D2LLM(path).
        model = D2LLM.from_llm(
            "bundled:smollm2",
            lora_r=8,
            iem_hidden_dim=256,
            query_prompt=QUERY_PROMPT,
            model_kwargs={"dtype": dtype},
            device=str(device),
        )
        with torch.no_grad():
            for name, parameter in model.backbone.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=1e-3)
        path = tempfile.mkdtemp(prefix="d2llm-speed-")
        model.save_pretrained(path)
        return D2LLM(path, device=str(device), model_kwargs={"dtype": dtype})
    # The backbone module needs a folder for its tokenizer: save the tokenizer with a one-layer stand-in model,
    # then swap in the random model of the wanted shape, built on the device in its dtype (no hub, no disk).
    holder = tempfile.mkdtemp(prefix="d2llm-speed-")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.save_pretrained(holder)
    small = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaModel(small).save_pretrained(holder)
    backbone = LLMBackbone(holder, max_seq_length=512)
    shape_kwargs = {"vocab_size": VOCAB_SIZE, **SHAPES[shape]}
    shape_kwargs["vocab_size"] = shape_kwargs["vocab_size"] or len(tokenizer)
    config = Qwen2Config(max_position_embeddings=32768, rope_theta=1e6, **shape_kwargs)
    with torch.device(device):
        llm = AutoModel.from_config(config, dtype=dtype)
    llm.config.use_cache = False
    llm.config.pad_token_id = backbone.tokenizer.pad_token_id
    backbone.auto_model = llm.eval()
    hidden = config.hidden_size
    model = D2LLM(
        modules=[backbone, PMAPooling(hidden, num_heads=8), IEM(hidden, hidden_dim=512)],
        device=str(device),
        prompts={"query": QUERY_PROMPT},
    )
    return model.to(dtype)


class LLMCrossEncoder:
    """The teacher's per-pair cost: a joint LLM pass per (query, passage), P(yes) from two LM-head rows."""

    def __init__(self, backbone, batch_size: int) -> None:
        self.backbone = backbone
        self.batch_size = batch_size
        tokenizer = backbone.tokenizer
        ids = [tokenizer(word, add_special_tokens=False)["input_ids"][-1] for word in (" yes", " no")]
        # Tied LM head rows for " yes" / " no" (a separate head costs the same two rows).
        self.head = backbone.base_model.get_input_embeddings().weight[ids].detach()

    @torch.inference_mode()
    def score(self, query: str, passages: list[str]) -> torch.Tensor:
        texts = [CE_TEMPLATE.format(query=query, passage=passage) for passage in passages]
        device = self.head.device
        scores = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.backbone.tokenizer(texts[start : start + self.batch_size], padding=True, return_tensors="pt")
            features = {key: value.to(device) for key, value in encoded.items() if key != "token_type_ids"}
            states = self.backbone(features)["token_embeddings"]
            last = features["attention_mask"].sum(1) - 1
            logits = states[torch.arange(len(last), device=device), last] @ self.head.T
            scores.append((logits[:, 0] - logits[:, 1]).float().sigmoid())
        return torch.cat(scores)


def copy_bandwidth_gbs(device: torch.device) -> float | None:
    """Device-to-device copy bandwidth (bytes read + written), the ceiling for reading weights once."""
    if device.type != "cuda":
        return None
    buffers = [torch.randn(2**28, device=device, dtype=torch.bfloat16) for _ in range(2)]
    times = time_calls(lambda _: buffers[1].copy_(buffers[0]), device, repeats=20, warmup=3)
    return 2 * buffers[0].numel() * 2 / (median_ms(times) / 1000) / 1e9


def graph_replay_ms(fn, device: torch.device, repeats: int = 200) -> float:
    """Median GPU time of ``fn`` captured as a CUDA graph, by CUDA events (launch overhead excluded)."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    times = []
    for _ in range(repeats):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) / 1000)
    return median_ms(times)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).norm() / reference.float().norm())


def benchmark_shape(shape: str, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict:
    from d2llm_st.inference import FastReranker

    reset_peak_memory(device)
    start = time.perf_counter()
    model = build_student(shape, args.tokenizer, device, dtype)
    synchronize(device)
    build_s = time.perf_counter() - start
    backbone = model.backbone
    tokenizer = backbone.tokenizer
    llm_params = sum(p.numel() for p in backbone.base_model.parameters())
    embedding_params = backbone.base_model.get_input_embeddings().weight.numel()
    head_params = sum(p.numel() for p in model.pma.parameters()) + sum(p.numel() for p in model.iem.parameters())
    result = {
        "shape": shape,
        "dtype": str(dtype).replace("torch.", ""),
        "backbone_params_m": llm_params / 1e6,
        "pma_iem_params_m": head_params / 1e6,
        "build_s": build_s,
        "weights_mib": peak_memory_mib(device) if device.type == "cuda" else None,
    }
    # Bytes a query pass must read at least once: every weight but the embedding table (one row per token).
    read_bytes = (llm_params - embedding_params + head_params) * torch.finfo(dtype).bits / 8
    if args.bandwidth_gbs:
        result["weights_read_floor_ms"] = read_bytes / (args.bandwidth_gbs * 1e9) * 1000
    logger.info(f"{shape}: built in {build_s:.1f}s, {llm_params / 1e6:.0f}M backbone parameters")

    passages = [text_of_tokens(tokenizer, args.passage_tokens, seed) for seed in range(args.corpus_size)]
    query_tokens = args.query_tokens - len(tokenizer(QUERY_PROMPT, add_special_tokens=False)["input_ids"])
    queries = [text_of_tokens(tokenizer, query_tokens, 1000 + seed) for seed in range(64)]
    result["query_tokens"] = int(backbone.preprocess(queries[:1], prompt=QUERY_PROMPT)["input_ids"].shape[1])
    result["ce_tokens"] = len(tokenizer(CE_TEMPLATE.format(query=queries[0], passage=passages[0]))["input_ids"])

    # Corpus encoding throughput (the offline side of D2LLM).
    model.encode_texts(passages[: args.encode_batch_size], "passage", batch_size=args.encode_batch_size)
    reset_peak_memory(device)
    start = time.perf_counter()
    embeddings = model.encode_texts(passages, "passage", batch_size=args.encode_batch_size, show_progress_bar=False)
    synchronize(device)
    result["corpus"] = {
        "passages": len(passages),
        "passage_tokens": args.passage_tokens,
        "batch_size": args.encode_batch_size,
        "passages_per_s": len(passages) / (time.perf_counter() - start),
        "peak_mib": peak_memory_mib(device),
    }
    max_n = max(args.n)
    candidates = embeddings.repeat((max_n + len(embeddings) - 1) // len(embeddings), 1)[:max_n].to(dtype)

    eager = FastReranker(model, cuda_graphs=False)
    fast = FastReranker(model, compile=args.compile)
    try:
        fast_embedding = fast.encode_query(queries[0])
    except RuntimeError:
        logger.exception(f"{shape}: CUDA graph capture failed; timing the eager query path instead")
        fast = eager
        fast_embedding = fast.encode_query(queries[0])
    result["fast_path"] = ("CUDA graphs" if fast.cuda_graphs else "eager") + (
        " + torch.compile" if args.compile else ""
    )
    plain_embedding = model.encode_texts(queries[:1], "query", show_progress_bar=False)[0]
    result["fast_vs_plain_relative_error"] = relative_error(fast_embedding, plain_embedding)
    result["fast_vs_eager_relative_error"] = relative_error(fast_embedding, eager.encode_query(queries[0]))
    result["tokenize_ms"] = median_ms(
        time_calls(lambda i: backbone.preprocess([queries[i % 64]], prompt=QUERY_PROMPT), device, 50, warmup=5)
    )
    cross_encoder = LLMCrossEncoder(backbone, args.ce_batch_size)

    result["rerank"] = []
    for n in args.n:
        row: dict = {"n": n}
        cand = candidates[:n]

        def plain(i: int, cand: torch.Tensor = cand) -> torch.Tensor:
            query_embedding = model.encode_texts([queries[i % 64]], "query", show_progress_bar=False)[0]
            return model.score(query_embedding, cand)

        row["d2llm_plain_ms"] = median_ms(time_calls(plain, device, args.repeats, warmup=2))
        if fast.cuda_graphs:
            row["d2llm_eager_ms"] = median_ms(
                time_calls(lambda i, cand=cand: eager.score(queries[i % 64], cand), device, args.repeats, 2)
            )
        reset_peak_memory(device)
        row["d2llm_fast_ms"] = median_ms(
            time_calls(lambda i, cand=cand: fast.score(queries[i % 64], cand), device, args.repeats, 3)
        )
        row["d2llm_peak_mib"] = peak_memory_mib(device)
        query_embedding = fast_embedding[None]
        row["iem_ms"] = median_ms(
            time_calls(lambda _, cand=cand, q=query_embedding: model.score(q, cand), device, 5 * args.repeats, warmup=3)
        )
        if device.type == "cuda":
            with torch.inference_mode():
                row["iem_graph_ms"] = graph_replay_ms(
                    lambda cand=cand, q=query_embedding: model.iem.logits(q, cand, "asymmetric").float().sigmoid(),
                    device,
                )
        if args.ce_max_n is None or n <= args.ce_max_n:
            ce_passages = (passages * (n // len(passages) + 1))[:n]
            ce_repeats = max(1, args.repeats // max(1, n // 10))
            reset_peak_memory(device)
            row["ce_ms"] = median_ms(
                time_calls(
                    lambda i, ce_passages=ce_passages: cross_encoder.score(queries[i % 64], ce_passages),
                    device,
                    ce_repeats,
                    warmup=1,
                )
            )
            row["ce_peak_mib"] = peak_memory_mib(device)
            row["speedup"] = row["ce_ms"] / row["d2llm_fast_ms"]
        logger.info(f"{shape} N={n}: {row}")
        result["rerank"].append(row)
    if device.type == "cuda":  # where the fast path's time goes, N = 100
        with torch.inference_mode():
            features = backbone.preprocess(queries[:1], prompt=QUERY_PROMPT)
            length = fast._bucket(features["input_ids"].shape[1])
            ids = torch.full((1, length), fast.pad_token_id, device=device)
            mask = torch.ones((1, length), dtype=torch.long, device=device)
            result["query_pass_graph_ms"] = graph_replay_ms(lambda: fast._forward(ids, mask, candidates[:100]), device)
    return result


def interleaved_ms(fns: dict[str, Callable[[int], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Median ms of each function, the functions called in turn within every repeat, so that a change of load
    on the machine hits all of them alike."""
    for fn in fns.values():  # warm-up
        fn(0)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(1, repeats + 1):
        for name, fn in fns.items():
            times[name] += time_calls(lambda _, fn=fn, i=i: fn(i), device, 1, warmup=0)
    return {name: median_ms(values) for name, values in times.items()}


def cpu_benchmark(args: argparse.Namespace, dtype: torch.dtype) -> dict:
    """The CPU figures: each D2LLM pass against the bare bf16 backbone (timed interleaved), the same-size LLM
    cross-encoder, corpus encoding, distillation steps and peak RSS, for one dtype of the student."""
    result = cpu_inference(args, dtype)
    gc.collect()
    result["peak_rss_mib_inference"] = peak_memory_mib(torch.device("cpu"))
    if args.train_config:
        result["training"] = training_speed(args.train_config, args.train_steps)
        result["peak_rss_mib_training"] = peak_memory_mib(torch.device("cpu"))
    return result


def cpu_inference(args: argparse.Namespace, dtype: torch.dtype) -> dict:
    """Encoding and reranking on the CPU. The bare reference is SmolLM2's transformers model in bf16 (no LoRA,
    PMA or sentence-transformers) over already tokenized texts, plus the IEM when reranking. D2LLM is timed as
    users run it: ``D2LLM(path)`` with its LoRA adapter (``plain``: ``encode_texts`` + ``score``), then after
    ``FastReranker`` has merged the adapter (``fast``; and ``encode_texts`` of the merged model)."""
    from transformers import AutoModel

    from d2llm_st.inference import FastReranker
    from d2llm_st.model_paths import resolve_model_path

    device = torch.device("cpu")
    model = build_student("smollm2", args.tokenizer, device, dtype)
    bare = AutoModel.from_pretrained(resolve_model_path("bundled:smollm2"), dtype=torch.bfloat16).eval()
    backbone, tokenizer = model.backbone, model.backbone.tokenizer
    passages = [text_of_tokens(tokenizer, args.passage_tokens, seed) for seed in range(args.corpus_size)]
    query_tokens = args.query_tokens - len(tokenizer(QUERY_PROMPT, add_special_tokens=False)["input_ids"])
    queries = [text_of_tokens(tokenizer, query_tokens, 1000 + seed) for seed in range(64)]
    batches = [passages[i : i + args.encode_batch_size] for i in range(0, len(passages), args.encode_batch_size)]
    tokenized = [backbone.preprocess(batch, prompt=model.prompts.get("document")) for batch in batches]
    query_ids = [backbone.preprocess([query], prompt=QUERY_PROMPT) for query in queries]
    candidates = model.encode_texts(passages, "passage", show_progress_bar=False)
    candidates = candidates.repeat((max(args.n) + len(candidates) - 1) // len(candidates), 1)
    result: dict = {"shape": "smollm2", "dtype": str(dtype).removeprefix("torch."), "lora_r": backbone.lora_r}
    result["query_tokens"] = int(query_ids[0]["input_ids"].shape[1])
    result["passage_tokens"] = int(tokenized[0]["input_ids"].shape[1])
    result["encode_batch_size"] = args.encode_batch_size

    @torch.inference_mode()
    def bare_encode(i: int) -> torch.Tensor:
        features = tokenized[i % len(tokenized)]
        return bare(input_ids=features["input_ids"], attention_mask=features["attention_mask"]).last_hidden_state

    def encode(i: int) -> torch.Tensor:
        batch = batches[i % len(batches)]
        return model.encode_texts(batch, "passage", batch_size=args.encode_batch_size, show_progress_bar=False)

    def bare_rerank(n: int) -> Callable[[int], torch.Tensor]:
        @torch.inference_mode()
        def run(i: int) -> torch.Tensor:
            states = bare(input_ids=query_ids[i % 64]["input_ids"]).last_hidden_state
            return model.iem.logits(states[:, -1].float(), candidates[:n], "asymmetric")

        return run

    def plain(n: int) -> Callable[[int], torch.Tensor]:
        def run(i: int) -> torch.Tensor:
            query = model.encode_texts([queries[i % 64]], "query", show_progress_bar=False)[0]
            return model.score(query, candidates[:n])

        return run

    def passages_per_s(figures: dict[str, float]) -> dict[str, float]:
        return {name: args.encode_batch_size / (ms / 1000) for name, ms in figures.items()}

    encode_repeats = max(3, args.repeats // 10)
    result["encode_lora"] = passages_per_s(
        interleaved_ms({"bare": bare_encode, "d2llm": encode}, device, encode_repeats)
    )
    result["rerank"] = []
    for n in args.n:
        figures = interleaved_ms({"bare": bare_rerank(n), "plain": plain(n)}, device, args.repeats)
        result["rerank"].append({"n": n, "bare_plain_ms": figures["bare"], "d2llm_plain_ms": figures["plain"]})
    fast = FastReranker(model)  # merges the LoRA adapter into the weights
    result["encode_merged"] = passages_per_s(
        interleaved_ms({"bare": bare_encode, "d2llm": encode}, device, encode_repeats)
    )
    for row in result["rerank"]:
        n = row["n"]
        figures = interleaved_ms(
            {"bare": bare_rerank(n), "fast": lambda i, n=n: fast.score(queries[i % 64], candidates[:n])},
            device,
            args.repeats,
        )
        row["bare_fast_ms"], row["d2llm_fast_ms"] = figures["bare"], figures["fast"]
    cross_encoder = LLMCrossEncoder(backbone, args.ce_batch_size)  # the merged backbone: same size, same dtype
    for row in result["rerank"]:
        n = row["n"]
        if args.ce_max_n is None or n <= args.ce_max_n:
            ce_passages = (passages * (n // len(passages) + 1))[:n]
            repeats = max(1, args.repeats // max(1, n // 10))
            row["ce_ms"] = median_ms(
                time_calls(lambda i, p=ce_passages: cross_encoder.score(queries[i % 64], p), device, repeats, 1)
            )
    return result


def training_speed(config_path: str, steps: int) -> dict:
    """Steps per second of ``d2llm distill`` with ``config_path``'s student, data and losses (teacher: the zero-shot
    bundled SmolLM2, which costs what a fine-tuned one does), over ``steps`` steps, evaluation off."""
    from d2llm_st.training import DistillConfig, distill

    config = DistillConfig.load(config_path)
    batch = config.training.per_device_train_batch_size
    output_dir = tempfile.mkdtemp(prefix="d2llm-speed-train-")
    overrides = [
        "teacher.model=bundled:smollm2",
        f"training.output_dir={output_dir}",
        f"training.max_steps={steps}",
        f"training.save_steps={10 * steps}",
        "evaluation.sets=[]",
        *(f"datasets.{dataset.name}.limit={steps * batch}" for dataset in config.datasets),
    ]
    result = distill(config.with_overrides(overrides))
    metrics = result.train_metrics
    return {
        "config": config_path,
        "steps": result.steps,
        "batch_size": batch,
        "steps_per_s": metrics["train_steps_per_second"],
        "seconds_per_step": metrics["train_runtime"] / result.steps,
    }


def cpu_report(results: list[dict]) -> str:
    """One table comparing the CPU runs (e.g. float32 and bf16), each D2LLM figure with its ratio to bare bf16."""
    runs = [run for result in results for run in result["runs"]]
    machine = results[0]["machine"]
    lines = [
        f"### CPU: {machine.get('cpu_model', '?')}, {machine['cpu_count']} cores, {machine['date']}",
        "",
        f"Load average before each run: {', '.join(str(r['machine'].get('load_average')) for r in results)}. "
        f"Commands: {'; '.join('`' + r['machine']['command'] + '`' for r in results)} "
        f"(torch {machine['torch']}, transformers {machine.get('transformers', '?')}).",
        "",
    ]
    headers = ["figure", *(f"{run['dtype']}" for run in runs), *(f"{run['dtype']} / bare bf16" for run in runs)]
    rows = []

    def add(name: str, values: list, ratios: list) -> None:
        rows.append([name, *values, *(None if r is None else f"{r:.2f}x" for r in ratios)])

    for key, label in (
        ("encode_lora", "corpus encoding, D2LLM(path) with LoRA"),
        ("encode_merged", "corpus encoding, LoRA merged"),
    ):
        add(
            f"{label} (passages/s)",
            [run[key]["d2llm"] for run in runs],
            [run[key]["bare"] / run[key]["d2llm"] for run in runs],
        )
    add("bare bf16 backbone encoding (passages/s)", [run["encode_merged"]["bare"] for run in runs], [None] * len(runs))
    for index, row in enumerate(runs[0]["rerank"]):
        by_run = [run["rerank"][index] for run in runs]
        add(
            f"rerank N={row['n']}: D2LLM plain (ms)",
            [r["d2llm_plain_ms"] for r in by_run],
            [r["d2llm_plain_ms"] / r["bare_plain_ms"] for r in by_run],
        )
        add(
            f"rerank N={row['n']}: FastReranker (ms)",
            [r["d2llm_fast_ms"] for r in by_run],
            [r["d2llm_fast_ms"] / r["bare_fast_ms"] for r in by_run],
        )
        add(
            f"rerank N={row['n']}: bare bf16 backbone + IEM (ms)",
            [r["bare_fast_ms"] for r in by_run],
            [None] * len(runs),
        )
        if all("ce_ms" in r for r in by_run):
            add(
                f"rerank N={row['n']}: LLM cross-encoder, same size (ms)",
                [r["ce_ms"] for r in by_run],
                [None] * len(runs),
            )
    if all("training" in run for run in runs):
        add("distillation training (s/step)", [run["training"]["seconds_per_step"] for run in runs], [None] * len(runs))
    add("peak RSS, inference (MiB)", [run["peak_rss_mib_inference"] for run in runs], [None] * len(runs))
    if all("peak_rss_mib_training" in run for run in runs):
        add("peak RSS, with training (MiB)", [run["peak_rss_mib_training"] for run in runs], [None] * len(runs))
    lines.append(markdown_table(headers, rows))
    return "\n".join(lines) + "\n"


def targets(run: dict) -> list[str]:
    """Where a 7B-shaped run on a GPU stands against the project's targets."""
    rows = {row["n"]: row for row in run["rerank"]}
    lines = []
    if 100 in rows:
        ms = rows[100]["d2llm_fast_ms"]
        verdict = "met" if ms <= TARGETS["d2llm_ms_at_100"] else "missed"
        lines.append(
            f"D2LLM rerank of 100 candidates: {ms:.2f} ms (target <= {TARGETS['d2llm_ms_at_100']} ms: {verdict})"
        )
        if "speedup" in rows[100]:
            verdict = "met" if rows[100]["speedup"] >= TARGETS["speedup_at_100"] else "missed"
            lines.append(
                f"speed-up over the same-size cross-encoder at N=100: {rows[100]['speedup']:.0f}x "
                f"(target >= {TARGETS['speedup_at_100']:.0f}x: {verdict})"
            )
    if 1000 in rows:
        ms = rows[1000].get("iem_graph_ms", rows[1000]["iem_ms"])
        verdict = "met" if ms < TARGETS["iem_ms_at_1000"] else "missed"
        lines.append(
            f"IEM over 1000 candidates: {ms:.3f} ms GPU time, {rows[1000]['iem_ms']:.3f} ms through `D2LLM.score` "
            f"(target < {TARGETS['iem_ms_at_1000']} ms: {verdict})"
        )
    return lines


def breakdown(run: dict) -> str | None:
    """Where one fast query goes (GPU): tokenizing, the captured pass, and the floor of reading the weights."""
    if "query_pass_graph_ms" not in run:
        return None
    return (
        f"{run['shape']}: tokenize {run['tokenize_ms']:.2f} ms; captured backbone + PMA + IEM (N=100) "
        f"{run['query_pass_graph_ms']:.2f} ms GPU time; reading the weights once at the measured copy bandwidth "
        f"{run['weights_read_floor_ms']:.2f} ms. Query embedding, fast vs plain API: relative error "
        f"{run['fast_vs_plain_relative_error']:.1e} (vs the eager path with the same padding: "
        f"{run['fast_vs_eager_relative_error']:.1e})."
    )


def report(results: list[dict]) -> str:
    """Markdown tables (one block per machine) of a list of ``speed.json`` contents."""
    blocks = []
    for result in results:
        machine = result["machine"]
        where = machine.get("gpu") or f"CPU ({machine['cpu_count']} cores)"
        blocks.append(
            f"### {where}, {machine['date']}\n\nCommand: `{machine['command']}` "
            f"(torch {machine['torch']}, transformers {machine.get('transformers', '?')})\n"
        )
        latency_rows, corpus_rows, target_lines, breakdowns = [], [], [], []
        for run in result["runs"]:
            corpus = run["corpus"]
            corpus_rows.append(
                [
                    run["shape"],
                    run["dtype"],
                    f"{run['backbone_params_m']:.0f}M",
                    corpus["passage_tokens"],
                    corpus["batch_size"],
                    corpus["passages_per_s"],
                    corpus["peak_mib"],
                ]
            )
            for row in run["rerank"]:
                latency_rows.append(
                    [
                        run["shape"],
                        row["n"],
                        row.get("ce_ms"),
                        row["d2llm_plain_ms"],
                        row.get("d2llm_eager_ms"),
                        row["d2llm_fast_ms"],
                        row["iem_ms"],
                        row.get("iem_graph_ms"),
                        None if "speedup" not in row else f"{row['speedup']:.0f}x",
                        row.get("ce_peak_mib"),
                        row["d2llm_peak_mib"],
                    ]
                )
            if run["shape"].endswith("7b"):
                target_lines += targets(run)
            breakdowns.append(breakdown(run))
        first = result["runs"][0]
        blocks.append(
            f"Rerank latency per query (ms, median): query {first['query_tokens']} tokens with its prompt, "
            f"cross-encoder sequences {first['ce_tokens']} tokens, passages {first['corpus']['passage_tokens']} "
            "tokens. `plain` = `encode_texts` + `score`; `eager` = `FastReranker` without CUDA graphs; "
            f"`fast` = `FastReranker` ({first['fast_path']}); `IEM` = `D2LLM.score` on a query embedding "
            "(wall clock), `IEM GPU` = its GPU time (CUDA events around a graph replay); "
            "speed-up = cross-encoder / D2LLM fast. Peak memory in MiB "
            f"({'torch.cuda.max_memory_allocated, weights included' if machine.get('gpu') else 'peak RSS'}).\n"
        )
        blocks.append(
            markdown_table(
                [
                    "model",
                    "N",
                    "cross-encoder",
                    "D2LLM plain",
                    "D2LLM eager",
                    "D2LLM fast",
                    "IEM",
                    "IEM GPU",
                    "speed-up",
                    "CE peak MiB",
                    "D2LLM peak MiB",
                ],
                latency_rows,
            )
        )
        blocks.append("\nCorpus encoding throughput (D2LLM passages: backbone + PMA):\n")
        blocks.append(
            markdown_table(
                ["model", "dtype", "backbone", "tokens/passage", "batch", "passages/s", "peak MiB"], corpus_rows
            )
        )
        if any(breakdowns):
            blocks.append("\nWhere the fast path's time goes:\n\n" + "\n".join(f"- {b}" for b in breakdowns if b))
        if target_lines:
            blocks.append("\nTargets (7B shape):\n\n" + "\n".join(f"- {line}" for line in target_lines))
        blocks.append("")
    return "\n".join(blocks)


def plot(results: list[dict], path: str) -> None:
    """Latency vs N (log-log): one panel per machine, one colour per model, cross-encoder vs D2LLM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.6), squeeze=False)
    for ax, result in zip(axes[0], results):
        machine = result["machine"]
        for color, run in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], result["runs"]):
            rows = run["rerank"]
            ce = [(row["n"], row["ce_ms"]) for row in rows if "ce_ms" in row]
            if ce:
                ax.plot(*zip(*ce), "o-", color=color, label=f"{run['shape']} cross-encoder")
            ax.plot(
                [r["n"] for r in rows],
                [r["d2llm_fast_ms"] for r in rows],
                "s--",
                color=color,
                label=f"{run['shape']} D2LLM",
            )
            iem = [r.get("iem_graph_ms", r["iem_ms"]) for r in rows]
            ax.plot([r["n"] for r in rows], iem, ":", color=color, alpha=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("candidates per query (N)")
        ax.set_ylabel("latency per query (ms)")
        ax.set_title(f"{machine.get('gpu') or 'CPU, ' + str(machine['cpu_count']) + ' cores'} ({machine['date']})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, title="dotted: IEM alone (GPU time on a GPU)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_cpu(args: argparse.Namespace) -> int:
    """The CPU benchmark for one student dtype (default: the CPU policy's), written to ``--output-dir``."""
    from d2llm_st.runtime import DTYPE_ENV, cpu_dtype

    if args.dtype:
        os.environ[DTYPE_ENV] = args.dtype  # the distillation steps follow the same dtype
    dtype = cpu_dtype()
    machine = machine_info(torch.device("cpu"))
    result = {"cpu": True, "machine": machine, "runs": [cpu_benchmark(args, dtype)]}
    table = cpu_report([result])
    print(table)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, f"speed-cpu-{result['runs'][0]['dtype']}.json"), "w") as f:
            json.dump(result, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", nargs="+", default=["smollm2"], choices=[*REAL_MODELS, *SHAPES])
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="Default: bf16 on a GPU; on the CPU the CPU policy's (bf16 where the CPU has bf16 instructions).",
    )
    parser.add_argument("--tokenizer", help="Tokenizer folder for the random shapes (default: SmolLM2's).")
    parser.add_argument("--n", type=int, nargs="+", default=[10, 100, 1000], help="Candidates per query.")
    parser.add_argument("--query-tokens", type=int, default=32, help="Query length in tokens, prompt included.")
    parser.add_argument("--passage-tokens", type=int, default=128)
    parser.add_argument("--corpus-size", type=int, default=1000, help="Passages encoded for the throughput figure.")
    parser.add_argument("--encode-batch-size", type=int, default=64)
    parser.add_argument("--ce-batch-size", type=int, default=64)
    parser.add_argument("--ce-max-n", type=int, help="Skip the cross-encoder above this N (slow on a CPU).")
    parser.add_argument("--compile", action="store_true", help="torch.compile the FastReranker query path too.")
    parser.add_argument("--repeats", type=int, default=30, help="Timed repeats of the D2LLM query path.")
    parser.add_argument("--output-dir", help="Write speed.json, speed.md and benchmark_latency.png here.")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="Only tabulate (and --plot) earlier runs.")
    parser.add_argument("--plot", help="Where to write the latency plot (with --report).")
    parser.add_argument(
        "--train-config", help="CPU: also time `d2llm distill` steps with this config (zero-shot bundled teacher)."
    )
    parser.add_argument("--train-steps", type=int, default=6, help="Steps timed with --train-config.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.report:
        results = []
        for path in args.report:
            with open(path, encoding="utf-8") as f:
                results.append(json.load(f))
        cpu = [result for result in results if result.get("cpu")]
        gpu = [result for result in results if not result.get("cpu")]
        if cpu:
            print(cpu_report(cpu))
        if gpu:
            print(report(gpu))
        if args.plot and gpu:
            plot(results, args.plot)
        return 0

    device = torch.device(args.device)
    if device.type == "cpu" and args.shapes == ["smollm2"]:
        return run_cpu(args)
    dtype = getattr(torch, args.dtype or "bfloat16")
    if args.tokenizer is None and any(shape not in REAL_MODELS for shape in args.shapes):
        from d2llm_st.gguf import bundled_smollm2

        args.tokenizer = bundled_smollm2()
    torch.manual_seed(0)
    args.bandwidth_gbs = copy_bandwidth_gbs(device)
    result = {"machine": machine_info(device), "copy_bandwidth_gbs": args.bandwidth_gbs, "runs": []}
    for shape in args.shapes:
        try:
            result["runs"].append(benchmark_shape(shape, args, device, dtype))
        except torch.OutOfMemoryError:
            logger.exception(f"{shape}: out of memory; skipped")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.output_dir:  # after every shape, so a later failure keeps the earlier figures
            os.makedirs(args.output_dir, exist_ok=True)
            with open(os.path.join(args.output_dir, "speed.json"), "w", encoding="utf-8") as f:
                json.dump(result, f, indent=2)
    table = report([result])
    print(table)
    if args.output_dir:
        with open(os.path.join(args.output_dir, "speed.md"), "w", encoding="utf-8") as f:
            f.write(table + "\n")
        plot([result], os.path.join(args.output_dir, "benchmark_latency.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
