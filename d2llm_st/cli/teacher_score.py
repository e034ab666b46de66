"""Score labelled pairs with a teacher and report how well it separates positives from negatives.

Scores go to a SQLite cache (--cache, default OUTPUT.cache.sqlite when --output is given), so a
killed run resumes where it stopped and no pair is ever scored twice; --output writes one JSON line
per pair (text_a, text_b, label, score) once all are scored.

Example:
  d2llm teacher-score --teacher runs/teacher --kind nli --data snli/dev.jsonl.gz --limit 1000 \
      --cache runs/teacher-scores.sqlite --output runs/snli-dev-scores.jsonl
"""

from __future__ import annotations

import argparse

from d2llm_st.cli._data_args import add_data_arguments, read_labelled_pairs
from d2llm_st.cli._types import positive_int

COMMAND = "teacher-score"
HELP = "Score labelled pairs with a teacher (cached, resumable) and print AUC / accuracy."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher", required=True, help="Teacher folder, hub id or bundled:smollm2 (causal LM or CrossEncoder)."
    )
    add_data_arguments(parser)
    parser.add_argument("--cache", help="SQLite score cache (resume + de-duplication).")
    parser.add_argument("--output", help="Write scores as JSON lines here.")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--max-length", type=positive_int, help="Longest prompt in tokens.")


def run(args: argparse.Namespace) -> int:
    import json
    import os

    from d2llm_st.model_paths import resolve_model_path

    teacher_path = resolve_model_path(args.teacher, "--teacher")

    from d2llm_st.data.distillation import KINDS
    from d2llm_st.evaluation import binary_classification
    from d2llm_st.teacher import load_teacher

    cache = args.cache or (f"{args.output}.cache.sqlite" if args.output else None)
    kwargs = {"cache": cache} if cache else {}
    if args.max_length:
        kwargs["max_length"] = args.max_length
    pairs = read_labelled_pairs(args)  # a broken file is reported before the model loads
    teacher = load_teacher(teacher_path, **kwargs)
    scores = teacher.score([(p.text_a, p.text_b) for p in pairs], KINDS[args.kind], batch_size=args.batch_size).scores
    if args.output:
        with open(f"{args.output}.tmp", "w", encoding="utf-8") as f:
            for pair, score in zip(pairs, scores):
                row = {"text_a": pair.text_a, "text_b": pair.text_b, "label": pair.label, "score": float(score)}
                f.write(json.dumps(row) + "\n")
        os.replace(f"{args.output}.tmp", args.output)
    hard = [(score, int(p.label)) for p, score in zip(pairs, scores) if p.label in (0.0, 1.0)]
    print(f"scored {len(pairs)} pairs; mean P(yes) {scores.mean():.4f}")
    if len({label for _, label in hard}) == 2:
        metrics = binary_classification([s for s, _ in hard], [label for _, label in hard])
        print(" ".join(f"{name}={value:.4f}" for name, value in metrics.items()))
    return 0
