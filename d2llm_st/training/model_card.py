"""The distillation section of a trained student's model card: teacher, data, losses and scores.

sentence-transformers writes the card (architecture, usage, training arguments, loss configs); this adds
what it cannot know: which teacher was distilled, from which data, with which D2LLM loss terms, and the
evaluation scores of the saved model, with a usage snippet that loads it the D2LLM way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from d2llm_st.training.config import DistillConfig
from d2llm_st.training.evaluation import HEADLINE_METRICS

SECTION_TITLE = "## D2LLM distillation"
INSERT_BEFORE = "## Training Details"


@dataclass
class DistillationCardData:
    """What the card states about a distillation run."""

    config: DistillConfig
    teacher_identity: str | None
    dataset_rows: dict[str, int]
    scores: dict[str, dict[str, float]]
    steps: int
    filter_history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def to_markdown(self) -> str:
        config = self.config
        lines = [SECTION_TITLE, ""]
        if config.mode == "baseline":
            lines += [
                "Baseline (no distillation): the same backbone with mean pooling, trained with "
                "`MultipleNegativesRankingLoss`; scores are cosine similarities.",
                "",
            ]
        else:
            lines += [
                "This student was distilled from an LLM teacher with D2LLM (https://arxiv.org/abs/2406.17262): "
                "the LLM backbone encodes each text once, PMA pools it, and the IEM scores a pair from the two "
                "embeddings, emulating the teacher's `P(yes)`.",
                "",
                f"- **Teacher:** `{config.teacher.model}`"
                + (f" (`{self.teacher_identity}`)" if self.teacher_identity else ""),
            ]
        lines.append(f"- **Student backbone:** `{config.student.model}`, LoRA r={config.student.lora_r}")
        lines.append(f"- **Training steps:** {self.steps}")
        lines += [
            "",
            "### Training data",
            "",
            "| dataset | type | task | split | rows | hard negatives |",
            "|---|---|---|---|---|---|",
        ]
        for dataset in config.datasets:
            lines.append(
                f"| {dataset.name} | {dataset.type} | {dataset.task} | {dataset.split} | "
                f"{self.dataset_rows.get(dataset.name, '?')} | {dataset.num_negatives} |"
            )
        if config.mode == "distill":
            loss = config.loss
            lines += [
                "",
                "### Losses",
                "",
                "`L = in-batch + alpha CI + beta RI_pearson + gamma RI_pairwise + eta FI + w word-level` with "
                f"alpha={loss.alpha}, beta={loss.beta}, gamma={loss.gamma}, eta={loss.eta}, tau={loss.temperature}, "
                f"in-batch tau={loss.in_batch_temperature}"
                f"{' with hard negatives' if loss.in_batch_hard_negatives else ''}, w={loss.word_level_weight} "
                f"(word-level tau={loss.word_level_temperature}).",
            ]
            filtering = config.false_negatives
            if filtering.enabled:
                last = [f"{name} {history[-1][1]:.4f}" for name, history in self.filter_history.items() if history]
                thresholds = f"; last thresholds: {', '.join(last)}" if last else ""
                lines.append(
                    f"Dynamic false-negative filtering (one filter per dataset): mode `{filtering.mode}`{thresholds}."
                )
            else:
                lines.append("No false-negative filtering.")
        if self.scores:
            lines += ["", "### Evaluation", "", "| set | type | metric | value |", "|---|---|---|---|"]
            for eval_set in config.evaluation.sets:
                metric = HEADLINE_METRICS[eval_set.type]
                value = self.scores.get(eval_set.name, {}).get(metric)
                if value is not None:
                    lines.append(f"| {eval_set.name} ({eval_set.split}) | {eval_set.type} | {metric} | {value:.4f} |")
        if config.mode != "baseline":
            lines += [
                "",
                "### Scoring pairs",
                "",
                "```python",
                "import d2llm_st  # registers the D2LLM modules with sentence-transformers",
                "from d2llm_st import D2LLM",
                "",
                'model = D2LLM("path/to/this/model")',
                'scores = model.predict([("What is the capital of France?", "Paris is the capital of France.")], '
                'task="asymmetric")',
                "```",
            ]
        return "\n".join(lines) + "\n"


def add_card_section(model_dir: str, section: str) -> None:
    """Insert ``section`` into ``model_dir/README.md`` before "## Training Details" (or append it)."""
    path = os.path.join(model_dir, "README.md")
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if SECTION_TITLE in text:
        raise ValueError(f"{path} already has a {SECTION_TITLE!r} section.")
    if INSERT_BEFORE in text:
        head, tail = text.split(INSERT_BEFORE, 1)
        text = f"{head}{section}\n{INSERT_BEFORE}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{section}" if text else section
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
