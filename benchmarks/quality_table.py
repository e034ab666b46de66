"""Quality table: teacher, D2LLM student, MNRL baseline, MiniLM, BM25 and the untrained student on the test splits.

Every model cell is one ``d2llm eval`` run; its exact command is listed under the table, and its JSON is kept in
``--output-dir`` (a rerun reuses cells whose JSON holds the same command, so a long run resumes). The columns:
STS-B and SICK-R test (Spearman); SNLI test (AUC of entailment vs contradiction, and the accuracy at the threshold
that maximises the same model's accuracy on SNLI dev: a dev cell runs first, then the test cell with
``--threshold``); WikiQA test answer selection (MAP, MRR, NDCG@10 over each question's candidates); SciFact test
(NDCG@10 over its 5,183 abstracts).

Usage (the issue-18 table; MINILM is the all-MiniLM-L6-v2 folder)::

    python benchmarks/quality_table.py --data ../shared/data --output-dir runs/quality \\
        --teacher runs/teacher --student runs/s42/model runs/s43/model runs/s44/model \\
        --mnrl runs/m42/model runs/m43/model runs/m44/model --bi-encoder MINILM --bm25 \\
        --untrained configs/smollm2_cpu.yaml --scifact-candidate-k 20

``--student`` and ``--mnrl`` take one folder per training seed: the table gives mean +- std over them (sample
standard deviation), ``quality_table.json`` every run's value. ``--untrained`` takes a saved D2LLM folder or a
``d2llm distill`` config, whose fresh student (``D2LLM.from_llm(**student)`` after ``training.seed``) is saved
once to ``OUTPUT/untrained-student``. BM25 (bm25s, the tokenizer ``d2llm mine`` uses: English stemmer and
stopwords) applies to WikiQA (each question's candidates, statistics from the whole WikiQA corpus) and SciFact
(a search of the corpus); it runs inside this script, through the same evaluator and metric functions.

SciFact: a cross-encoder or teacher cannot search a corpus, so the teacher reranks the top
``--scifact-candidate-k`` of a first stage's cosine search (``--ir-first-stage``; default: the bi-encoder's), and
so do the students (D2LLM with its IEM), so teacher and students rerank the same candidates. Bi-encoders (MiniLM,
MNRL) search the corpus with their own embeddings. ``--limit`` / ``--limit-queries`` / ``--max-corpus`` make a quick
check (the table then says so); leave them out for the real figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import shlex
import statistics
import sys
import time
from typing import NamedTuple

import numpy as np
import torch
from common import markdown_table

from d2llm_st.evaluation import Scorer, build_evaluator, headline_metric, ranking

logger = logging.getLogger("quality_table")


class Column(NamedTuple):
    label: str
    task: str  # d2llm eval --task
    folder: str  # under --data
    metrics: tuple[str, ...]


TASKS = {
    "stsb": Column("STS-B", "sts", "sts/stsb", ("spearman",)),
    "sick-r": Column("SICK-R", "sts", "sts/sick", ("spearman",)),
    "snli": Column("SNLI", "nli", "nli/snli", ("auc", "accuracy_at_threshold")),
    "wikiqa": Column("WikiQA", "answer-selection", "ir/wikiqa", ("map", "mrr", "ndcg@10")),
    "scifact": Column("SciFact", "ir", "ir/scifact", ("ndcg@10",)),
}
MODELS = {
    "teacher": "Teacher (LLM yes/no, P(yes))",
    "student": "D2LLM student (IEM)",
    "mnrl": "MNRL baseline: same LLM, LoRA, data, steps (mean pooling, cosine)",
    "bi_encoder": "Bi-encoder (cosine)",
    "bm25": "BM25 (bm25s)",
    "untrained": "Untrained student (random PMA + IEM)",
}
SEEDED = ("student", "mnrl")
"""Roles given as several run folders (one per seed), reported as mean +- std."""
RERANKERS = ("teacher", "student", "untrained")
"""Roles that rerank the first stage's SciFact candidates."""
BM25_TASKS = ("wikiqa", "scifact")
SHORT = {
    "spearman": "Spearman",
    "auc": "AUC",
    "accuracy_at_threshold": "Acc (dev thr.)",
    "ndcg@10": "nDCG@10",
    "map": "MAP",
    "mrr": "MRR",
}
BM25_DEPTH = 100
"""Passages BM25 returns per SciFact query: the first-stage depth of the IR evaluator (Recall@100, MAP@100)."""


