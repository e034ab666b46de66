"""Ablation of D2LLM's distillation terms, against the untrained student and an MNRL baseline.

Runs one ``d2llm distill`` config several times with one change each, evaluates every run on the
config's evaluation sets, and prints (and writes) a markdown table:

- ``full``: the config as is;
- ``no_ci`` / ``no_ri`` / ``no_fi`` / ``no_word_level`` / ``no_filtering``: one part switched off;
- ``mnrl_baseline``: the same backbone (same LoRA, prompts, data, steps) with mean pooling and
  ``MultipleNegativesRankingLoss``, scored by cosine similarity;
- ``untrained``: the fresh student (random PMA and IEM);
- ``bidirectional``: the full run with DeeLM's bidirectional layers from ``--bidirectional-from-layer`` on; with
  several layers (``--bidirectional-from-layer 28 15``) one variant per layer, ``bidirectional_28``,
  ``bidirectional_15`` (``--variants bidirectional`` selects them all).

``--seeds 42 43 44`` runs every variant once per seed (``training.seed=``; the data, its subsets and mined
negatives do not depend on it) in ``OUTPUT/<variant>/seed-<s>/``, and the table gives mean +- sample standard
deviation over the seeds (``ablation.json``: every metric of every eval set, each seed's value). Without
``--seeds`` each variant runs once, with the config's seed, in ``OUTPUT/<variant>/``.

All runs share one teacher score cache, so the teacher scores each training pair once. A run whose
``results.json`` exists is read back instead of re-run (``--force`` re-runs), so the script resumes; a run killed
while training resumes from its last checkpoint. ``--jobs N`` fills the cache first, then trains N runs at once in
subprocesses (a small LLM leaves a large GPU mostly idle, so parallel runs finish several times sooner; each
run's log goes to ``OUTPUT/<variant>[-seed-<s>].log``).

Example:
  nice -n 10 python benchmarks/distill_ablation.py configs/smollm2_cpu.yaml --output-dir runs/ablation \\
      --seeds 42 43 44 --bidirectional-from-layer 28 15
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
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


BIDIRECTIONAL = re.compile(r"^bidirectional_(\d+)$")


def variant_names(requested: list[str], layers: list[int] | None) -> list[str]:
    """The variants to run: ``bidirectional`` is one variant per layer (``bidirectional_<k>``) when several layers
    are given, and ``bidirectional`` itself for one."""
    names = []
    for name in requested:
        if name == "bidirectional" and layers and len(layers) > 1:
            names += [f"bidirectional_{layer}" for layer in layers]
        else:
            names.append(name)
    return list(dict.fromkeys(names))


def variant_layer(name: str, layers: list[int] | None) -> int | None:
    """The DeeLM turning point of a bidirectional variant (``None`` for the others)."""
    match = BIDIRECTIONAL.match(name)
    if match:
        return int(match.group(1))
    return layers[0] if name == "bidirectional" and layers else None


def check_variant(name: str) -> str:
    """An argparse type: a name of :data:`VARIANTS`, or ``bidirectional_<layer>``."""
    if name not in VARIANTS and not BIDIRECTIONAL.match(name):
        raise argparse.ArgumentTypeError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return name


def run_dir(output_dir: str, name: str, seed: int | None) -> str:
    """``OUTPUT/<variant>`` (one run) or ``OUTPUT/<variant>/seed-<s>`` (one run per seed)."""
    folder = os.path.join(output_dir, name)
    return folder if seed is None else os.path.join(folder, f"seed-{seed}")


def run_label(name: str, seed: int | None) -> str:
    return name if seed is None else f"{name}-seed-{seed}"


def variant_config(config, name: str, folder: str, cache: str, layer: int | None, seed: int | None = None):
    base = "bidirectional" if BIDIRECTIONAL.match(name) else name
    overrides = VARIANTS[base] + [f"training.output_dir={folder}", f"teacher.cache={cache}"]
    if base == "bidirectional":
        overrides.append(f"student.bidirectional_from_layer={layer}")
    if seed is not None:
        overrides.append(f"training.seed={seed}")
    return config.with_overrides(overrides)


def results_path(folder: str) -> str:
    return os.path.join(folder, "results.json")


def run_variant(
    config, name: str, output_dir: str, cache: str, force: bool, layers: list[int] | None, seed: int | None = None
) -> dict:
    from d2llm_st.training import distill

    folder = run_dir(output_dir, name, seed)
    path = results_path(folder)
    label = run_label(name, seed)
    if os.path.exists(path) and not force:
        logging.info(f"{label}: reusing {path}")
        with open(path) as f:
            return json.load(f)
    variant = variant_config(config, name, folder, cache, variant_layer(name, layers), seed)
    start = time.time()
    result = distill(variant, overwrite=force)
    seconds = time.time() - start
    with open(path) as f:
        saved = json.load(f)
    saved["wall_seconds"] = seconds
    with open(path, "w") as f:
        json.dump(saved, f, indent=2)
    logging.info(f"{label}: {result.scores} in {seconds:.0f} s")
    return saved


def fill_teacher_cache(config, cache: str) -> None:
    """Score every training set once, so that parallel runs only read the shared cache."""
    from d2llm_st.training import build_training_datasets, load_teacher_from_config

    config = config.with_overrides([f"teacher.cache={cache}"])
    build_training_datasets(config, load_teacher_from_config(config))


def run_in_parallel(argv: list[str], runs: list[tuple[str, int | None]], output_dir: str, jobs: int) -> None:
    """Run each (variant, seed) as ``this script ... --variants NAME [--seeds S]`` (the other arguments kept),
    ``jobs`` at once."""
    base = argv
    for option in ("--jobs", "--variants", "--seeds"):
        base = without_option(base, option)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # run from a checkout: import its d2llm_st
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    pending, running, failed = list(runs), {}, []
    while pending or running:
        while pending and len(running) < jobs:
            name, seed = pending.pop(0)
            label = run_label(name, seed)
            log = open(os.path.join(output_dir, f"{label}.log"), "w")
            command = [sys.executable, os.path.abspath(__file__), *base, "--variants", name]
            if seed is not None:
                command += ["--seeds", str(seed)]
            running[label] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            logging.info(f"{label}: started, log in {log.name}")
            time.sleep(5)  # stagger the starts: loading a model is CPU-heavy
        for label, (process, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[label]
            logging.info(f"{label}: finished with exit code {process.returncode}")
            if process.returncode:
                failed.append(label)
        time.sleep(2)
    if failed:
        raise SystemExit(f"Runs {failed} failed (logs in {output_dir}); run the same command again to retry them.")


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


def headline_metrics(config, results: dict[str, dict[int | None, dict]]) -> dict[str, str]:
    """Each eval set's headline figure: its evaluator's primary metric (saved with the runs)."""
    from d2llm_st.evaluation import headline_metric

    metrics = {s.name: headline_metric(s.type) for s in config.evaluation.sets}
    for runs in results.values():
        for saved in runs.values():
            metrics.update(saved.get("primary_metrics") or {})
    return metrics


def summarize(values: dict) -> dict:
    """Mean, sample standard deviation (0 for one run) and the values by seed."""
    numbers = list(values.values())
    return {
        "mean": statistics.fmean(numbers),
        "std": statistics.stdev(numbers) if len(numbers) > 1 else 0.0,
        "values": values,
    }


def summary(config, results: dict[str, dict[int | None, dict]]) -> dict[str, dict]:
    """Per variant: every metric of every eval set over the runs (mean, std, value by seed), steps, wall time."""
    out = {}
    for name, runs in results.items():
        first = next(iter(runs.values()))
        metrics = {
            eval_set.name: {
                metric: summarize({str(seed): saved["scores"][eval_set.name][metric] for seed, saved in runs.items()})
                for metric in first["scores"][eval_set.name]
            }
            for eval_set in config.evaluation.sets
        }
        out[name] = {
            "runs": {str(seed): saved.get("model_dir") for seed, saved in runs.items()},
            "metrics": metrics,
            "steps": {str(seed): saved["steps"] for seed, saved in runs.items()},
            "wall_seconds": {str(seed): saved.get("wall_seconds") for seed, saved in runs.items()},
        }
    return out


def table(config, results: dict[str, dict[int | None, dict]], seeded: bool = False) -> str:
    """One row per variant: each eval set's headline figure, its evaluator's primary metric; over several seeds,
    mean +- sample standard deviation."""
    sets = config.evaluation.sets
    metrics = headline_metrics(config, results)
    stats = summary(config, results)
    header = ["variant", *(["seeds"] if seeded else []), *(f"{s.name} {metrics[s.name]}" for s in sets)]
    header += ["steps", "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in results.items():
        cells = []
        for s in sets:
            figure = stats[name]["metrics"][s.name][metrics[s.name]]
            cells.append(f"{figure['mean']:.4f}" + (f" ± {figure['std']:.4f}" if len(runs) > 1 else ""))
        walls = [saved["wall_seconds"] for saved in runs.values() if "wall_seconds" in saved]
        wall = f"{statistics.fmean(walls):.0f}" if walls else "?"
        steps = "/".join(str(step) for step in dict.fromkeys(saved["steps"] for saved in runs.values()))
        seeds = [", ".join(str(seed) for seed in runs)] if seeded else []
        lines.append("| " + " | ".join([name, *seeds, *cells, steps, wall]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="A d2llm distill YAML config (the 'full' run).")
    parser.add_argument("--output-dir", default="runs/ablation", help="One sub-folder per variant goes here.")
    parser.add_argument(
        "--variants",
        nargs="+",
        type=check_variant,
        default=list(VARIANTS),
        help=f"Which variants ({', '.join(VARIANTS)}; bidirectional_<k> for one layer). Default: all.",
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, help="Run every variant once per training seed (mean +- std in the table)."
    )
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="Override for every variant.")
    parser.add_argument("--force", action="store_true", help="Re-run variants that already have results.")
    parser.add_argument("--jobs", type=int, default=1, help="Runs trained at once (subprocesses).")
    parser.add_argument(
        "--bidirectional-from-layer",
        nargs="+",
        type=int,
        help="DeeLM turning point(s) of the 'bidirectional' variant; several give one variant each "
        "(bidirectional_<k>).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from d2llm_st.training import DistillConfig

    config = DistillConfig.load(args.config).with_overrides(args.overrides)
    os.makedirs(args.output_dir, exist_ok=True)
    cache = config.teacher.cache or os.path.join(args.output_dir, "teacher_scores.sqlite")
    layers = args.bidirectional_from_layer
    names = variant_names(args.variants, layers)
    if "bidirectional" in names and not layers:
        parser.error("the 'bidirectional' variant needs --bidirectional-from-layer (the `d2llm turning-point` layer).")
    seeds: list[int | None] = list(dict.fromkeys(args.seeds)) if args.seeds else [None]
    runs = [(name, seed) for name in names for seed in seeds]
    if args.jobs > 1:
        todo = [
            (name, seed)
            for name, seed in runs
            if args.force or not os.path.exists(results_path(run_dir(args.output_dir, name, seed)))
        ]
        if any(name != "untrained" for name, _ in todo):
            fill_teacher_cache(config, cache)
        run_in_parallel(sys.argv[1:] if argv is None else argv, todo, args.output_dir, args.jobs)
        args.force = False  # the subprocesses wrote every results.json: read them back
    results: dict[str, dict[int | None, dict]] = {name: {} for name in names}
    for name, seed in runs:
        results[name][seed] = run_variant(config, name, args.output_dir, cache, args.force, layers, seed)
    markdown = table(config, results, seeded=args.seeds is not None)
    command = " ".join(["python", "benchmarks/distill_ablation.py", *(sys.argv[1:] if argv is None else argv)])
    note = ""
    if args.seeds:
        note = "\nmean ± sample standard deviation over the seeds; every seed's value in ablation.json.\n"
    report = f"{markdown}\n{note}\nCommand: `{command}`\n"
    with open(os.path.join(args.output_dir, "ablation.md"), "w") as f:
        f.write(report)
    with open(os.path.join(args.output_dir, "ablation.json"), "w") as f:
        json.dump(
            {
                "command": command,
                "seeds": args.seeds,
                "headline": headline_metrics(config, results),
                "variants": summary(config, results),
            },
            f,
            indent=2,
        )
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
