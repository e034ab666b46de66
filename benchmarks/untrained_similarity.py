"""Which part of a D2LLM student's symmetric score carries the similarity: the embeddings' cosine or the IEM MLP?

The script embeds an STS set and reports Spearman (x100) against the gold scores for four similarities of
the same sentence pairs:

- cosine of the PMA embeddings, and cosine of mean-pooled backbone token states (what MNRL starts from);
- the IEM's symmetric MLP logit alone, and the full IEM logit (MLP + ``c * cos`` with ``cosine_residual``).

By default the student is a fresh one (random PMA and IEM, residual on): it explains why a short
distillation run starts far behind a mean-pooling + cosine baseline, and what the residual changes.
``--student`` takes a trained one instead, to see whether training improved the embeddings, the MLP, or
both (docs/results.md, distillation section).

Usage::

    python benchmarks/untrained_similarity.py --model bundled:smollm2 --data ../shared/data/sts/stsb/dev.jsonl.gz \\
        --limit 300 --output docs/benchmarks/untrained_similarity.json
    python benchmarks/untrained_similarity.py --student runs/ablation-cpu9/full/model --seeded-subset \\
        --data ../shared/data/sts/stsb/dev.jsonl.gz --limit 300 --output docs/benchmarks/trained_similarity.json
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from common import machine_info, markdown_table
from scipy.stats import spearmanr

from d2llm_st import D2LLM
from d2llm_st.data import read_sts, subsample
from d2llm_st.deelm import pool
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.tasks import prompt_name


@torch.no_grad()
def pooled_embeddings(model: D2LLM, texts: list[str], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PMA embeddings and mean-pooled token states of ``texts`` (symmetric prompt), from one backbone pass."""
    backbone, pma = model.backbone, model.pma
    prompt = model.prompts.get(prompt_name("symmetric"), "")
    pma_out, mean_out = [], []
    for start in range(0, len(texts), batch_size):
        features = model.preprocess([prompt + text for text in texts[start : start + batch_size]])
        out = backbone(dict(features))
        pma_out.append(pma.pool(out["token_embeddings"], out["attention_mask"]))
        mean_out.append(pool(out["token_embeddings"], out["attention_mask"], "mean"))
    return torch.cat(pma_out).float(), torch.cat(mean_out).float()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled:smollm2", help="Causal LM: folder, hub id or bundled:NAME.")
    parser.add_argument("--data", required=True, help="STS jsonl(.gz) with sentence1, sentence2, score.")
    parser.add_argument("--limit", type=int, default=300, help="First N pairs (or N seeded, --seeded-subset).")
    parser.add_argument(
        "--seeded-subset", action="store_true", help="The evaluators' fixed random subset of N pairs, not the first N."
    )
    parser.add_argument("--student", help="A trained D2LLM folder to analyse instead of a fresh student.")
    parser.add_argument("--pma-heads", type=int, default=8)
    parser.add_argument("--iem-hidden-dim", type=int, default=256)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--prompt", default="Text: ", help="Symmetric prompt.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", help="Write the figures and the machine description as JSON here.")
    args = parser.parse_args(argv)

    rows = read_sts(args.data)
    rows = subsample(rows, args.limit, what="STS pairs") if args.seeded_subset else rows[: args.limit]
    gold = [row["score"] for row in rows]
    torch.manual_seed(args.seed)
    if args.student:
        model = D2LLM(args.student, device="cpu").eval()
    else:
        model = D2LLM.from_llm(
            resolve_model_path(args.model),
            pma_heads=args.pma_heads,
            iem_hidden_dim=args.iem_hidden_dim,
            iem_cosine_residual=True,
            max_seq_length=args.max_seq_length,
            symmetric_prompt=args.prompt,
        ).eval()
    texts = [row["sentence1"] for row in rows] + [row["sentence2"] for row in rows]
    pma, mean = pooled_embeddings(model, texts, args.batch_size)
    n = len(rows)
    pma_cosine = torch.nn.functional.cosine_similarity(pma[:n], pma[n:], dim=-1)
    with torch.no_grad():
        full_logit = model.iem.logits(pma[:n], pma[n:], "symmetric")
    scale = model.iem.symmetric.cosine_scale
    scale = 0.0 if scale is None else float(scale)
    similarities = {
        "cosine of PMA embeddings": pma_cosine,
        "cosine of mean-pooled token states": torch.nn.functional.cosine_similarity(mean[:n], mean[n:], dim=-1),
        "IEM MLP logit (without the residual)": full_logit - scale * pma_cosine,
        f"IEM logit (MLP + {scale:.1f} * cosine)": full_logit,
    }
    results = {name: 100 * float(spearmanr(values.numpy(), gold).statistic) for name, values in similarities.items()}
    student = args.student or f"untrained student of {args.model}, seed {args.seed}"
    print(markdown_table([student, f"Spearman x100 ({n} pairs)"], list(results.items())))
    if args.output:
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        report = {"machine": machine_info(torch.device("cpu")), "student": student, "pairs": n, "spearman": results}
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
