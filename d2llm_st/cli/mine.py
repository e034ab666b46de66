"""Build D2LLM training rows: mine K hard negatives per anchor and score every (anchor, candidate) with a teacher.

Writes a HF datasets folder with columns anchor, positive, negative_1..K and label (the teacher's
P(yes) per candidate; see docs/data.md), ready for SentenceTransformerTrainer, plus d2llm_rows.json
(kind, K, teacher). `d2llm distill` trains on it: give the folder as a dataset's path (same type and
num_negatives). Teacher scores are cached (--cache) and bi-encoder embeddings too (OUTPUT.embeddings),
so an interrupted run resumes without re-scoring; the dataset is written to OUTPUT.tmp and renamed when
complete, and an existing OUTPUT is kept unless --overwrite is given.

Example:
  d2llm mine --teacher runs/teacher --kind beir --data scifact --split train --num-negatives 7 \
      --method bm25 --range-max 50 --cache runs/scores.sqlite --output runs/scifact-train
  # then, in the distill config: datasets: [{name: scifact, type: beir, path: runs/scifact-train, num_negatives: 7}]
"""

from __future__ import annotations

import argparse

from d2llm_st.cli._data_args import add_data_arguments
from d2llm_st.cli._types import non_negative_int, positive_int

COMMAND = "mine"
HELP = "Mine hard negatives (BM25 or bi-encoder) and teacher-score them into distillation rows."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="Teacher folder, hub id or bundled:smollm2.")
    add_data_arguments(parser)
    parser.add_argument("--output", required=True, help="Folder for the datasets.Dataset (save_to_disk).")
    parser.add_argument("--num-negatives", type=positive_int, default=3, help="K hard negatives per anchor.")
    parser.add_argument("--method", choices=("bm25", "bi-encoder", "none"), default="bm25")
    parser.add_argument("--mining-model", help="Bi-encoder for --method bi-encoder (SentenceTransformer path / id).")
    parser.add_argument(
        "--range-min", type=non_negative_int, default=0, help="Skip the top ranks (likely unlabelled positives)."
    )
    parser.add_argument("--range-max", type=positive_int, default=50, help="Mine from ranks below this.")
    parser.add_argument("--sampling", choices=("top", "random"), default="top", help="Hardest first, or sampled.")
    parser.add_argument("--features", action="store_true", help="Store teacher features (for feature imitation).")
    parser.add_argument("--cache", help="SQLite score cache (resume + de-duplication).")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--overwrite", action="store_true", help="Rebuild even if OUTPUT exists.")


def run(args: argparse.Namespace) -> int:
    import os

    from d2llm_st.errors import UserError
    from d2llm_st.model_paths import resolve_model_path

    if os.path.isdir(args.output) and not args.overwrite:
        print(f"{args.output} exists; nothing to do (pass --overwrite to rebuild it).")
        return 0
    if args.method == "bi-encoder" and not args.mining_model:
        raise UserError("--method bi-encoder needs --mining-model (a SentenceTransformer folder or hub id).")
    if args.range_max <= args.range_min:
        raise UserError(f"--range-max ({args.range_max}) must be above --range-min ({args.range_min}).")
    teacher_path = resolve_model_path(args.teacher, "--teacher")
    mining_model = resolve_model_path(args.mining_model, "--mining-model") if args.mining_model else None

    from d2llm_st.data import build_distillation_dataset, save_distillation_rows
    from d2llm_st.teacher import load_teacher

    teacher = load_teacher(teacher_path, **({"cache": args.cache} if args.cache else {}))
    dataset = build_distillation_dataset(
        args.kind,
        args.data,
        split=args.split,
        teacher=teacher,
        num_negatives=args.num_negatives,
        limit=args.limit,
        return_features=args.features,
        batch_size=args.batch_size,
        mining=args.method,
        mining_model=mining_model,
        range_min=args.range_min,
        range_max=args.range_max,
        sampling=args.sampling,
        mining_cache=f"{args.output}.embeddings" if args.method == "bi-encoder" else None,
        seed=args.seed,
    )
    save_distillation_rows(
        dataset,
        args.output,
        kind=args.kind,
        teacher=teacher,
        data=args.data,
        split=args.split,
        limit=args.limit,
        method=args.method,
        seed=args.seed,
    )
    print(f"{len(dataset)} rows x {len(dataset.column_names)} columns saved to {args.output}")
    return 0
