"""Quality table: teacher, D2LLM student and bi-encoder baselines on the same test splits, one command.

Every cell is one ``d2llm eval`` run; its exact command is listed under the table, and its JSON is kept in
``--output-dir`` (a rerun skips cells whose JSON already holds the same command, so a long run resumes).

Usage::

    python benchmarks/quality_table.py --data ../shared/data --output-dir runs/quality \\
        --teacher runs/teacher --student runs/student --bi-encoder MINILM_DIR --llm-bi-encoder runs/llm-mnrl

Models left out are skipped. ``--limit`` / ``--limit-queries`` / ``--max-corpus`` make a quick check (the
table then says so); leave them out for the real figures. A cross-encoder or teacher cannot search a corpus:
on IR it reranks another model's cosine candidates (``--ir-first-stage``; default: the BERT bi-encoder's,
which the student reranks too, so both rerank the same candidates).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shlex
import sys

import torch
from common import markdown_table

logger = logging.getLogger("quality_table")

# (column label, d2llm eval --task, data folder under --data, metrics shown)
TASKS = {
    "stsb": ("STS-B", "sts", "sts/stsb", ["spearman"]),
    "sick-r": ("SICK-R", "sts", "sts/sick", ["spearman"]),
    "snli": ("SNLI", "nli", "nli/snli", ["auc", "average_precision"]),
    "scifact": ("SciFact", "ir", "ir/scifact", ["ndcg@10", "mrr@10", "recall@100"]),
    "wikiqa": ("WikiQA", "answer-selection", "ir/wikiqa", ["map", "mrr"]),
}
MODELS = {
    "teacher": "LLM teacher (yes/no P(yes))",
    "student": "D2LLM student (IEM)",
    "bi_encoder": "BERT bi-encoder (cosine)",
    "llm_bi_encoder": "LLM mean-pool bi-encoder (cosine)",
}
SHORT = {
    "spearman": "Spearman",
    "average_precision": "AP",
    "auc": "AUC",
    "ndcg@10": "nDCG@10",
    "mrr@10": "MRR@10",
    "recall@100": "R@100",
    "map": "MAP",
    "mrr": "MRR",
}


def eval_argv(args: argparse.Namespace, role: str, task_key: str) -> list[str]:
    """The ``d2llm eval`` arguments of one cell."""
    _, task, folder, _ = TASKS[task_key]
    path = getattr(args, role)
    argv = ["eval", "--model", path, "--task", task, "--data", os.path.join(args.data, folder), "--split", "test"]
    argv += ["--batch-size", str(args.batch_size)]
    if args.device:
        argv += ["--device", args.device]
    if task in ("sts", "nli") and args.limit:
        argv += ["--limit", str(args.limit)]
    if task in ("ir", "answer-selection") and args.limit_queries:
        argv += ["--limit", str(args.limit_queries)]
    if task == "ir":
        argv += ["--candidate-k", str(args.candidate_k)]
        if args.max_corpus:
            argv += ["--max-corpus", str(args.max_corpus)]
        if role in ("teacher", "student"):  # rerankers: the same candidates for both
            first_role = "bi_encoder" if args.ir_first_stage == "bi-encoder" or role == "teacher" else None
            if args.ir_first_stage == "own" and role == "teacher":
                first_role = "student"
            if first_role is not None:
                if getattr(args, first_role) is None:
                    raise SystemExit(
                        f"IR: the {role} reranks the {first_role}'s candidates; pass --{first_role.replace('_', '-')}."
                    )
                argv += ["--first-stage", getattr(args, first_role)]
    return argv


def run_cell(argv: list[str], output_dir: str, name: str) -> dict:
    """One cell: ``d2llm eval`` (the console script's entry point, in this process) writing its JSON result."""
    from d2llm_st.cli import main as d2llm

    path = os.path.join(output_dir, f"{name}.json")
    command = "d2llm " + shlex.join(argv)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("command") == command:
            logger.info(f"{name}: kept from {path}")
            return saved
    logger.info(f"{name}: {command}")
    staging = f"{path}.tmp"
    if d2llm([*argv, "--output", staging]) != 0:
        raise SystemExit(f"{name}: `{command}` failed (its error is above).")
    with open(staging, encoding="utf-8") as f:
        result = json.load(f)
    os.remove(staging)
    result["command"] = command
    result["date"] = datetime.date.today().isoformat()
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="The shared data folder (sts/, nli/, ir/).")
    parser.add_argument("--output-dir", required=True)
    for role, label in MODELS.items():
        parser.add_argument(f"--{role.replace('_', '-')}", dest=role, help=f"Folder of the {label}.")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--limit", type=int, help="Quick check: N pairs per STS / NLI set.")
    parser.add_argument("--limit-queries", type=int, help="Quick check: N queries per IR / answer-selection set.")
    parser.add_argument("--max-corpus", type=int, help="Quick check: search only this many SciFact passages.")
    parser.add_argument("--candidate-k", type=int, default=100)
    parser.add_argument(
        "--ir-first-stage",
        default="bi-encoder",
        choices=["bi-encoder", "own"],
        help="IR candidates: 'bi-encoder' (default): teacher and student both rerank the BERT bi-encoder's "
        "top --candidate-k; 'own': the student searches with its own embeddings and the teacher reranks those. "
        "Bi-encoders always search with their own embeddings.",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.makedirs(args.output_dir, exist_ok=True)

    roles = [role for role in MODELS if getattr(args, role)]
    if not roles:
        parser.error("pass at least one model (--teacher, --student, --bi-encoder, --llm-bi-encoder).")
    results: dict[tuple[str, str], dict] = {}
    for role in roles:
        for task_key in args.tasks:
            cell = f"{role}-{task_key}"
            results[role, task_key] = run_cell(eval_argv(args, role, task_key), args.output_dir, cell)

    headers = ["model"] + [
        f"{TASKS[key][0]} {SHORT.get(metric, metric)}" for key in args.tasks for metric in TASKS[key][3]
    ]
    rows = []
    for role in roles:
        cells = [100 * results[role, key]["metrics"][metric] for key in args.tasks for metric in TASKS[key][3]]
        name = os.path.basename(os.path.normpath(getattr(args, role)))
        rows.append([f"{MODELS[role]}: `{name}`", *[f"{value:.1f}" for value in cells]])
    quick = [
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("limit", "limit_queries", "max_corpus")
        if getattr(args, name)
    ]
    machine = f"{os.cpu_count()}-core CPU machine"
    if (args.device or "").startswith("cuda") or (args.device is None and torch.cuda.is_available()):
        machine += f" with {torch.cuda.get_device_name()}"
    lines = [
        f"Test splits of `{args.data}`, all figures x100; {machine}, {datetime.date.today().isoformat()}.",
        "",
        "Made by: `" + shlex.join([os.path.basename(sys.executable), *sys.argv]) + "`",
        "",
    ]
    if quick:
        lines += [f"**Quick check on subsets ({', '.join(quick)}): not comparable to full-set figures.**", ""]
    lines += [markdown_table(headers, rows), "", "Each cell's command:", ""]
    for (role, key), result in results.items():
        settings = result["settings"]
        extra = f", first stage `{settings['first_stage']}`" if settings["task"] == "ir" else ""
        lines.append(f"- {MODELS[role]}, {TASKS[key][0]} ({settings['seconds']} s{extra}): `{result['command']}`")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.output_dir, "quality_table.md"), "w", encoding="utf-8") as f:
        f.write(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