def display_name(path: str) -> str:
    """The last two components of a model path (``runs/s42/model`` -> ``s42/model``)."""
    parts = os.path.normpath(path).split(os.sep)
    return "/".join(parts[-2:])


def eval_argv(
    args: argparse.Namespace, role: str, path: str, task_key: str, split: str = "test", threshold: float | None = None
) -> list[str]:
    """The ``d2llm eval`` arguments of one cell."""
    column = TASKS[task_key]
    task = column.task
    argv = ["eval", "--model", path, "--task", task, "--data", os.path.join(args.data, column.folder)]
    argv += ["--split", split, "--batch-size", str(args.batch_size)]
    if args.device:
        argv += ["--device", args.device]
    if task in ("sts", "nli") and args.limit:
        argv += ["--limit", str(args.limit)]
    if task in ("ir", "answer-selection") and args.limit_queries:
        argv += ["--limit", str(args.limit_queries)]
    if threshold is not None:
        argv += ["--threshold", repr(float(threshold))]
    if task == "ir":
        argv += ["--candidate-k", str(args.scifact_candidate_k)]
        if args.max_corpus:
            argv += ["--max-corpus", str(args.max_corpus)]
        first_stage = ir_first_stage(args, role)
        if first_stage is not None:
            argv += ["--first-stage", first_stage]
    return argv


def ir_first_stage(args: argparse.Namespace, role: str) -> str | None:
    """The model whose cosine candidates ``role`` reranks on SciFact (``None``: it searches itself)."""
    if role not in RERANKERS:
        return None
    if args.ir_first_stage == "own":
        if role != "teacher":
            return None
        source = "student"
    else:
        source = "bi_encoder"
    models = getattr(args, source)
    if not models:
        raise SystemExit(f"SciFact: the {role} reranks the {source}'s candidates; pass --{source.replace('_', '-')}.")
    return models[0] if isinstance(models, list) else models


def run_cell(argv: list[str], output_dir: str, name: str) -> dict:
    """One cell: ``d2llm eval`` (the console script's entry point, in this process) writing its JSON result."""
    from d2llm_st.cli import main as d2llm

    command = "d2llm " + shlex.join(argv)

    def evaluate(staging: str) -> dict:
        if d2llm([*argv, "--output", staging]) != 0:
            raise SystemExit(f"{name}: `{command}` failed (its error is above).")
        with open(staging, encoding="utf-8") as f:
            return json.load(f)

    return cached_cell(output_dir, name, command, evaluate)


def cached_cell(output_dir: str, name: str, command: str, evaluate) -> dict:
    """``OUTPUT/<name>.json`` when it holds ``command``; otherwise ``evaluate(staging path)``'s result, saved there."""
    path = os.path.join(output_dir, f"{name}.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("command") == command:
            logger.info(f"{name}: kept from {path}")
            return saved
    logger.info(f"{name}: {command}")
    staging = f"{path}.tmp"
    result = evaluate(staging)
    if os.path.exists(staging):
        os.remove(staging)
    result["command"] = command
    result["date"] = datetime.date.today().isoformat()
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return result


# BM25: in this script (bm25s, as d2llm_st.data.mining uses it), scored through the package's evaluator and metrics.


def bm25_tokenizer():
    import bm25s
    import Stemmer

    return bm25s.tokenization.Tokenizer(stemmer=Stemmer.Stemmer("english"), stopwords="en")


def bm25_index(texts: list[str]):
    """``(tokenizer, retriever)`` over ``texts`` (default BM25 parameters: Lucene variant, k1 = 1.5, b = 0.75)."""
    import bm25s

    tokenizer = bm25_tokenizer()
    retriever = bm25s.BM25()
    retriever.index(tokenizer.tokenize(texts, return_as="ids", show_progress=False), show_progress=False)
    return tokenizer, retriever


def bm25_scores(tokenizer, retriever, queries: list[str]) -> np.ndarray:
    """``[len(queries), corpus]`` BM25 scores (query terms outside the corpus vocabulary score nothing)."""
    query_ids = tokenizer.tokenize(queries, return_as="ids", update_vocab=False, show_progress=False)
    return np.stack([retriever.get_scores(ids) for ids in query_ids])


def tie_breaker(text: str) -> float:
    """A fixed pseudo-random number in [0, 1e-6) per text: breaks exact score ties without looking at labels."""
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16) / 16**8 * 1e-6


