"""Arguments shared by the data-reading commands: which labelled pairs to read."""

from __future__ import annotations

import argparse

from d2llm_st.cli._types import existing_path, positive_int
from d2llm_st.errors import UserError
from d2llm_st.tasks import DATASET_KINDS


def add_data_arguments(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    """``--kind`` / ``--data`` (repeatable and paired by position when ``multiple``), ``--split``, ``--limit``
    (with ``multiple``: one value for every set, or one per set), ``--balance``, ``--seed``."""
    action = "append" if multiple else "store"
    again = " Repeat --kind/--data to use several sets." if multiple else ""
    parser.add_argument(
        "--kind", choices=list(DATASET_KINDS), required=True, action=action, help="nli / sts file, or beir." + again
    )
    parser.add_argument(
        "--data",
        required=True,
        action=action,
        type=existing_path,
        help="Data file (.jsonl[.gz], .csv, HF datasets folder) or BEIR folder.",
    )
    parser.add_argument("--split", default="train", help="BEIR qrels split (default: train).")
    if multiple:
        parser.add_argument(
            "--limit",
            type=positive_int,
            action="append",
            help="Use at most this many pairs per set (a seeded random subset, in file order): once for every set, or "
            "once per --data.",
        )
    else:
        parser.add_argument(
            "--limit", type=positive_int, help="Use at most this many pairs (a seeded random subset, in file order)."
        )
    parser.add_argument(
        "--balance",
        action="store_true",
        help="Sample as many positive (label >= 0.5) as negative pairs per set, e.g. for answer-selection sets "
        "with one right answer among many candidates (with --limit: half each).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the --limit / --balance sample.")


def read_labelled_pairs(args: argparse.Namespace) -> list:
    """Labelled pairs (entailment / relevant = 1, contradiction / incorrect = 0, STS scores soft) from the args."""
    from d2llm_st.data import beir_pairs, nli_pairs, read_beir, read_nli, read_sts, sts_pairs
    from d2llm_st.data.sampling import subsample

    kinds = args.kind if isinstance(args.kind, list) else [args.kind]
    paths = args.data if isinstance(args.data, list) else [args.data]
    if len(kinds) != len(paths):
        raise UserError(f"Give one --kind per --data (got {len(kinds)} kinds for {len(paths)} data paths).")
    limits = args.limit if isinstance(args.limit, list) else [args.limit]
    if len(limits) == 1:
        limits = limits * len(paths)
    if len(limits) != len(paths):
        raise UserError(f"Give --limit once, or once per --data (got {len(limits)} limits for {len(paths)} sets).")
    pairs = []
    for kind, path, limit in zip(kinds, paths, limits):
        if kind == "nli":
            found = nli_pairs(read_nli(path))
        elif kind == "sts":
            found = sts_pairs(read_sts(path))
        else:
            found = beir_pairs(read_beir(path, args.split))
        if args.balance:
            positives = [pair for pair in found if pair.label >= 0.5]
            negatives = [pair for pair in found if pair.label < 0.5]
            each = min(len(positives), len(negatives), *([limit // 2] if limit is not None else []))
            if each == 0:
                raise UserError(f"--balance: {path} has no positive or no negative pairs to balance.")
            found = subsample(positives, each, seed=args.seed, what="positives") + subsample(
                negatives, each, seed=args.seed, what="negatives"
            )
        else:
            found = subsample(found, limit, seed=args.seed, what=f"{kind} pairs")
        pairs += found
    return pairs
