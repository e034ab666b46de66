"""Distill an LLM teacher into a D2LLM student, as configured in a YAML (or JSON) file.

Steps: teacher scores (and features) for the training rows, cached on disk -> student training with the
D2LLM losses (resumed from the newest checkpoint in the output folder after an interruption) ->
evaluation -> the model, its card, the config and results.json in training.output_dir.

An output folder that already holds a run is resumed when the config is the same (every key but
training.output_dir and teacher.cache), or reported as already finished (nothing is trained or rewritten);
a different config is refused with the differing keys. --overwrite deletes the previous run (not the teacher
score cache) and starts fresh; --no-resume refuses a folder that holds a run instead of continuing it.

Under torchrun or accelerate launch (one process per GPU, any number of nodes): the teacher scores are shared out
before training (each pair scored once, into the one cache), every process trains on its share of each step's
batches (DDP; loss.gather_across_devices=true scores the in-batch candidates of all of them), and rank 0 writes
the checkpoints, evaluates and saves. training.output_dir must be a folder every process sees; a run resumes with
the number of processes that started it. See docs/scaling.md.

Examples:
  d2llm distill configs/smollm2_cpu_small.yaml
  d2llm distill configs/smollm2_cpu_small.yaml --set loss.alpha=0 --set training.output_dir=runs/no_ci
  d2llm distill configs/smollm2_cpu_small.yaml --mode baseline --set training.output_dir=runs/mnrl
  torchrun --nproc_per_node 8 -m d2llm_st.cli distill configs/smollm2_gpu.yaml --set loss.gather_across_devices=true
"""

from __future__ import annotations

import argparse

from d2llm_st.training.config import MODES  # light: the config module imports no torch

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
    fresh = parser.add_mutually_exclusive_group()
    fresh.add_argument(
        "--overwrite",
        action="store_true",
        help="Delete the output folder's previous run (checkpoints, model, results, config; the teacher score "
        "cache stays) and train from scratch.",
    )
    fresh.add_argument(
        "--no-resume",
        action="store_true",
        help="Never continue a previous run: refuse if the output folder already holds one.",
    )


def run(args: argparse.Namespace) -> int:
    from d2llm_st.distributed import launched
    from d2llm_st.training.config import DistillConfig
    from d2llm_st.training.runs import check_output_dir

    overrides = list(args.overrides) + ([f"mode={args.mode}"] if args.mode else [])
    config = DistillConfig.load(args.config).with_overrides(overrides)
    # Refuse a mismatched output folder, or missing inputs, before loading anything (under a launcher, rank 0 judges
    # the output folder in distill, once the processes have met and checked that they share it).
    if args.overwrite or launched() or check_output_dir(config, resume=not args.no_resume) is None:
        config.check_inputs()

    from d2llm_st import distributed

    dist = distributed.setup()
    # Before the heavy imports and any model: every process must see the output folder (distill checks it too).
    dist.check_shared_folder(config.training.output_dir, "The output folder (training.output_dir)")

    from d2llm_st.training import distill

    result = distill(config, resume=not args.no_resume, overwrite=args.overwrite, dist=dist)
    distributed.teardown()
    if not dist.is_main:
        return 0
    finished = "   (already finished: read back, nothing trained; --overwrite trains it again)"
    print(
        f"mode: {config.mode}   steps: {result.steps}   output: {config.training.output_dir}"
        + (finished if result.already_finished else "")
    )
    print("| set | metric | value |\n|---|---|---|")
    for eval_set in config.evaluation.sets:
        metric = result.primary_metrics[eval_set.name]  # the evaluator's primary_metric
        print(f"| {eval_set.name} | {metric} | {result.scores[eval_set.name][metric]:.4f} |")
    return 0
