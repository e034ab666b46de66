"""Arguments shared by the data-reading commands: which labelled pairs to read."""

from __future__ import annotations

import argparse

KINDS = ("nli", "sts", "beir")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=KINDS, required=True, help="nli / sts file, or a beir folder.")
    parser.add_argument(
        "--data", required=True, help="Data file (.jsonl[.gz], .csv, HF datasets folder) or BEIR folder."
    )
    parser.add_argument("--split", default="train", help="BEIR qrels split (default: train).")
    parser.add_argument("--limit", type=int, help="Use at most this many rows / anchors (seeded sample).")
    parser.add_argument("--seed", type=int, default=0)


def read_labelled_pairs(args: argparse.Namespace):
    """Labelled pairs (entailment / relevant = 1, contradiction / incorrect = 0, STS scores soft) from the args."""
    import random

    from d2llm_st.data import beir_pairs, nli_pairs, read_beir, read_nli, read_sts, sts_pairs

    if args.kind == "nli":
        pairs = nli_pairs(read_nli(args.data))
    elif args.kind == "sts":
        pairs = sts_pairs(read_sts(args.data))
    else:
        pairs = beir_pairs(read_beir(args.data, args.split))
    if args.limit is not None and len(pairs) > args.limit:
        pairs = random.Random(args.seed).sample(pairs, args.limit)
    return pairs
