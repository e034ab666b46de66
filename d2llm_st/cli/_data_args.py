"""Arguments shared by the data-reading commands: which labelled pairs to read."""

from __future__ import annotations

import argparse

from d2llm_st.cli._types import existing_path, positive_int
from d2llm_st.errors import UserError

KINDS = ("nli", "sts", "beir")


def add_data_arguments(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    """``--kind`` / ``--data`` (repeatable and paired by position when ``multiple``), ``--split``, ``--limit``."""
    action = "append" if multiple else "store"
    again = " Repeat --kind/--data to use several sets." if multiple else ""
    parser.add_argument("--kind", choices=KINDS, required=True, action=action, help="nli / sts file, or beir." + again)
    parser.add_argument(
        "--data",
        required=True,
        action=action,
        type=existing_path,
        help="Data file (.jsonl[.gz], .csv, HF datasets folder) or BEIR folder.",
    )
    parser.add_argument("--split", default="train", help="BEIR qrels split (default: train).")
    parser.add_argument(
        "--limit", type=positive_int, help="Use at most this many rows / pairs per set (seeded sample)."
    )
    parser.add_argument("--seed", type=int, default=0)


def read_labelled_pairs(args: argparse.Namespace) -> list:
    """Labelled pairs (entailment / relevant = 1, contradiction / incorrect = 0, STS scores soft) from the args."""
    import random

    from d2llm_st.data import beir_pairs, nli_pairs, read_beir, read_nli, read_sts, sts_pairs

    kinds = args.kind if isinstance(args.kind, list) else [args.kind]
    paths = args.data if isinstance(args.data, list) else [args.data]
    if len(kinds) != len(paths):
        raise UserError(f"Give one --kind per --data (got {len(kinds)} kinds for {len(paths)} data paths).")
    pairs = []
    for kind, path in zip(kinds, paths):
        if kind == "nli":
            found = nli_pairs(read_nli(path))
        elif kind == "sts":
            found = sts_pairs(read_sts(path))
        else:
            found = beir_pairs(read_beir(path, args.split))
        if args.limit is not None and len(found) > args.limit:
            found = random.Random(args.seed).sample(found, args.limit)
        pairs += found
    return pairs
