"""Evaluate a D2LLM student, a bi-encoder, a CrossEncoder or an LLM teacher on the same data and metrics.

Tasks (``--data`` is a file, or a folder holding ``<split>.jsonl.gz``, for sts / nli; a BEIR folder for ir /
answer-selection):

  sts               Spearman and Pearson correlation with gold similarity (symmetric scores).
  nli               AUC, average precision and best-threshold accuracy of entailment vs contradiction (and
                    its threshold); with --threshold T (chosen on a dev split: its accuracy_threshold),
                    also the accuracy at T (accuracy_at_threshold), the fair figure for a test split.
  ir                Cosine search over the corpus, then the model reranks the top --candidate-k:
                    NDCG@10, MRR@10, MAP, Recall@100 (and the first stage's own figures).
  answer-selection  Rank each question's candidate list (candidates/<split>.tsv): NDCG@10, MAP, MRR.

Scores: a D2LLM uses its IEM, a bi-encoder cosine, a CrossEncoder ``predict``, a teacher ``P(yes)``.
The first metric named is each evaluator's primary metric (marked in the output).
--model-type is detected from the saved folder when left at auto.

Example:
  d2llm eval --model runs/student --task ir --data ../shared/data/ir/scifact --candidate-k 100 --output r.json
"""

from __future__ import annotations

import argparse
import json
import os

from d2llm_st.cli._types import existing_path, finite_float, positive_int
from d2llm_st.tasks import EVAL_TYPES

COMMAND = "eval"
HELP = "Evaluate a model (D2LLM, bi-encoder, cross-encoder, teacher) on STS, NLI, IR or answer selection."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--model",
        required=True,
        help="Model folder, bundled:smollm2 (a teacher), or a hub id with an explicit --model-type.",
    )
    parser.add_argument(
        "--model-type",
        default="auto",
        choices=["auto", "d2llm", "bi-encoder", "cross-encoder", "teacher"],
        help="How to load and score with the model (default: detected from the folder).",
    )
    parser.add_argument("--task", required=True, choices=list(EVAL_TYPES))
    parser.add_argument("--data", required=True, type=existing_path, help="Data file or folder (see above).")
    parser.add_argument("--split", default="test", help="Split to evaluate (default: test).")
    parser.add_argument(
        "--limit", type=positive_int, help="Evaluate a fixed random subset: N pairs (sts/nli) or N queries."
    )
    parser.add_argument(
        "--candidate-k", type=positive_int, default=100, help="ir: first-stage candidates reranked per query."
    )
    parser.add_argument(
        "--first-stage",
        help="ir: a bi-encoder or D2LLM folder whose cosine candidates are reranked (required for a cross-encoder "
        "or teacher; default: the model itself).",
    )
    parser.add_argument("--first-stage-type", default="auto", help="--model-type of --first-stage.")
    parser.add_argument(
        "--max-corpus", type=positive_int, help="ir: search only this many passages (relevant ones kept)."
    )
    parser.add_argument(
        "--threshold",
        type=finite_float,
        help="nli: also report the accuracy of calling a pair entailment when its score is >= this (e.g. the "
        "accuracy_threshold of the same model on the dev split).",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--device", help="cpu, cuda, ... (default: the best available).")
    parser.add_argument("--output", help="Write the metrics and the run's settings to this JSON file.")


def resolved_model_type(path: str, requested: str) -> str:
    """``requested``, or the type detected from the folder ``path`` when it is ``auto``."""
    from d2llm_st.evaluation.scorers import detect_model_type

    return detect_model_type(path) if requested == "auto" else requested


def build_evaluator(args: argparse.Namespace, name: str = ""):
    """The evaluator the arguments ask for (:func:`d2llm_st.evaluation.build_evaluator`)."""
    from d2llm_st.evaluation import build_evaluator as build
    from d2llm_st.evaluation import load_scorer

    first_stage = None
    if args.task == "ir" and args.first_stage:
        first_stage = load_scorer(args.first_stage, args.first_stage_type, args.device, args.batch_size)
    return build(
        args.task,
        args.data,
        split=args.split,
        name=name,
        limit=args.limit,
        candidate_k=args.candidate_k,
        max_corpus=args.max_corpus,
        first_stage=first_stage,
        batch_size=args.batch_size,
        show_progress_bar=None,
        write_csv=False,
        threshold=args.threshold,
    )


def evaluate(args: argparse.Namespace) -> dict:
    """Load, evaluate, and return ``{"settings": ..., "metrics": ...}`` (unprefixed metric names; the settings name
    the evaluator's ``primary_metric``)."""
    import time

    from d2llm_st.errors import UserError
    from d2llm_st.model_paths import resolve_model_path

    if args.threshold is not None and args.task != "nli":
        raise UserError(f"--threshold applies to --task nli only, not {args.task}.")
    path = resolve_model_path(args.model, "--model")
    if args.first_stage:
        resolve_model_path(args.first_stage, "--first-stage")
    if args.task == "ir" and args.first_stage is None:
        kind = resolved_model_type(path, args.model_type)
        if kind in ("cross-encoder", "teacher"):
            raise UserError(f"a {kind} cannot search a corpus; pass --first-stage PATH (a bi-encoder or D2LLM).")

    from d2llm_st.evaluation import headline_metric, load_scorer

    evaluator = build_evaluator(args, name="")
    scorer = load_scorer(path, args.model_type, args.device, args.batch_size)
    start = time.perf_counter()
    metrics = evaluator(scorer)
    settings = {
        "model": args.model,
        "model_type": scorer.model_type,
        "score": scorer.score_name,
        "task": args.task,
        "data": args.data,
        "split": args.split,
        "limit": args.limit,
        "threshold": args.threshold,
        "primary_metric": headline_metric(evaluator),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.task == "ir":
        settings.update(
            candidate_k=args.candidate_k,
            first_stage=args.first_stage or args.model,
            queries=len(evaluator.queries),
            corpus=len(evaluator.corpus),
        )
    return {"settings": settings, "metrics": metrics}


def format_result(result: dict) -> str:
    settings, metrics = result["settings"], result["metrics"]
    lines = [
        f"{settings['model']} ({settings['model_type']}, {settings['score']}) on {settings['task']}: {settings['data']}"
    ]
    if settings["task"] == "ir":
        lines[0] += f" (candidate_k={settings['candidate_k']}, first stage: {settings['first_stage']})"
    width = max(len(key) for key in metrics)
    primary = settings.get("primary_metric")
    lines += [
        f"  {key:<{width}}  {value:.4f}{'  (primary)' if key == primary else ''}" for key, value in metrics.items()
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = evaluate(args)
    print(format_result(result))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0
