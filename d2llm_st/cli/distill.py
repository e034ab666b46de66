"""Distill an LLM teacher into a D2LLM student, as configured in a YAML (or JSON) file.

Steps: teacher scores (and features) for the training rows, cached on disk -> student training with the
D2LLM losses (resumed from the newest checkpoint in the output folder after an interruption) ->
evaluation -> the model, its card, the config and results.json in training.output_dir.

Examples:
  d2llm distill configs/smollm2_cpu_small.yaml
  d2llm distill configs/smollm2_cpu_small.yaml --set loss.alpha=0 --set training.output_dir=runs/no_ci
  d2llm distill configs/smollm2_cpu_small.yaml --mode baseline --set training.output_dir=runs/mnrl
"""

from __future__ import annotations

import argparse

from d2llm_st.training.config import MODES

COMMAND = "distill"
HELP = "Distill a teacher into a D2LLM student from a YAML config (train, evaluate, save with a model card)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' line breaks
    parser.add_argument("config", help="Path of the run's YAML or JSON config (see docs/training.md).")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="Override a config value, e.g. loss.alpha=0 or datasets.snli.limit=100 (repeatable).",
    )
    parser.add_argument("--mode", choices=MODES, help="Override the config's mode (distill, baseline, untrained).")
    parser.add_argument(
        "--no-resume", action="store_true", help="Start fresh even if the output folder has checkpoints."
    )


def run(args: argparse.Namespace) -> int:
    from d2llm_st.training import DistillConfig, distill
    from d2llm_st.training.evaluation import HEADLINE_METRICS

    overrides = list(args.overrides) + ([f"mode={args.mode}"] if args.mode else [])
    config = DistillConfig.load(args.config).with_overrides(overrides)
    result = distill(config, resume=not args.no_resume)
    print(f"mode: {config.mode}   steps: {result.steps}   output: {config.training.output_dir}")
    print("| set | metric | value |\n|---|---|---|")
    for eval_set in config.evaluation.sets:
        metric = HEADLINE_METRICS[eval_set.type]
        print(f"| {eval_set.name} | {metric} | {result.scores[eval_set.name][metric]:.4f} |")
    return 0
