"""LoRA-tune a causal LM as a yes/no relevance teacher on labelled pairs.

Positives (NLI entailment, relevant BEIR passages) are trained to answer "yes", negatives
(contradiction, incorrect answer-selection candidates) "no"; STS scores are soft targets. Repeat
--kind/--data to train on several sets at once (--limit applies per set). Training runs on Hugging
Face's Trainer; it checkpoints to OUTPUT/checkpoint-<step> every --checkpoint-every steps and resumes
from the newest one when started again with the same arguments; the result is a normal Hugging Face
folder plus d2llm_teacher.json.

Example:
  d2llm teacher-train --model SMOLLM2_DIR --kind nli --data snli/train.jsonl.gz \
      --kind beir --data wikiqa --limit 1000 --output runs/teacher
"""

from __future__ import annotations

import argparse

from d2llm_st.cli._data_args import add_data_arguments, read_labelled_pairs
from d2llm_st.cli._types import positive_float, positive_int

COMMAND = "teacher-train"
HELP = "LoRA-tune a causal LM teacher to answer yes/no on labelled pairs (resumable)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="Causal LM (folder, hub id or bundled:smollm2) or a teacher to train further.",
    )
    add_data_arguments(parser, multiple=True)
    parser.add_argument("--output", required=True, help="Folder to save the teacher to.")
    parser.add_argument("--lora-r", type=positive_int, default=16)
    parser.add_argument("--learning-rate", type=positive_float, default=2e-4)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--epochs", type=positive_int, default=1)
    parser.add_argument("--max-steps", type=positive_int, help="Stop after this many optimizer steps.")
    parser.add_argument("--max-length", type=positive_int, default=160, help="Longest prompt in tokens.")
    parser.add_argument(
        "--checkpoint-every", type=positive_int, default=50, help="Save a resumable checkpoint this often."
    )
    parser.add_argument("--adapter-only", action="store_true", help="Save the LoRA adapter instead of a merged model.")
    parser.add_argument("--device", help="cpu / cuda (default: cuda when available).")


def run(args: argparse.Namespace) -> int:
    from d2llm_st.model_paths import resolve_model_path

    resolve_model_path(args.model, "--model")  # a bad name fails here, before the data is read

    from d2llm_st.teacher import TeacherTrainingConfig, finetune_teacher

    config = TeacherTrainingConfig(
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_length=args.max_length,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    pairs = read_labelled_pairs(args)
    path = finetune_teacher(
        args.model, pairs, args.output, config=config, device=args.device, merge=not args.adapter_only
    )
    print(f"teacher saved to {path}")
    return 0
