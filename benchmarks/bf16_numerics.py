"""bf16 against float32 scores of the same model on real data: does the CPU bf16 policy change the answers?

For a D2LLM student (IEM logits) or an LLM teacher (P(yes)), loaded once with float32 and once with bf16
backbone weights (``d2llm_st.runtime``), it scores

- every STS-B dev pair (symmetric task) and reports the Spearman correlation between the two score lists;
- every WikiQA dev question's candidates (asymmetric task) and reports how often both dtypes put the same
  candidate first, and the NDCG@10 of each.

Usage::

    python benchmarks/bf16_numerics.py --student runs/distill-cpu/model --teacher runs/teacher-cpu \\
        --data ../shared/data --output docs/benchmarks/bf16_numerics.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np
import torch
from common import machine_info
from scipy.stats import spearmanr

from d2llm_st import D2LLM
from d2llm_st.data import read_beir, read_sts
from d2llm_st.evaluation import ranking
from d2llm_st.teacher import LLMTeacher

logger = logging.getLogger("bf16_numerics")


def load(kind: str, path: str, dtype: torch.dtype):
    """A scorer ``(pairs, task) -> np.ndarray`` of the model at ``path`` with backbone weights in ``dtype``."""
    if kind == "student":
        model = D2LLM(path, device="cpu", model_kwargs={"dtype": dtype})
        return lambda pairs, task: model.predict(pairs, task=task, apply_sigmoid=False, batch_size=64)
    teacher = LLMTeacher(path, device="cpu", dtype=dtype)
    return lambda pairs, task: teacher.score(pairs, task=task, batch_size=32).scores


def compare(kind: str, path: str, data: str) -> dict:
    sts = read_sts(os.path.join(data, "sts", "stsb", "dev.jsonl.gz"))
    sts_pairs = [(row["sentence1"], row["sentence2"]) for row in sts]
    wikiqa = read_beir(os.path.join(data, "ir", "wikiqa"), split="dev")
    questions = [(qid, list(wikiqa.candidates[qid])) for qid in wikiqa.queries if wikiqa.candidates.get(qid)]
    qa_pairs = [(wikiqa.queries[qid], wikiqa.corpus[doc]) for qid, docs in questions for doc in docs]
    scores, seconds = {}, {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        score = load(kind, path, dtype)
        start = time.perf_counter()
        scores[name] = (np.asarray(score(sts_pairs, "symmetric")), np.asarray(score(qa_pairs, "asymmetric")))
        seconds[name] = time.perf_counter() - start
    same_top1, runs = 0, {name: {} for name in scores}
    offset = 0
    for qid, docs in questions:
        block = slice(offset, offset + len(docs))
        offset += len(docs)
        tops = {name: docs[int(np.argmax(values[1][block]))] for name, values in scores.items()}
        same_top1 += tops["float32"] == tops["bfloat16"]
        for name, values in scores.items():
            runs[name][qid] = dict(zip(docs, values[1][block].tolist()))
    qrels = {qid: wikiqa.qrels[qid] for qid, _ in questions}
    ndcg = {name: ranking(run, qrels)["ndcg@10"] for name, run in runs.items()}
    return {
        "model": kind,
        "path": path,
        "stsb_dev_pairs": len(sts_pairs),
        "stsb_spearman_bf16_vs_float32": float(spearmanr(scores["float32"][0], scores["bfloat16"][0]).statistic),
        "stsb_spearman_vs_gold": {
            name: float(spearmanr(values[0], [row["score"] for row in sts]).statistic)
            for name, values in scores.items()
        },
        "wikiqa_dev_questions": len(questions),
        "wikiqa_same_top1": same_top1 / len(questions),
        "wikiqa_ndcg@10": ndcg,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", help="A saved D2LLM folder.")
    parser.add_argument("--teacher", help="A teacher folder (d2llm teacher-train output).")
    parser.add_argument("--data", default="../shared/data", help="The shared/data folder.")
    parser.add_argument("--output", help="Write the figures as JSON here.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = {"machine": machine_info(torch.device("cpu")), "comparisons": []}
    for kind, path in (("student", args.student), ("teacher", args.teacher)):
        if path:
            result["comparisons"].append(compare(kind, path, args.data))
    print(
        "| model | STS-B dev Spearman, bf16 vs float32 | WikiQA dev same top-1 | STS-B Spearman (f32 / bf16) "
        "| WikiQA NDCG@10 (f32 / bf16) | seconds (f32 / bf16) |"
    )
    print("|---|---|---|---|---|---|")
    for row in result["comparisons"]:
        gold, ndcg, seconds = row["stsb_spearman_vs_gold"], row["wikiqa_ndcg@10"], row["seconds"]
        print(
            f"| {row['model']} | {row['stsb_spearman_bf16_vs_float32']:.4f} | {row['wikiqa_same_top1']:.1%} | "
            f"{gold['float32']:.4f} / {gold['bfloat16']:.4f} | {ndcg['float32']:.4f} / {ndcg['bfloat16']:.4f} | "
            f"{seconds['float32']:.0f} / {seconds['bfloat16']:.0f} |"
        )
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
