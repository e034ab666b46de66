"""DeeLM turning-point finder: pooling, the turning-point rule, per-layer cosines, the CLI, and the real LLM."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from d2llm_st.cli import main
from d2llm_st.deelm import find_turning_point, layerwise_cosines, pool, turning_point
from d2llm_st.modules import LLMBackbone

PAIRS = [
    ("the cat sat on the mat", "a cat sat on the sofa", 4.5),
    ("the dog ran in the city", "a man drives a car", 0.5),
    ("rain and cold weather in winter", "the sun is hot in summer", 1.5),
    ("the chef cooks pizza in the kitchen", "a cook is in the kitchen", 3.0),
    ("the team play football", "people play soccer", 3.5),
    ("what is the capital of france ?", "paris is the capital of france", 4.0),
]


@pytest.fixture(scope="module")
def sts_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sts") / "dev.jsonl"
    path.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) + "\n" for a, b, s in PAIRS))
    return str(path)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pooling_ignores_padding(padding_side):
    states = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    if padding_side == "left":
        states, mask = states.clone(), mask.clone()
        states[1] = states[1].roll(2, dims=0)
        mask[1] = mask[1].roll(2)
    torch.testing.assert_close(pool(states, mask, "last"), torch.stack([states[0, 3], states[1, mask[1].bool()][-1]]))
    expected_mean = torch.stack([states[0].mean(0), states[1, mask[1].bool()].mean(0)])
    torch.testing.assert_close(pool(states, mask, "mean"), expected_mean)
    with pytest.raises(ValueError, match="Unknown pooling 'max'"):
        pool(states, mask, "max")


def test_turning_point_is_the_first_layer_after_the_best_state():
    assert turning_point([math.nan, 0.2, 0.6, 0.5, 0.4]) == 2
    assert turning_point([0.7, 0.2, 0.6]) == 0
    assert turning_point([0.1, 0.2, 0.3]) is None
    with pytest.raises(ValueError, match="constant"):
        turning_point([math.nan, math.nan])


def test_layerwise_cosines_equal_a_direct_forward_of_each_text(tiny_llm):
    backbone = LLMBackbone(tiny_llm, model_kwargs={"dtype": torch.float32})  # batched vs alone: exact in float32
    pairs = [(a, b) for a, b, _ in PAIRS]
    cosines = layerwise_cosines(backbone, pairs, prompt="{text} .", batch_size=4, show_progress_bar=False)
    num_states = backbone.config.num_hidden_layers + 1
    assert set(cosines) == {"last", "mean"} and cosines["last"].shape == (num_states, len(pairs))
    for index, pair in enumerate(pairs):
        with torch.no_grad():
            states = [
                backbone.auto_model(**backbone.tokenizer([text + " ."], return_tensors="pt"), output_hidden_states=True)
                for text in pair
            ]
        for layer in range(num_states):
            first, second = (out.hidden_states[layer][0] for out in states)
            last = torch.nn.functional.cosine_similarity(first[-1], second[-1], dim=0)
            mean = torch.nn.functional.cosine_similarity(first.mean(0), second.mean(0), dim=0)
            assert cosines["last"][layer, index] == pytest.approx(last.item(), abs=1e-5)
            assert cosines["mean"][layer, index] == pytest.approx(mean.item(), abs=1e-5)


def test_finder_scores_every_layer(tiny_llm, sts_file):
    result = find_turning_point(tiny_llm, sts_file, show_progress_bar=False)
    assert result.num_pairs == len(PAIRS) and result.num_layers == 2
    # Last-token pooling of the embedding layer sees the same closing prompt token for every text.
    assert math.isnan(result.spearman["last"][0])
    assert all(-1 <= s <= 1 for s in result.spearman["last"][1:] + result.spearman["mean"])
    assert set(result.turning_points) == {"last", "mean"}


def test_bidirectional_upper_layers_change_only_their_own_states(tiny_llm):
    pairs = [(a, b) for a, b, _ in PAIRS]
    causal, upper = (
        layerwise_cosines(LLMBackbone(tiny_llm, bidirectional_from_layer=k), pairs, show_progress_bar=False)
        for k in (None, 1)
    )
    np.testing.assert_array_equal(upper["mean"][:2], causal["mean"][:2])  # state 1 = output of causal layer 0
    assert np.abs(upper["mean"][2] - causal["mean"][2]).min() > 1e-6


def test_finder_subsamples_and_validates(tiny_llm, sts_file):
    assert find_turning_point(tiny_llm, sts_file, limit=4, show_progress_bar=False).num_pairs == 4
    with pytest.raises(ValueError, match="limit must be at least 2"):
        find_turning_point(tiny_llm, sts_file, limit=1)
    with pytest.raises(ValueError, match=r"must contain '\{text\}'"):
        find_turning_point(tiny_llm, sts_file, prompt="Summarise in one word:", show_progress_bar=False)


def test_cli_prints_the_table_and_writes_plot_and_json(tiny_llm, sts_file, tmp_path, capsys):
    plot, scores = str(tmp_path / "turning_point.png"), str(tmp_path / "scores.json")
    argv = ["turning-point", "--model", tiny_llm, "--data", sts_file, "--plot", plot, "--json", scores]
    assert main([*argv, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Spearman x 100 per hidden state" in out and "pooling:" in out
    with open(plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    saved = json.load(open(scores))
    assert len(saved["spearman"]["mean"]) == 3 and saved["num_pairs"] == len(PAIRS)


def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["turning-point", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--limit", "--plot", "--bidirectional-from-layer"))


@pytest.mark.slow
def test_real_llm_last_token_quality_peaks_in_the_upper_layers(smollm2, shared_data):
    data = os.path.join(shared_data, "sts", "stsb", "dev.jsonl.gz")
    result = find_turning_point(smollm2, data, limit=64, batch_size=32, show_progress_bar=False)
    last = np.asarray(result.spearman["last"])
    best = int(np.nanargmax(last))
    # The summarising prompt pays off only once the model has processed it: the top third is far better
    # than the middle layers.
    assert best >= 20 and last[best] > 0.5
    assert last[best] - np.nanmax(last[5:15]) > 0.2