class BM25Scorer(Scorer):
    """BM25 scores of ``(question, candidate)`` pairs, with term statistics from ``corpus``.

    Candidates that share no term with a question all score 0; the answer-selection evaluator lists a question's
    positives first, so equal scores would rank them first: exact ties are broken by :func:`tie_breaker` instead.
    """

    model_type = "bm25"
    score_name = "BM25"

    def __init__(self, corpus: list[str]) -> None:
        super().__init__(None, show_progress_bar=False, name="bm25")
        self.index = {text: i for i, text in enumerate(dict.fromkeys(corpus))}
        self.tokenizer, self.retriever = bm25_index(list(self.index))

    def score_pairs(self, pairs, task) -> np.ndarray:
        queries = list(dict.fromkeys(query for query, _ in pairs))
        rows = {query: i for i, query in enumerate(queries)}
        missing = [passage for _, passage in pairs if passage not in self.index]
        if missing:
            raise ValueError(f"BM25: {len(missing)} candidate(s) are not in the indexed corpus, e.g. {missing[0]!r}.")
        scores = bm25_scores(self.tokenizer, self.retriever, queries)
        return np.array(
            [scores[rows[query], self.index[passage]] + tie_breaker(passage) for query, passage in pairs],
            dtype=np.float64,
        )


def bm25_cell(args: argparse.Namespace, task_key: str) -> dict:
    """BM25 on WikiQA (answer selection) or SciFact (retrieval), as a cell with its reproducing command."""
    from d2llm_st.data import read_beir

    column = TASKS[task_key]
    data = os.path.join(args.data, column.folder)
    argv = ["python", "benchmarks/quality_table.py", "--data", args.data, "--output-dir", args.output_dir]
    argv += ["--bm25", "--tasks", task_key]
    if args.limit_queries:
        argv += ["--limit-queries", str(args.limit_queries)]
    if task_key == "scifact" and args.max_corpus:
        argv += ["--max-corpus", str(args.max_corpus)]

    def evaluate(_: str) -> dict:
        start = time.perf_counter()
        if task_key == "wikiqa":
            evaluator = build_evaluator(column.task, data, split="test", limit=args.limit_queries, write_csv=False)
            metrics = evaluator(BM25Scorer(list(read_beir(data, "test").corpus.values())))
            extra = {}
        else:
            evaluator = build_evaluator(
                column.task, data, split="test", limit=args.limit_queries, max_corpus=args.max_corpus, write_csv=False
            )
            doc_ids, query_ids = list(evaluator.corpus), list(evaluator.queries)
            tokenizer, retriever = bm25_index([evaluator.corpus[doc] for doc in doc_ids])
            scores = bm25_scores(tokenizer, retriever, [evaluator.queries[query] for query in query_ids])
            depth = min(BM25_DEPTH, len(doc_ids))
            run = {}
            for query, row in zip(query_ids, scores):
                top = np.argsort(-row, kind="stable")[:depth]
                run[query] = {doc_ids[j]: float(depth - rank) for rank, j in enumerate(top)}
            metrics = ranking(run, evaluator.qrels, evaluator.k, evaluator.recall_k)
            extra = {"first_stage": "bm25", "queries": len(query_ids), "corpus": len(doc_ids)}
        settings = {
            "model": "bm25",
            "model_type": "bm25",
            "score": "BM25 (bm25s Lucene, k1=1.5, b=0.75; English stemmer and stopwords)",
            "task": column.task,
            "data": data,
            "split": "test",
            "limit": args.limit_queries,
            "primary_metric": headline_metric(column.task),
            "seconds": round(time.perf_counter() - start, 1),
            **extra,
        }
        return {"settings": settings, "metrics": metrics}

    return cached_cell(args.output_dir, f"bm25-{task_key}", shlex.join(argv), evaluate)


