"""Find the DeeLM turning point of a decoder LLM on an STS set.

Embeds every sentence with the hidden states of every layer (summarising prompt, last-token and
mean pooling), computes Spearman per layer, prints the table, writes a PNG (layer vs Spearman)
and reports the turning point k: the layers from k on lower STS quality and are the ones to make
bidirectional with D2LLM.from_llm(..., bidirectional_from_layer=k).

Example:
  d2llm turning-point --data ../shared/data/sts/stsb/dev.jsonl.gz --plot turning_point.png
"""

from __future__ import annotations

import argparse

from d2llm_st.cli._types import existing_path, non_negative_int, positive_int
from d2llm_st.model_paths import BUNDLED_SMOLLM2

COMMAND = "turning-point"
HELP = "Spearman of every LLM layer on an STS set; report the DeeLM turning point and plot it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=BUNDLED_SMOLLM2,
        help="Causal LM: folder, hub id or bundled:smollm2 (default: %(default)s, SmolLM2-135M-Instruct).",
    )
    parser.add_argument(
        "--data",
        required=True,
        type=existing_path,
        help="STS file with sentence1, sentence2, score (jsonl[.gz]/csv).",
    )
    parser.add_argument("--limit", type=positive_int, help="Score a random subset of N pairs (default: all).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the --limit subset.")
    parser.add_argument(
        "--prompt", help="Template with {text} (default: DeeLM's summarising prompt, see docs/deelm.md)."
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="Pairs per forward pass.")
    parser.add_argument("--max-seq-length", type=positive_int, default=128, help="Truncate longer prompted texts.")
    parser.add_argument(
        "--bidirectional-from-layer",
        type=non_negative_int,
        help="Score the model with layers >= K made bidirectional.",
    )
    parser.add_argument("--device", help="Torch device (default: cuda if available, else cpu).")
    parser.add_argument("--plot", default="turning_point.png", help="PNG to write (default: %(default)s).")
    parser.add_argument("--json", help="Also write the per-layer scores as JSON here.")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    from d2llm_st.errors import UserError
    from d2llm_st.model_paths import resolve_model_path

    if args.prompt is not None and "{text}" not in args.prompt:
        raise UserError(f"--prompt must contain {{text}} where the sentence goes, got {args.prompt!r}.")
    model = resolve_model_path(args.model, "--model")

    from d2llm_st.deelm import DEFAULT_PROMPT, find_turning_point

    result = find_turning_point(
        model,
        args.data,
        limit=args.limit,
        seed=args.seed,
        prompt=args.prompt or DEFAULT_PROMPT,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        bidirectional_from_layer=args.bidirectional_from_layer,
        device=args.device,
        show_progress_bar=not args.no_progress,
    )
    print(f"\n{result.model} on {result.data} ({result.num_pairs} pairs), Spearman x 100 per hidden state:\n")
    print(result.table())
    print()
    for pooling, point in result.turning_points.items():
        if point is None:
            print(f"{pooling:>5} pooling: no turning point (the last layer scores best); keep the model causal.")
        else:
            best = 100 * result.spearman[pooling][point]
            print(
                f"{pooling:>5} pooling: best state {point} ({best:.2f}), turning point k = {point} "
                f"-> bidirectional_from_layer={point}"
            )
    print(f"\nplot: {result.plot(args.plot)}")
    if args.json:
        result.save_json(args.json)
        print(f"scores: {args.json}")
    return 0
