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
        from d2llm_st.gguf import bundled_smollm2

        model = D2LLM.from_llm(
            bundled_smollm2(), query_prompt=QUERY_PROMPT, model_kwargs={"dtype": dtype}, device=str(device)
        )
        return model.to(dtype)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", nargs="+", default=["smollm2"], choices=[*REAL_MODELS, *SHAPES])
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="Default: bf16 on GPU, fp32 on CPU."
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.report:
        results = []
        for path in args.report:
            with open(path, encoding="utf-8") as f:
                results.append(json.load(f))
        print(report(results))
        if args.plot:
            plot(results, args.plot)
        return 0

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
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