def untrained_student(source: str, output_dir: str) -> str:
    """``source`` when it is a model folder; for a distill config, its fresh student saved once under
    ``output_dir``."""
    if os.path.isdir(source):
        return source
    import transformers

    from d2llm_st import D2LLM
    from d2llm_st.training import DistillConfig

    config = DistillConfig.load(source)
    folder = os.path.join(output_dir, "untrained-student")
    recipe = {"config": os.path.abspath(source), "student": dataclasses.asdict(config.student)}
    recipe["seed"] = config.training.seed
    marker = os.path.join(folder, "untrained_from.json")
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == json.loads(json.dumps(recipe)):
                return folder
    logger.info(f"Building the untrained student of {source} (seed {config.training.seed}) in {folder}")
    transformers.set_seed(config.training.seed)
    D2LLM.from_llm(**dataclasses.asdict(config.student)).save_pretrained(folder)
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(recipe, f, indent=2)
    return folder


def summarize(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value) and the values."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def format_cell(summary: dict | None) -> str:
    if summary is None:
        return "-"
    text = f"{100 * summary['mean']:.1f}"
    if len(summary["values"]) > 1:
        text += f" ± {100 * summary['std']:.1f}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="The shared data folder (sts/, nli/, ir/).")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--teacher", help="The teacher: a teacher folder or bundled:smollm2.")
    parser.add_argument("--student", nargs="+", help="The D2LLM student: one folder per training seed.")
    parser.add_argument(
        "--mnrl",
        "--llm-bi-encoder",
        dest="mnrl",
        nargs="+",
        help="The MNRL baseline (d2llm distill --mode baseline): one folder per training seed.",
    )
    parser.add_argument("--bi-encoder", dest="bi_encoder", help="An off-the-shelf bi-encoder (all-MiniLM-L6-v2).")
    parser.add_argument("--bm25", action="store_true", help="Add BM25 (WikiQA and SciFact).")
    parser.add_argument(
        "--untrained", help="The untrained student: a D2LLM folder, or a distill config to build it from."
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--limit", type=int, help="Quick check: N pairs per STS / NLI set (dev and test).")
    parser.add_argument("--limit-queries", type=int, help="Quick check: N queries per IR / answer-selection set.")
    parser.add_argument("--max-corpus", type=int, help="Quick check: search only this many SciFact passages.")
    parser.add_argument(
        "--scifact-candidate-k",
        "--candidate-k",
        dest="scifact_candidate_k",
        type=int,
        default=100,
        help="SciFact: first-stage candidates the teacher and the students rerank per query (default 100; the "
        "teacher reads every (claim, abstract) prompt, hours on a CPU at 100).",
    )
    parser.add_argument(
        "--ir-first-stage",
        default="bi-encoder",
        choices=["bi-encoder", "own"],
        help="SciFact candidates: 'bi-encoder' (default): teacher and students rerank the --bi-encoder's top "
        "--scifact-candidate-k; 'own': each student reranks its own cosine candidates and the teacher the first "
        "--student's. Bi-encoders always search with their own embeddings.",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.makedirs(args.output_dir, exist_ok=True)

    roles = [role for role in MODELS if getattr(args, role)]
    if not roles:
        parser.error("pass at least one model (--teacher, --student, --mnrl, --bi-encoder, --bm25, --untrained).")
    if args.untrained:
        args.untrained = untrained_student(args.untrained, args.output_dir)

    runs: dict[str, list[str]] = {}  # role -> model folders ([] for BM25)
    cells: dict[tuple[str, str], list[dict]] = {}  # (role, task) -> one result per run
    listed: list[tuple[str, str, dict]] = []  # (role, column, result) in run order, for the command list
    for role in roles:
        paths = [] if role == "bm25" else getattr(args, role)
        runs[role] = paths if isinstance(paths, list) else [paths]
        for task_key in args.tasks:
            if role == "bm25":
                if task_key in BM25_TASKS:
                    cells[role, task_key] = [bm25_cell(args, task_key)]
                    listed.append((role, TASKS[task_key].label, cells[role, task_key][0]))
                continue
            results = []
            for i, path in enumerate(runs[role], start=1):
                name = f"{role}-{i}" if role in SEEDED else role
                threshold = None
                if TASKS[task_key].task == "nli":  # the dev split chooses the threshold the test split is read at
                    dev = run_cell(
                        eval_argv(args, role, path, task_key, "dev"), args.output_dir, f"{name}-{task_key}-dev"
                    )
                    listed.append((role, f"{TASKS[task_key].label} dev", dev))
                    threshold = dev["metrics"]["accuracy_threshold"]
                result = run_cell(
                    eval_argv(args, role, path, task_key, "test", threshold), args.output_dir, f"{name}-{task_key}"
                )
                results.append(result)
                listed.append((role, TASKS[task_key].label, result))
            cells[role, task_key] = results

    columns = [(key, metric) for key in args.tasks for metric in TASKS[key].metrics]
    summary: dict[str, dict] = {}
    rows = []
    for role in roles:
        figures = {}
        for key, metric in columns:
            results = cells.get((role, key))
            if results:
                figures[f"{key} {metric}"] = summarize([result["metrics"][metric] for result in results])
        summary[role] = {"label": MODELS[role], "runs": runs[role], "metrics": figures}
        if role == "bm25":
            name = MODELS[role]
        elif role in SEEDED and len(runs[role]) > 1:
            name = f"{MODELS[role]}, {len(runs[role])} seeds"
        else:
            name = f"{MODELS[role]}: `{display_name(runs[role][0])}`"
        rows.append([name, *[format_cell(figures.get(f"{key} {metric}")) for key, metric in columns]])
    headers = ["model", *[f"{TASKS[key].label} {SHORT.get(metric, metric)}" for key, metric in columns]]

    quick = [
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("limit", "limit_queries", "max_corpus")
        if getattr(args, name)
    ]
    machine = f"{os.cpu_count()}-core CPU machine"
    if (args.device or "").startswith("cuda") or (args.device is None and torch.cuda.is_available()):
        machine += f" with {torch.cuda.get_device_name()}"
    script_args = sys.argv[1:] if argv is None else argv
    command = shlex.join([os.path.basename(sys.executable), "benchmarks/quality_table.py", *script_args])
    lines = [
        f"Test splits of `{args.data}`, all figures x100; {machine}, {datetime.date.today().isoformat()}.",
        "",
        f"Made by: `{command}`",
        "",
    ]
    if quick:
        lines += [f"**Quick check on subsets ({', '.join(quick)}): not comparable to full-set figures.**", ""]
    lines += [markdown_table(headers, rows), ""]
    notes = []
    if any(role in SEEDED and len(runs[role]) > 1 for role in roles):
        notes.append("mean ± sample standard deviation over the runs (training seeds); each run in the list below.")
    if "snli" in args.tasks:
        notes.append(
            "SNLI: entailment vs contradiction (neutral dropped). Acc (dev thr.): accuracy on test at the score "
            "threshold that maximises the same model's accuracy on SNLI dev (`--threshold`)."
        )
    if "scifact" in args.tasks:
        first = {"bi-encoder": "the bi-encoder's", "own": "each student's own (the teacher: the first student's)"}
        notes.append(
            f"SciFact: teacher and students rerank the top {args.scifact_candidate_k} of "
            f"{first[args.ir_first_stage]} cosine search of the corpus; bi-encoders search it with their own "
            f"embeddings; BM25 searches it with bm25s (top {BM25_DEPTH})."
        )
    if "wikiqa" in args.tasks:
        notes.append("WikiQA: each test question's candidate sentences ranked (answer selection).")
    lines += [f"- {note}" for note in notes] + ["", "Each cell's command:", ""]
    for role, label, result in listed:
        settings = result["settings"]
        extra = f", first stage `{settings['first_stage']}`" if settings["task"] == "ir" else ""
        lines.append(f"- {MODELS[role]}, {label} ({settings['seconds']} s{extra}): `{result['command']}`")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.output_dir, "quality_table.md"), "w", encoding="utf-8") as f:
        f.write(table)
    with open(os.path.join(args.output_dir, "quality_table.json"), "w", encoding="utf-8") as f:
        json.dump({"command": command, "quick": quick, "rows": summary}, f, indent=2)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
