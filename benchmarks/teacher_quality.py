"""Teacher quality before and after yes/no fine-tuning: SNLI dev AUC, WikiQA dev NDCG@10, STS-B dev Spearman.

    nice -n 10 python benchmarks/teacher_quality.py --output runs/teacher-smollm2

Steps: zero-shot evaluation of the base LLM -> LoRA fine-tuning on SNLI train (entailment = yes,
contradiction = no) plus WikiQA train candidates (correct = yes, incorrect = no), plus optionally STS-B
train pairs (``--stsb-train-pairs``, the normalised score as a soft target) -> the same evaluation of the
tuned teacher. STS-B dev is the same fixed 300-pair subset the distillation configs evaluate on.
Prints a markdown table and writes ``teacher_quality.json`` next to the teacher. Scores are
cached (``<output>-cache.sqlite``) and training checkpoints kept, so an interrupted run resumes.

The figures come from d2llm's evaluators (``d2llm_st.evaluation.build_evaluator`` for STS-B and WikiQA, the
NLI evaluator over a label-balanced SNLI sample), so they are computed as ``d2llm eval`` computes them; WikiQA's
MRR has no cut-off (figures recorded before this script used the evaluators were MRR@10).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import random
import sys
import time

from d2llm_st.data import beir_pairs, nli_pairs, read_beir, read_nli, read_sts, sts_pairs, subsample
from d2llm_st.evaluation import IEMBinaryClassificationEvaluator, build_evaluator, evaluate
from d2llm_st.teacher import LLMTeacher, TeacherTrainingConfig, finetune_teacher

logger = logging.getLogger("teacher_quality")
DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def balanced_sample(pairs: list, per_label: int, seed: int) -> list:
    """Up to ``per_label`` pairs of each label (1 and 0), shuffled."""
    rng = random.Random(seed)
    positives = [p for p in pairs if p.label == 1.0]
    negatives = [p for p in pairs if p.label == 0.0]
    sample = rng.sample(positives, min(per_label, len(positives))) + rng.sample(
        negatives, min(per_label, len(negatives))
    )
    rng.shuffle(sample)
    return sample


def evaluators(data: str, snli_dev: list, stsb_dev_pairs: int, batch_size: int) -> list:
    """STS-B dev (a fixed subset of ``stsb_dev_pairs``), the label-balanced SNLI dev sample, WikiQA dev candidates."""
    common = dict(batch_size=batch_size, show_progress_bar=None, write_csv=False)
    labels = [int(p.label) for p in snli_dev]
    snli = IEMBinaryClassificationEvaluator(
        [p.text_a for p in snli_dev], [p.text_b for p in snli_dev], labels, name="snli", **common
    )
    return [
        build_evaluator("sts", os.path.join(data, "sts", "stsb"), "dev", "stsb", limit=stsb_dev_pairs, **common),
        snli,
        build_evaluator("answer-selection", os.path.join(data, "ir", "wikiqa"), "dev", "wikiqa", **common),
    ]


def evaluate_teacher(teacher: LLMTeacher, sets: list) -> dict[str, float]:
    """SNLI dev entailment-vs-contradiction AUC, WikiQA dev re-ranking NDCG@10 / MRR / MAP, STS-B dev Spearman."""
    started = time.time()
    scores = evaluate(teacher, sets)
    return {
        "snli_auc": scores["snli"]["auc"],
        "snli_accuracy": scores["snli"]["accuracy"],
        "wikiqa_ndcg@10": scores["wikiqa"]["ndcg@10"],
        "wikiqa_mrr": scores["wikiqa"]["mrr"],
        "wikiqa_map": scores["wikiqa"]["map"],
        "stsb_spearman": scores["stsb"]["spearman"],
        "eval_seconds": time.time() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Base causal LM (default: the bundled SmolLM2-135M-Instruct).")
    parser.add_argument("--data", default=DEFAULT_DATA, help="The shared data folder (nli/, ir/).")
    parser.add_argument("--output", required=True, help="Where the fine-tuned teacher is saved.")
    parser.add_argument("--snli-train-per-label", type=int, default=1000)
    parser.add_argument("--wikiqa-train-per-label", type=int, default=800)
    parser.add_argument("--snli-dev-per-label", type=int, default=300)
    parser.add_argument("--stsb-train-pairs", type=int, default=0, help="STS-B train pairs (soft targets) to add.")
    parser.add_argument("--stsb-dev-pairs", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a CPU shared with other jobs).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.model is None:
        from d2llm_st.gguf import bundled_smollm2

        args.model = bundled_smollm2()
    nli_dir, wikiqa_dir = os.path.join(args.data, "nli", "snli"), os.path.join(args.data, "ir", "wikiqa")
    snli_train = balanced_sample(
        nli_pairs(read_nli(os.path.join(nli_dir, "train.jsonl.gz"))), args.snli_train_per_label, args.seed
    )
    wikiqa_train = balanced_sample(beir_pairs(read_beir(wikiqa_dir, "train")), args.wikiqa_train_per_label, args.seed)
    snli_dev = balanced_sample(
        nli_pairs(read_nli(os.path.join(nli_dir, "dev.jsonl.gz"))), args.snli_dev_per_label, args.seed
    )
    stsb_dir = os.path.join(args.data, "sts", "stsb")
    stsb_rows = read_sts(os.path.join(stsb_dir, "train.jsonl.gz")) if args.stsb_train_pairs else []
    stsb_train = sts_pairs(subsample(stsb_rows, args.stsb_train_pairs, seed=args.seed) if stsb_rows else [])
    train = snli_train + wikiqa_train + stsb_train
    sets = evaluators(args.data, snli_dev, args.stsb_dev_pairs, args.eval_batch_size)
    logger.info(
        f"train: {len(snli_train)} SNLI + {len(wikiqa_train)} WikiQA + {len(stsb_train)} STS-B pairs; "
        f"eval: {len(sets[0].pairs)} STS-B dev pairs, {len(snli_dev)} SNLI dev pairs, "
        f"{sum(len(s['positive']) + len(s['negative']) for s in sets[2].samples)} WikiQA dev candidates of "
        f"{len(sets[2].samples)} queries"
    )
    cache = f"{os.path.normpath(args.output)}-cache.sqlite"
    results = {}
    base = LLMTeacher(args.model, max_length=args.max_length, cache=cache)
    results["zero-shot"] = evaluate_teacher(base, sets)
    del base

    config = TeacherTrainingConfig(
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_length=args.max_length,
        seed=args.seed,
    )
    started = time.time()
    finetune_teacher(args.model, train, args.output, config)
    train_seconds = time.time() - started
    tuned = LLMTeacher(args.output, cache=cache)
    results["fine-tuned"] = evaluate_teacher(tuned, sets)

    report = {
        "results": results,
        "train_pairs": len(train),
        "train_seconds": train_seconds,
        "config": config.to_dict(),
        "command": " ".join(["python"] + sys.argv),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
    }
    with open(os.path.join(args.output, "teacher_quality.json"), "w") as f:
        json.dump(report, f, indent=2)
    print("| teacher | STS-B dev Spearman | SNLI dev AUC (E vs C) | SNLI dev acc | WikiQA dev NDCG@10 | MRR | MAP |")
    print("|---|---|---|---|---|---|---|")
    for name, row in results.items():
        print(
            f"| {name} | {row['stsb_spearman']:.4f} | {row['snli_auc']:.4f} | {row['snli_accuracy']:.4f} | "
            f"{row['wikiqa_ndcg@10']:.4f} | {row['wikiqa_mrr']:.4f} | {row['wikiqa_map']:.4f} |"
        )
    print(f"fine-tuning: {report['train_pairs']} pairs, {train_seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
