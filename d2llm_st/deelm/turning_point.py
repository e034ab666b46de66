"""The DeeLM turning point: the layer past which a decoder LLM's sentence embeddings get worse.

DeeLM / BeLLM (Li & Li, arXiv 2311.05296) embeds an STS set with the hidden states of every layer
and finds that similarity quality rises, peaks, then drops in the top layers. The layers after
the peak are the ones made bidirectional (``D2LLM.from_llm(..., bidirectional_from_layer=k)``).

Hidden state ``i`` is the output of the first ``i`` decoder layers (``0`` = token embeddings; the
last one includes the model's final norm). If state ``i`` scores best, the layers that lower the
score are those with index ``>= i``, so the turning point is ``k = i``; a curve that peaks at the
last layer has no turning point (``None``: stay causal).

Every text is wrapped in a summarising prompt (PromptEOL style, as in the paper) and pooled two
ways: the last token's state (what the prompt summarises into) and the mean over all real tokens.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from d2llm_st.data.readers import read_sts
from d2llm_st.data.sampling import subsample
from d2llm_st.errors import UserError
from d2llm_st.evaluation.metrics import correlation
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.modules.backbone import LLMBackbone
from d2llm_st.runtime import backbone_dtype

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = 'This sentence : "{text}" means in one word:"'
POOLINGS = ("last", "mean")


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``[batch, seq, dim]`` states to ``[batch, dim]``: ``last`` real token or ``mean`` of real tokens.

    Works for right and left padding (the last real token is the last 1 in the mask).
    """
    if pooling == "last":
        last = attention_mask.shape[1] - 1 - attention_mask.flip(-1).argmax(-1)
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * mask).sum(1) / mask.sum(1).clamp(min=1)
    raise ValueError(f"Unknown pooling {pooling!r}: use one of {POOLINGS}.")


def turning_point(spearman: Sequence[float]) -> int | None:
    """The first layer index after the best hidden state, or ``None`` if the last state is the best.

    ``spearman[i]`` is the score of hidden state ``i`` (``0`` = embeddings); NaN entries (a constant
    embedding, e.g. last-token pooling of the embedding layer, where every text ends in the same
    prompt token) are ignored.
    """
    scores = np.asarray(spearman, dtype=float)
    if np.isnan(scores).all():
        raise ValueError("Every layer's Spearman is NaN: the embeddings are constant; check the data and the prompt.")
    best = int(np.nanargmax(scores))
    return None if best == len(scores) - 1 else best


@dataclass
class LayerwiseSTS:
    """Spearman correlation of every hidden state of an LLM on an STS set, per pooling.

    ``spearman[pooling][i]`` is the score of hidden state ``i`` (``0`` = embeddings, ``i`` = after layer ``i - 1``).
    """

    model: str
    data: str
    num_pairs: int
    prompt: str
    spearman: dict[str, list[float]]
    bidirectional_from_layer: int | None = None
    turning_points: dict[str, int | None] = field(init=False)

    def __post_init__(self) -> None:
        self.turning_points = {name: turning_point(scores) for name, scores in self.spearman.items()}

    @property
    def num_layers(self) -> int:
        return len(next(iter(self.spearman.values()))) - 1

    def table(self) -> str:
        """A plain-text table: one row per hidden state, Spearman x 100 per pooling."""
        names = list(self.spearman)
        lines = ["state  " + "  ".join(f"{name:>8}" for name in names)]
        for index in range(self.num_layers + 1):
            label = "emb" if index == 0 else str(index)
            lines.append(f"{label:>5}  " + "  ".join(f"{100 * self.spearman[n][index]:8.2f}" for n in names))
        return "\n".join(lines)

    def save_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=2)

    def plot(self, path: str) -> str:
        """Write a PNG of hidden-state index vs Spearman, one line per pooling, turning points marked."""
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

        figure = Figure(figsize=(8, 4.5), dpi=120)
        axes = figure.subplots()
        layers = np.arange(self.num_layers + 1)
        for name, scores in self.spearman.items():
            point = self.turning_points[name]
            label = f"{name} (turning point: {'none' if point is None else point})"
            (line,) = axes.plot(layers, 100 * np.asarray(scores, dtype=float), marker="o", markersize=3, label=label)
            if point is not None:
                axes.axvline(point, color=line.get_color(), linestyle="--", linewidth=1)
        mode = (
            "causal" if self.bidirectional_from_layer is None else f"bidirectional from {self.bidirectional_from_layer}"
        )
        model = os.path.basename(os.path.normpath(self.model))
        data = os.path.join(*os.path.normpath(self.data).split(os.sep)[-2:])
        axes.set_title(f"{model} ({mode}) on {data}, {self.num_pairs} pairs", fontsize=10)
        axes.set_xlabel("hidden state (0 = embeddings, i = after layer i)")
        axes.set_ylabel("Spearman x 100")
        axes.grid(alpha=0.3)
        axes.legend(title="pooling", fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
        return path


def _apply_prompt(texts: Sequence[str], prompt: str) -> list[str]:
    return [prompt.replace("{text}", text) for text in texts]


@torch.inference_mode()
def layerwise_cosines(
    backbone: LLMBackbone,
    pairs: Sequence[tuple[str, str]],
    prompt: str = DEFAULT_PROMPT,
    batch_size: int = 16,
    show_progress_bar: bool = True,
) -> dict[str, np.ndarray]:
    """Cosine similarity of every pair at every hidden state: ``{pooling: array [num_layers + 1, num_pairs]}``.

    One forward per batch gives all layers. Pairs are batched by length to waste little on padding.
    """
    if "{text}" not in prompt:
        raise ValueError(f"The prompt must contain '{{text}}' where the sentence goes, got {prompt!r}.")
    config = backbone.config
    num_states = config.num_hidden_layers + 1
    cosines = {name: np.empty((num_states, len(pairs)), dtype=np.float64) for name in POOLINGS}
    order = sorted(range(len(pairs)), key=lambda i: max(len(pairs[i][0]), len(pairs[i][1])))
    device = next(backbone.parameters()).device
    was_training, had_output_hidden_states = backbone.training, config.output_hidden_states
    backbone.eval()
    config.output_hidden_states = True
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="Embedding pairs", disable=not show_progress_bar):
            index = order[start : start + batch_size]
            texts = _apply_prompt([pairs[i][0] for i in index] + [pairs[i][1] for i in index], prompt)
            features = {name: tensor.to(device) for name, tensor in backbone.preprocess(texts).items()}
            features = backbone(features)
            mask = features["attention_mask"]
            for layer, states in enumerate(features["all_layer_embeddings"]):
                for name in POOLINGS:
                    pooled = pool(states.float(), mask, name)
                    first, second = pooled[: len(index)], pooled[len(index) :]
                    cosine = torch.nn.functional.cosine_similarity(first, second, dim=-1)
                    cosines[name][layer, index] = cosine.double().cpu().numpy()
    finally:
        config.output_hidden_states = had_output_hidden_states
        backbone.train(was_training)
    return cosines


