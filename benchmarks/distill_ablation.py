"""Ablation of D2LLM's distillation terms, against the untrained student and an MNRL baseline.

Runs one ``d2llm distill`` config several times with one change each, evaluates every run on the
config's evaluation sets, and prints (and writes) a markdown table:

- ``full``: the config as is;
- ``no_ci`` / ``no_ri`` / ``no_fi`` / ``no_word_level`` / ``no_filtering``: one part switched off;
- ``mnrl_baseline``: the same backbone (same LoRA, prompts, data, steps) with mean pooling and
  ``MultipleNegativesRankingLoss``, scored by cosine similarity;
- ``untrained``: the fresh student (random PMA and IEM).

All runs share one teacher score cache, so the teacher scores each training pair once. A run whose
``results.json`` exists is read back instead of re-run (``--force`` re-runs), so the script resumes.

Example:
  nice -n 10 python benchmarks/distill_ablation.py configs/smollm2_cpu_small.yaml --output-dir runs/ablation_cpu
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
}


def run_variant(config, name: str, output_dir: str, cache: str, force: bool) -> dict:
    from d2llm_st.training import distill

    run_dir = os.path.join(output_dir, name)
    results_path = os.path.join(run_dir, "results.json")
    if os.path.exists(results_path) and not force:
        logging.info(f"{name}: reusing {results_path}")
        with open(results_path) as f:
            return json.load(f)
    overrides = VARIANTS[name] + [f"training.output_dir={run_dir}", f"teacher.cache={cache}"]
    variant = config.with_overrides(overrides)
    start = time.time()
    result = distill(variant, resume=not force)
    seconds = time.time() - start
    with open(results_path) as f:
        saved = json.load(f)
    saved["wall_seconds"] = seconds
    with open(results_path, "w") as f:
        json.dump(saved, f, indent=2)
    logging.info(f"{name}: {result.scores} in {seconds:.0f} s")
    return saved


def table(config, results: dict[str, dict]) -> str:
    from d2llm_st.training.evaluation import HEADLINE_METRICS

    sets = config.evaluation.sets
    header = ["variant", *(f"{s.name} {HEADLINE_METRICS[s.type]}" for s in sets), "steps", "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, saved in results.items():
        cells = [f"{saved['scores'][s.name][HEADLINE_METRICS[s.type]]:.4f}" for s in sets]
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from d2llm_st.training import DistillConfig

    config = DistillConfig.load(args.config).with_overrides(args.overrides)
    os.makedirs(args.output_dir, exist_ok=True)
    cache = config.teacher.cache or os.path.join(args.output_dir, "teacher_scores.sqlite")
    results = {name: run_variant(config, name, args.output_dir, cache, args.force) for name in args.variants}
    markdown = table(config, results)
    command = " ".join(["python", "benchmarks/distill_ablation.py", *(sys.argv[1:] if argv is None else argv)])
    report = f"{markdown}\n\nCommand: `{command}`\n"
    with open(os.path.join(args.output_dir, "ablation.md"), "w") as f:
        f.write(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
