"""Ablation of D2LLM's distillation terms, against the untrained student and an MNRL baseline.

Runs one ``d2llm distill`` config several times with one change each, evaluates every run on the
config's evaluation sets, and prints (and writes) a markdown table:

- ``full``: the config as is;
- ``no_ci`` / ``no_ri`` / ``no_fi`` / ``no_word_level`` / ``no_filtering``: one part switched off;
- ``mnrl_baseline``: the same backbone (same LoRA, prompts, data, steps) with mean pooling and
  ``MultipleNegativesRankingLoss``, scored by cosine similarity;
- ``untrained``: the fresh student (random PMA and IEM);
- ``bidirectional``: the full run with DeeLM's bidirectional layers from ``--bidirectional-from-layer`` on.

All runs share one teacher score cache, so the teacher scores each training pair once. A run whose
``results.json`` exists is read back instead of re-run (``--force`` re-runs), so the script resumes.
``--jobs N`` fills the cache first, then trains N variants at once in subprocesses (a small LLM leaves a
large GPU mostly idle, so parallel runs finish several times sooner; each run's log goes to its folder).

Example:
  nice -n 10 python benchmarks/distill_ablation.py configs/smollm2_cpu_small.yaml --output-dir runs/ablation_cpu
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "mnrl_baseline": ["mode=baseline"],
    "untrained": ["mode=untrained"],
    "no_ci": ["loss.alpha=0"],
    "no_ri": ["loss.beta=0", "loss.gamma=0"],
    "no_fi": ["loss.eta=0"],
    "no_word_level": ["loss.word_level_weight=0"],
    "no_filtering": ["false_negatives.enabled=false"],
    "bidirectional": [],  # + student.bidirectional_from_layer from --bidirectional-from-layer
}


def variant_config(config, name: str, output_dir: str, cache: str, bidirectional_from_layer: int | None):
    overrides = VARIANTS[name] + [f"training.output_dir={os.path.join(output_dir, name)}", f"teacher.cache={cache}"]
    if name == "bidirectional":
        overrides.append(f"student.bidirectional_from_layer={bidirectional_from_layer}")
    return config.with_overrides(overrides)


def results_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, name, "results.json")


def run_variant(config, name: str, output_dir: str, cache: str, force: bool, layer: int | None) -> dict:
    from d2llm_st.training import distill

    path = results_path(output_dir, name)
    if os.path.exists(path) and not force:
        logging.info(f"{name}: reusing {path}")
        with open(path) as f:
            return json.load(f)
    variant = variant_config(config, name, output_dir, cache, layer)
    start = time.time()
    result = distill(variant, overwrite=force)
    seconds = time.time() - start
    with open(path) as f:
        saved = json.load(f)
    saved["wall_seconds"] = seconds
    with open(path, "w") as f:
        json.dump(saved, f, indent=2)
    logging.info(f"{name}: {result.scores} in {seconds:.0f} s")
    return saved


def fill_teacher_cache(config, cache: str) -> None:
    """Score every training set once, so that parallel runs only read the shared cache."""
    from d2llm_st.training import build_training_datasets, load_teacher_from_config

    config = config.with_overrides([f"teacher.cache={cache}"])
    build_training_datasets(config, load_teacher_from_config(config))


def run_in_parallel(argv: list[str], names: list[str], output_dir: str, jobs: int) -> None:
    """Run each variant as ``this script ... --variants NAME`` (the other arguments kept), ``jobs`` at once."""
    base = without_option(without_option(argv, "--jobs"), "--variants")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # run from a checkout: import its d2llm_st
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    pending, running, failed = list(names), {}, []
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            log = open(os.path.join(output_dir, f"{name}.log"), "w")
            command = [sys.executable, os.path.abspath(__file__), *base, "--variants", name]
            running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            logging.info(f"{name}: started, log in {log.name}")
            time.sleep(5)  # stagger the starts: loading a model is CPU-heavy
        for name, (process, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[name]
            logging.info(f"{name}: finished with exit code {process.returncode}")
            if process.returncode:
                failed.append(name)
        time.sleep(2)
    if failed:
        raise SystemExit(f"Variants {failed} failed (logs in {output_dir}); run the same command again to retry them.")


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option`` and the values that follow it."""
    out, skipping = [], False
    for arg in argv:
        if arg == option:
            skipping = True
        elif skipping and arg.startswith("--"):
            skipping = False
        if not skipping:
            out.append(arg)
    return out


def table(config, results: dict[str, dict]) -> str:
    """One row per variant: each eval set's headline figure, its evaluator's primary metric (saved with the run)."""
    from d2llm_st.evaluation import headline_metric

    sets = config.evaluation.sets
    metrics = {s.name: headline_metric(s.type) for s in sets}
    for saved in results.values():
        metrics.update(saved.get("primary_metrics") or {})
    header = ["variant", *(f"{s.name} {metrics[s.name]}" for s in sets), "steps", "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, saved in results.items():
        cells = [f"{saved['scores'][s.name][metrics[s.name]]:.4f}" for s in sets]
        wall = f"{saved['wall_seconds']:.0f}" if "wall_seconds" in saved else "?"
        lines.append("| " + " | ".join([name, *cells, str(saved["steps"]), wall]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="A d2llm distill YAML config (the 'full' run).")
    parser.add_argument("--output-dir", default="runs/ablation", help="One sub-folder per variant goes here.")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="Override for every variant.")
    parser.add_argument("--force", action="store_true", help="Re-run variants that already have results.")
    parser.add_argument("--jobs", type=int, default=1, help="Variants trained at once (subprocesses).")
    parser.add_argument(
        "--bidirectional-from-layer", type=int, help="DeeLM turning point for the 'bidirectional' variant."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from d2llm_st.training import DistillConfig

    config = DistillConfig.load(args.config).with_overrides(args.overrides)
    os.makedirs(args.output_dir, exist_ok=True)
    cache = config.teacher.cache or os.path.join(args.output_dir, "teacher_scores.sqlite")
    layer = args.bidirectional_from_layer
    if "bidirectional" in args.variants and layer is None:
        parser.error("the 'bidirectional' variant needs --bidirectional-from-layer (the `d2llm turning-point` layer).")
    if args.jobs > 1:
        todo = [name for name in args.variants if args.force or not os.path.exists(results_path(args.output_dir, name))]
        if any(name != "untrained" for name in todo):
            fill_teacher_cache(config, cache)
        run_in_parallel(sys.argv[1:] if argv is None else argv, todo, args.output_dir, args.jobs)
        args.force = False  # the subprocesses wrote every results.json: read them back
    results = {name: run_variant(config, name, args.output_dir, cache, args.force, layer) for name in args.variants}
    markdown = table(config, results)
    command = " ".join(["python", "benchmarks/distill_ablation.py", *(sys.argv[1:] if argv is None else argv)])
    report = f"{markdown}\n\nCommand: `{command}`\n"
    with open(os.path.join(args.output_dir, "ablation.md"), "w") as f:
        f.write(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