def _spearman(scores: np.ndarray, gold: Sequence[float]) -> float:
    if np.ptp(scores) == 0:  # one constant embedding for every text: rank correlation is undefined
        return float("nan")
    return correlation(scores, gold)["spearman"]


def find_turning_point(
    model_name_or_path: str,
    data_path: str,
    *,
    limit: int | None = None,
    seed: int = 0,
    prompt: str = DEFAULT_PROMPT,
    batch_size: int = 16,
    max_seq_length: int = 128,
    bidirectional_from_layer: int | None = None,
    device: str | None = None,
    show_progress_bar: bool = True,
) -> LayerwiseSTS:
    """Embed an STS set with every layer of an LLM and score each layer by Spearman correlation.

    Args:
        model_name_or_path: Hub id or local folder of a decoder-only causal LM.
        data_path: STS file with ``sentence1``, ``sentence2``, ``score`` (jsonl[.gz], csv, tsv or a saved
            HF dataset), e.g. STS-B dev.
        limit: Score a random subset of this many pairs (seeded by ``seed``); ``None`` = all pairs.
        prompt: Template with ``{text}``; the default is the paper's summarising prompt.
        batch_size: Pairs per forward pass (two texts each).
        max_seq_length: Longer prompted texts are truncated (with a warning).
        bidirectional_from_layer: Score an already DeeLM-patched model (``None`` = the causal LLM).
        device: Torch device (default: CUDA if available, else CPU).

    Returns:
        A :class:`LayerwiseSTS` with per-layer Spearman per pooling and the turning points.
    """
    model_name_or_path = resolve_model_path(model_name_or_path, "model_name_or_path")
    rows = read_sts(data_path)
    if limit is not None:
        if limit < 2:
            raise UserError(f"limit must be at least 2 pairs to compute a correlation, got {limit}.")
        if limit < len(rows):
            rows = subsample(rows, limit, seed=seed, what="STS pairs")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = backbone_dtype(device)
    backbone = LLMBackbone(
        model_name_or_path,
        max_seq_length=max_seq_length,
        bidirectional_from_layer=bidirectional_from_layer,
        model_kwargs={"dtype": dtype} if dtype is not None else None,
    ).to(device)
    logger.info(f"Scoring {backbone.config.num_hidden_layers + 1} hidden states on {len(rows)} pairs")
    pairs = [(row["sentence1"], row["sentence2"]) for row in rows]
    cosines = layerwise_cosines(
        backbone, pairs, prompt=prompt, batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    gold = [row["score"] for row in rows]
    return LayerwiseSTS(
        model=str(model_name_or_path),
        data=str(data_path),
        num_pairs=len(rows),
        prompt=prompt,
        spearman={name: [_spearman(scores, gold) for scores in cosines[name]] for name in POOLINGS},
        bidirectional_from_layer=bidirectional_from_layer,
    )
