"""Model card for D2LLM students: the usage snippet shows how to load one and score with the IEM."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from sentence_transformers.sentence_transformer.model_card import SentenceTransformerModelCardData

USAGE_QUERY = "Which planet is known as the Red Planet?"
USAGE_PASSAGES = [
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Venus is often called Earth's twin because of its similar size and proximity.",
]


@dataclass
class D2LLMModelCardData(SentenceTransformerModelCardData):
    """Card data for a D2LLM model: the usage snippet loads it with ``d2llm_st`` and scores with the IEM."""

    iem_scores: str | None = field(default=None, init=False, repr=False)

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
        if not self.generate_widget_examples:
            return
        query = self.model.encode_texts([USAGE_QUERY], "query", show_progress_bar=False)
        passages = self.model.encode_texts(USAGE_PASSAGES, "passage", show_progress_bar=False)
        with torch._tensor_str.printoptions(precision=4, sci_mode=False):
            self.iem_scores = f"# {self.model.score(query[0], passages).cpu()}"

    def generate_usage_snippet(self) -> str:
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
