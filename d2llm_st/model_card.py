"""Model cards of D2LLM students (and of the MNRL baselines trained beside them): card data + a template.

As in sentence-transformers (``model_card.py`` + ``model_card_template.md``), the card is one Jinja template
(:data:`TEMPLATE_PATH`, sentence-transformers' own with a D2LLM intro and a "D2LLM distillation" section) rendered
from one card data object, :class:`D2LLMModelCardData`, when the model is saved. The distillation facts (teacher,
training data, loss settings, false-negative thresholds, dev scores) are fields of it, filled by
``d2llm distill`` (:func:`d2llm_st.training.model_card.record_distillation`); the usage snippet shows how to load
a D2LLM and score with its IEM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.sentence_transformer.model_card import SentenceTransformerModelCardData

TEMPLATE_PATH = Path(__file__).parent / "model_card_template.md"

USAGE_QUERY = "Which planet is known as the Red Planet?"
USAGE_PASSAGES = [
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Venus is often called Earth's twin because of its similar size and proximity.",
]


@dataclass
class D2LLMModelCardData(SentenceTransformerModelCardData):
    """Card data of a D2LLM model: the usage snippet loads it with ``d2llm_st`` and scores with the IEM, and the
    distillation fields below become the card's "D2LLM distillation" section.

    Attributes:
        distillation_mode: ``"distill"`` (a distilled student), ``"baseline"`` (the MNRL comparison model) or
            ``None`` (no section: a model not trained by ``d2llm distill``).
        teacher: The teacher's name (``teacher.model``) and ``teacher_identity`` its score-cache identity.
        student_backbone, student_lora_r: The base LLM and LoRA rank of the student.
        training_steps: Optimizer steps trained.
        training_processes: How many processes trained it (DDP under torchrun / accelerate launch; ``None``: one).
        distillation_datasets: One ``{name, type, task, split, rows, num_negatives}`` per training set.
        distillation_losses: The loss weights and temperatures (``D2LLMDistillLoss`` arguments); ``None`` for a
            baseline.
        false_negative_filter: ``{mode, thresholds: {filter name: last threshold}}``, or ``None`` when off.
        distillation_scores: One ``{name, split, type, metric, value}`` per eval set: its headline figure (the
            evaluator's primary metric).
    """

    template_path: Path = field(default=TEMPLATE_PATH, init=False, repr=False)
    iem_scores: str | None = field(default=None, init=False, repr=False)

    distillation_mode: str | None = None
    teacher: str | None = None
    teacher_identity: str | None = None
    student_backbone: str | None = None
    student_lora_r: int | None = None
    training_steps: int | None = None
    training_processes: int | None = None
    distillation_datasets: list[dict[str, Any]] = field(default_factory=list)
    distillation_losses: dict[str, Any] | None = None
    false_negative_filter: dict[str, Any] | None = None
    distillation_scores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def _is_d2llm(self) -> bool:
        """A D2LLM (IEM) model, not a plain bi-encoder such as the baseline."""
        return hasattr(self.model, "encode_texts") and hasattr(self.model, "iem")

    @staticmethod
    def _format_example_value(value):
        # Distillation labels with teacher features are [1 + K][1 + H] lists; ST only shortens flat lists.
        if isinstance(value, list) and value and isinstance(value[0], list):
            value = [row[:3] + ["..."] if len(row) > 3 else row for row in value]
        return SentenceTransformerModelCardData._format_example_value(value)

    def get_model_specific_metadata(self) -> dict:
        """The card's "Similarity Function" line names the IEM (``D2LLM.similarity_fn_name == "iem"``)."""
        metadata = super().get_model_specific_metadata()
        if "similarity_fn_name" in metadata and getattr(self.model, "similarity_fn_name", None) == "iem":
            metadata["similarity_fn_name"] = "IEM logit (D2LLM interaction emulation module)"
        return metadata

    def run_usage_snippet(self) -> None:
        super().run_usage_snippet()
        if not self.generate_widget_examples or not self._is_d2llm:
            return
        query = self.model.encode_texts([USAGE_QUERY], "query", show_progress_bar=False)
        passages = self.model.encode_texts(USAGE_PASSAGES, "passage", show_progress_bar=False)
        with torch._tensor_str.printoptions(precision=4, sci_mode=False):
            self.iem_scores = f"# {self.model.score(query[0], passages).cpu()}"

    def generate_usage_snippet(self) -> str:
        if not self._is_d2llm:
            return super().generate_usage_snippet()
        model_id = self.model_id or self.model._model_card_model_id_placeholder
        lines = [
            "import d2llm_st  # registers the D2LLM modules with sentence-transformers",
            "from d2llm_st import D2LLM",
            "",
            f'model = D2LLM("{model_id}")  # or SentenceTransformer("{model_id}") after `import d2llm_st`',
            "",
            "# Rerank: encode the query once, score precomputed passage embeddings with the IEM",
            f'query = model.encode_texts(["{USAGE_QUERY}"], "query")',
            "passages = model.encode_texts([",
            *(f'    "{passage}",' for passage in USAGE_PASSAGES),
            '], "passage")',
            'print(model.score(query[0], passages, task="asymmetric"))  # emulated teacher P(yes) per passage',
        ]
        if self.iem_scores:
            lines.append(self.iem_scores)
        lines += [
            "",
            "# Or score text pairs end to end (NLI / STS use the symmetric branch)",
            'print(model.predict([("A man is playing a guitar.", "Someone plays music.")], task="symmetric"))',
        ]
        return "```python\n" + "\n".join(lines) + "\n```"
