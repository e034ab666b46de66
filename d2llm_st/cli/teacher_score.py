"""Score labelled pairs with a teacher and report how well it separates positives from negatives.

Scores go to a SQLite cache (--cache, default OUTPUT.cache.sqlite when --output is given), so a
killed run resumes where it stopped and no pair is ever scored twice; --output writes one JSON line
per pair (text_a, text_b, label, score) once all are scored.

Under torchrun or accelerate launch (one process per GPU, any number of nodes) each process scores every N-th
pair not yet in the cache into its own shard file beside it, and rank 0 merges them and writes --output; the
cache must be in a folder every process sees. A killed run, re-run with any number of processes, scores only
what is missing. See docs/scaling.md.

Examples:
  d2llm teacher-score --teacher runs/teacher --kind nli --data snli/dev.jsonl.gz --limit 1000 \
      --cache runs/teacher-scores.sqlite --output runs/snli-dev-scores.jsonl
  torchrun --nproc_per_node 8 -m d2llm_st.cli teacher-score --teacher runs/teacher --kind nli \
      --data snli/train.jsonl.gz --cache /shared/teacher-scores.sqlite --output /shared/snli-scores.jsonl
"""

from __future__ import annotations

import argparse

from d2llm_st.cli._data_args import add_data_arguments, read_labelled_pairs
from d2llm_st.cli._types import positive_int
from d2llm_st.errors import UserError

COMMAND = "teacher-score"
HELP = "Score labelled pairs with a teacher (cached, resumable) and print AUC / accuracy."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher", required=True, help="Teacher folder, hub id or bundled:smollm2 (causal LM or CrossEncoder)."
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--cache",
        help="SQLite score cache (resume + de-duplication); with several processes, in a folder all of them see.",
    )
    parser.add_argument("--output", help="Write scores as JSON lines here (rank 0 writes it).")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--max-length", type=positive_int, help="Longest prompt in tokens.")


def run(args: argparse.Namespace) -> int:
    import json
    import os

    from d2llm_st.model_paths import resolve_model_path

    teacher_path = resolve_model_path(args.teacher, "--teacher")

    from d2llm_st import distributed
    from d2llm_st.evaluation import binary_classification
    from d2llm_st.tasks import dataset_task
    from d2llm_st.teacher import load_teacher
    from d2llm_st.teacher.sharded import score_sharded, shard_folder

    cache = args.cache or (f"{args.output}.cache.sqlite" if args.output else None)
    if distributed.launched() and cache is None:
        raise UserError(
            f"With {os.environ['WORLD_SIZE']} processes, give --cache (or --output) in a folder every process sees: "
            "the processes' scores are merged there."
        )
    dist = distributed.setup()
    if cache is not None:
        dist.check_shared_folder(shard_folder(cache), "The score cache folder")  # before the models load
    kwargs = {"max_length": args.max_length} if args.max_length else {}
    if dist.is_distributed:
        kwargs["device"] = dist.device
    pairs = read_labelled_pairs(args)  # a broken file is reported before the model loads
    teacher = load_teacher(teacher_path, **kwargs)
    scores = score_sharded(
        teacher,
        [(p.text_a, p.text_b) for p in pairs],
        dataset_task(args.kind),
        dist=dist,
        cache=cache,
        batch_size=args.batch_size,
    ).scores
    distributed.teardown()
    if not dist.is_main:
        return 0
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
