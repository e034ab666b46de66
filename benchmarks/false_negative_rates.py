"""How many hard negatives the dynamic false-negative filter would flag, per dataset and quantile.

The filter flags a negative whose teacher score is above the ``quantile`` of the positives' scores; this
script builds a distill config's training sets (teacher scores from its cache) and prints, per dataset,
the share of negatives above each quantile, to choose ``false_negatives.options.quantile``.

Example:
  python benchmarks/false_negative_rates.py configs/smollm2_cpu_small.yaml \\
      --set teacher.cache=runs/ablation-cpu2/teacher_scores.sqlite --quantiles 0.5 0.75
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from common import markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="A d2llm distill YAML config.")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="Config override.")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.5, 0.75])
    args = parser.parse_args(argv)

    from d2llm_st.training import DistillConfig, build_training_dataset, load_teacher_from_config

    config = DistillConfig.load(args.config).with_overrides(args.overrides)
    teacher = load_teacher_from_config(config)
    rows = []
    for dataset in config.datasets:
        scores = np.array(build_training_dataset(dataset, teacher, False, config.teacher.batch_size)["label"])
        positives, negatives = scores[:, 0], scores[:, 1:].ravel()
        flagged = [f"{np.mean(negatives > np.quantile(positives, q)):.1%}" for q in args.quantiles]
        rows.append([dataset.name, len(scores), f"{positives.mean():.3f}", f"{negatives.mean():.3f}", *flagged])
    headers = ["dataset", "rows", "mean P(yes) positive", "mean P(yes) negative"]
    print(markdown_table(headers + [f"flagged at q={q}" for q in args.quantiles], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
