r"""Same-steps comparison: a distilled D2LLM student with and without DeeLM bidirectional upper layers.

Runs ``d2llm distill`` twice on one config that differs only in ``student.bidirectional_from_layer``
(``null`` = causal vs K), with one shared teacher-score cache (the teacher is queried once), then
prints a markdown table of every metric on STS-B dev (Spearman) and WikiQA answer selection
(NDCG@10, MAP, MRR) and writes it, with the machine and the exact commands, to
``OUTPUT/deelm_compare.md``. K defaults to 28, the last-token turning point of SmolLM2-135M on
STS-B dev (docs/results.md, ``d2llm turning-point``).

CPU, small (minutes):
  nice -n 10 python benchmarks/deelm_compare.py --steps 30 --train-limit 240 --eval-limit 200 \
      --ir-limit 40 --output runs/deelm_cpu
GPU (the lent H100; see benchmarks/gpu/ for staging the model and data):
  python benchmarks/deelm_compare.py --steps 500 --train-limit 4000 --batch-size 32 --bf16 \
      --data /root/stage/data --output runs/deelm_gpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from common import machine_info

from d2llm_st.training import (
    DatasetConfig,
    DistillConfig,
    EvalSetConfig,
    EvaluationConfig,
    StudentConfig,
    TeacherConfig,
    TrainingConfig,
)
from d2llm_st.training.config import BUNDLED_SMOLLM2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.environ.get("D2LLM_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/deelm_compare", help="Folder for both runs and the report.")
    parser.add_argument("--config", help="Base distill config (YAML/JSON); default: built from the options below.")
    parser.add_argument("--bidirectional-from-layer", type=int, default=28, help="K of the bidirectional arm.")
    parser.add_argument("--data", default=DEFAULT_DATA, help="The shared data folder (sts/, nli/, ir/).")
    parser.add_argument("--student", default=BUNDLED_SMOLLM2, help="Student LLM (path, hub id or bundled:smollm2).")
    parser.add_argument("--teacher", default=BUNDLED_SMOLLM2, help="Teacher LLM (ideally a fine-tuned yes/no one).")
    parser.add_argument("--steps", type=int, default=30, help="Training steps of each arm (the same for both).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--train-limit", type=int, default=240, help="Training rows per dataset (SNLI, WikiQA).")
    parser.add_argument("--eval-limit", type=int, default=200, help="STS-B dev pairs (seeded sample).")
    parser.add_argument("--ir-limit", type=int, help="WikiQA dev questions (default: all 126).")
    parser.add_argument("--bf16", action="store_true", help="Train in bfloat16 (GPU).")
    parser.add_argument(
        "--set", action="append", default=[], dest="overrides", help="Extra KEY=VALUE for both arms (repeatable)."
    )
    return parser.parse_args(argv)


def base_config(args: argparse.Namespace) -> DistillConfig:
    if args.config:
        return DistillConfig.load(args.config)
    data = os.path.abspath(args.data)
    return DistillConfig(
        student=StudentConfig(model=args.student, lora_r=args.lora_r),
        teacher=TeacherConfig(model=args.teacher),
        datasets=[
            DatasetConfig(
                name="snli",
                type="nli",
                path=os.path.join(data, "nli", "snli", "train.jsonl.gz"),
                limit=args.train_limit,
            ),
            DatasetConfig(
                name="wikiqa",
                type="beir",
                path=os.path.join(data, "ir", "wikiqa"),
                split="train",
                limit=args.train_limit,
            ),
        ],
        training=TrainingConfig(
            max_steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            bf16=args.bf16,
            save_steps=max(args.steps, 1),
            logging_steps=max(args.steps // 10, 1),
        ),
        evaluation=EvaluationConfig(
            sets=[
                EvalSetConfig(
                    name="stsb_dev",
                    type="sts",
                    path=os.path.join(data, "sts", "stsb", "dev.jsonl.gz"),
                    limit=args.eval_limit,
                ),
                EvalSetConfig(
                    name="wikiqa_dev",
                    type="answer_selection",
                    path=os.path.join(data, "ir", "wikiqa"),
                    split="dev",
                    limit=args.ir_limit,
                ),
            ]
        ),
    )


def run_arm(name: str, config_path: str, overrides: list[str]) -> tuple[dict, list[str], float]:
    command = [sys.executable, "-m", "d2llm_st.cli", "distill", config_path, "--no-resume"]
    for override in overrides:
        command += ["--set", override]
    print(f"[{name}] {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    output_dir = next(o.split("=", 1)[1] for o in overrides if o.startswith("training.output_dir="))
    with open(os.path.join(output_dir, "results.json"), encoding="utf-8") as f:
        return json.load(f), command, seconds


def report(arms: dict[str, tuple[dict, list[str], float]]) -> str:
    results = {name: arm[0] for name, arm in arms.items()}
    first = next(iter(results.values()))
    columns = [(eval_set, metric) for eval_set, metrics in first["scores"].items() for metric in metrics]
    header = "| student | steps | " + " | ".join(f"{s} {m}" for s, m in columns) + " | wall s |"
    lines = [header, "|" + "---|" * (len(columns) + 3)]
    for name, (result, _, seconds) in arms.items():
        values = " | ".join(f"{result['scores'][s][m]:.4f}" for s, m in columns)
        lines.append(f"| {name} | {result['steps']} | {values} | {seconds:.0f} |")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = machine_info(device)
    commands = "\n".join(" ".join(arm[1]) for arm in arms.values())
    return (
        "# DeeLM: distilled student with vs without bidirectional upper layers\n\n"
        + "\n".join(lines)
        + f"\n\nMachine: {json.dumps(info)}\n\nCommands (one per arm):\n\n```\n{commands}\n```\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    config_path = os.path.join(output, "base_config.yaml")
    base_config(args).save(config_path)
    shared = [f"teacher.cache={os.path.join(output, 'teacher_scores.sqlite')}", *args.overrides]
    k = args.bidirectional_from_layer
    arms = {
        "causal": run_arm(
            "causal",
            config_path,
            [*shared, "student.bidirectional_from_layer=null", f"training.output_dir={os.path.join(output, 'causal')}"],
        ),
        f"bidirectional from {k}": run_arm(
            f"bidirectional from {k}",
            config_path,
            [
                *shared,
                f"student.bidirectional_from_layer={k}",
                f"training.output_dir={os.path.join(output, f'bidir{k}')}",
            ],
        ),
    }
    text = report(arms)
    with open(os.path.join(output, "deelm_compare.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
