"""LoRA-tune a causal LM as a yes/no relevance teacher on labelled pairs.

Positives (NLI entailment, relevant BEIR passages) are trained to answer "yes", negatives
(contradiction, incorrect answer-selection candidates) "no"; STS scores are soft targets. Give --data
several times (with matching --kind) to train on several sets at once. The run checkpoints to
OUTPUT/checkpoint and resumes from it when started again with the same arguments.

Example:
  d2llm teacher-train --model SMOLLM2_DIR --kind nli --data snli/train.jsonl.gz --limit 4000 \
      --output runs/teacher --max-steps 300
"""

from __future__ import annotations

import argparse

from d2llm_st.cli._data_args import add_data_arguments, read_labelled_pairs

COMMAND = "teacher-train"
HELP = "LoRA-tune a causal LM teacher to answer yes/no on labelled pairs (resumable)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Causal LM (hub id or folder) or a teacher to train further.")
    add_data_arguments(parser)
    parser.add_argument("--output", required=True, help="Folder to save the teacher to.")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, help="Stop after this many optimizer steps.")
    parser.add_argument("--max-length", type=int, default=160, help="Longest prompt in tokens.")
    parser.add_argument("--device", help="cpu / cuda (default: cuda when available).")


def run(args: argparse.Namespace) -> int:
    from d2llm_st.teacher import TeacherTrainingConfig, finetune_teacher

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
    path = finetune_teacher(args.model, read_labelled_pairs(args), args.output, config=config, device=args.device)
    print(f"teacher saved to {path}")
    return 0
