"""One scoring interface over the four kinds of model the evaluators compare.

- ``d2llm``: a :class:`~d2llm_st.D2LLM` student; pairs are scored by its IEM over the two embeddings.
- ``bi-encoder``: any sentence-transformers ``SentenceTransformer``; pairs are scored by cosine.
- ``cross-encoder``: a sentence-transformers ``CrossEncoder``; pairs are scored jointly (``predict``).
- ``teacher``: a :class:`~d2llm_st.teacher.Teacher` (LLM yes/no judge or wrapped CrossEncoder); ``P(yes)``.

The first two embed texts on their own (:class:`EmbeddingScorer`), so they can also retrieve from a corpus
(the first stage of IR evaluation); the last two can only rerank candidates.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from d2llm_st.errors import UserError
from d2llm_st.model_folders import check_pair_scorer, inspect_folder, inspect_model
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.tasks import Task, check_role, check_task, ensure_pad_token, task_roles

logger = logging.getLogger(__name__)

MODEL_TYPES = ("d2llm", "bi-encoder", "cross-encoder", "teacher")


class Scorer(ABC):
    """Scores ``(text_a, text_b)`` pairs; higher means more relevant / more similar."""

    model_type: str
    score_name: str
    """What the score is (``"IEM"``, ``"cosine"``, ...), shown in result tables."""

    def __init__(
        self, model: Any, batch_size: int = 32, show_progress_bar: bool | None = None, name: str | None = None
    ) -> None:
        self.model = model
        self.name = name or str(getattr(model, "name_or_path", None) or type(model).__name__)
        self.batch_size = batch_size
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        self.show_progress_bar = show_progress_bar

    @abstractmethod
    def score_pairs(self, pairs: Sequence[tuple[str, str]], task: Task) -> np.ndarray:
        """Scores ``[len(pairs)]`` (float) of ``(query, passage)`` pairs (``asymmetric``) or text pairs."""


class EmbeddingScorer(Scorer):
    """A scorer that embeds each text alone and scores two embeddings (so it can search a corpus)."""

    reranks = False
    """Whether :meth:`score_embeddings` differs from cosine, i.e. reranking cosine candidates changes them."""

    @abstractmethod
    def embed(self, texts: Sequence[str], role: str) -> torch.Tensor:
        """``[len(texts), d]`` embeddings of ``texts`` as ``query``, ``passage`` or ``symmetric``."""

    @abstractmethod
    def score_embeddings(self, a: torch.Tensor, b: torch.Tensor, task: Task) -> torch.Tensor:
        """Scores ``[N]`` of one ``a`` ``[d]`` against ``b`` ``[N, d]``, or of row-wise pairs ``[N, d]``."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]], task: Task) -> np.ndarray:
        """Embed every distinct text once per role, then score the pairs row-wise."""
        role_a, role_b = task_roles(task)
        sides = [[pair[0] for pair in pairs], [pair[1] for pair in pairs]]
        if role_a == role_b:  # symmetric: one pool of texts
            unique = list(dict.fromkeys(sides[0] + sides[1]))
            embeddings = self.embed(unique, role_a)
            index = {text: i for i, text in enumerate(unique)}
            a = embeddings[[index[text] for text in sides[0]]]
            b = embeddings[[index[text] for text in sides[1]]]
        else:
            embedded = []
            for texts, role in zip(sides, (role_a, role_b)):
                unique = list(dict.fromkeys(texts))
                index = {text: i for i, text in enumerate(unique)}
                embedded.append(self.embed(unique, role)[[index[text] for text in texts]])
            a, b = embedded
        return self.score_embeddings(a, b, task).float().cpu().numpy()


class D2LLMScorer(EmbeddingScorer):
    """A D2LLM student: embeddings from backbone + PMA, pair scores from the IEM.

    Scores are IEM logits, not ``P(yes)``: the sigmoid is monotone, so every metric is the same, except
    that in float32 it rounds logits above about 17 to exactly 1.0, which would turn a ranking into ties.
    """

    model_type = "d2llm"
    score_name = "IEM logit"
    reranks = True

    def embed(self, texts: Sequence[str], role: str) -> torch.Tensor:
        return self.model.encode_texts(
            list(texts), role, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar
        )

    def score_embeddings(self, a: torch.Tensor, b: torch.Tensor, task: Task) -> torch.Tensor:
        return self.model.score(a, b, task, apply_sigmoid=False)


class BiEncoderScorer(EmbeddingScorer):
    """A sentence-transformers bi-encoder scored by cosine, with its own query / document prompts if it has any."""

    model_type = "bi-encoder"
    score_name = "cosine"

    def embed(self, texts: Sequence[str], role: str) -> torch.Tensor:
        encoders = {"query": self.model.encode_query, "passage": self.model.encode_document}
        encode = encoders.get(check_role(role), self.model.encode)
        return encode(
            list(texts), batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, convert_to_tensor=True
        )

    def score_embeddings(self, a: torch.Tensor, b: torch.Tensor, task: Task) -> torch.Tensor:
        return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


class CrossEncoderScorer(Scorer):
    """A sentence-transformers ``CrossEncoder``: each pair in one joint pass (``predict``)."""

    model_type = "cross-encoder"
    score_name = "cross-encoder"

    def score_pairs(self, pairs: Sequence[tuple[str, str]], task: Task) -> np.ndarray:
        check_task(task)
        scores = self.model.predict(
            [list(pair) for pair in pairs], batch_size=self.batch_size, show_progress_bar=self.show_progress_bar
        )
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim != 1:
            raise ValueError(
                f"This CrossEncoder returns {scores.shape[-1]} scores per pair; evaluate a multi-label model as "
                "--model-type teacher, which picks the positive label (CrossEncoderTeacher(positive_label=...))."
            )
        return scores


class TeacherScorer(Scorer):
    """A :class:`~d2llm_st.teacher.Teacher`: ``teacher.score(pairs, task).scores`` (``P(yes)``)."""

    model_type = "teacher"
    score_name = "teacher P(yes)"

    def score_pairs(self, pairs: Sequence[tuple[str, str]], task: Task) -> np.ndarray:
        output = self.model.score(
            [tuple(pair) for pair in pairs], task, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar
        )
        return np.asarray(output.scores, dtype=np.float32)


def as_scorer(
    model: Any, batch_size: int = 32, show_progress_bar: bool | None = None, name: str | None = None
) -> Scorer:
    """Wrap a loaded model (D2LLM, SentenceTransformer, CrossEncoder, Teacher, or a Scorer) as a :class:`Scorer`."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from d2llm_st.model import D2LLM
    from d2llm_st.modules.iem import IEM
    from d2llm_st.teacher.base import Teacher

    kwargs = dict(batch_size=batch_size, show_progress_bar=show_progress_bar, name=name)
    if isinstance(model, Scorer):
        return model
    if isinstance(model, D2LLM):
        return D2LLMScorer(model, **kwargs)
    if isinstance(model, SentenceTransformer):
        if any(isinstance(module, IEM) for module in model):
            raise TypeError(
                "This SentenceTransformer holds D2LLM modules but was loaded as a plain SentenceTransformer; "
                "load it with d2llm_st.D2LLM(path) to score pairs with its IEM."
            )
        ensure_pad_token(getattr(model, "tokenizer", None))
        return BiEncoderScorer(model, **kwargs)
    if isinstance(model, CrossEncoder):
        ensure_pad_token(getattr(model, "tokenizer", None))
        return CrossEncoderScorer(model, **kwargs)
    if isinstance(model, Teacher):
        return TeacherScorer(model, **kwargs)
    raise TypeError(
        f"Cannot evaluate a {type(model).__name__}: pass a D2LLM, SentenceTransformer, CrossEncoder or "
        "d2llm_st.teacher.Teacher."
    )


FOLDER_MODEL_TYPES = {
    "d2llm": "d2llm",
    "bi-encoder": "bi-encoder",
    "cross-encoder": "cross-encoder",
    "sequence-classification": "cross-encoder",
    "teacher": "teacher",
    "adapter": "teacher",
    "causal-lm": "teacher",
}
"""How each kind of folder (:func:`d2llm_st.model_folders.inspect_folder`) is scored by default."""


def detect_model_type(path: str) -> str:
    """Guess ``d2llm`` / ``bi-encoder`` / ``cross-encoder`` / ``teacher`` from a saved model folder."""
    if not os.path.isdir(path):
        raise UserError(f"Cannot detect the model type of {path!r} (not a local folder): pass --model-type.")
    info = inspect_folder(path)
    if info.kind not in FOLDER_MODEL_TYPES:
        raise UserError(
            f"{path} is {info.description}, which none of the scorers fits; pass --model-type with one of "
            f"{', '.join(MODEL_TYPES)} if it is one of them."
        )
    return FOLDER_MODEL_TYPES[info.kind]


def load_scorer(
    path: str,
    model_type: str = "auto",
    device: str | None = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
) -> Scorer:
    """Load a model from a folder (or hub id, with an explicit ``model_type``) as a :class:`Scorer`.

    A model loaded here only scores, so the LoRA adapter of a D2LLM, or of a bi-encoder built on
    :class:`~d2llm_st.modules.LLMBackbone` (the MNRL baseline of ``d2llm distill --mode baseline``), is merged into
    the weights: an unmerged adapter doubles a CPU forward pass, and the scores differ by floating-point rounding
    only (docs/cpu.md).
    """
    path = resolve_model_path(path, "model")
    if model_type == "auto":
        model_type = detect_model_type(path)
        logger.info(f"{path}: detected model type {model_type!r}")
    if model_type not in MODEL_TYPES:
        raise UserError(f"Unknown model type {model_type!r}; use one of auto, {', '.join(MODEL_TYPES)}.")
    if model_type == "d2llm":
        from d2llm_st.model import D2LLM

        model = D2LLM.for_inference(path, device=device)
    elif model_type == "bi-encoder":
        from sentence_transformers import SentenceTransformer

        from d2llm_st.modules.backbone import merge_lora_adapters

        model = SentenceTransformer(path, device=device)
        merge_lora_adapters(model)
    elif model_type == "cross-encoder":
        from sentence_transformers import CrossEncoder

        check_pair_scorer(inspect_model(path), "model")
        model = CrossEncoder(path, device=device)
    else:
        from d2llm_st.teacher import load_teacher

        model = load_teacher(path, **({"device": device} if device else {}))
    return as_scorer(model, batch_size=batch_size, show_progress_bar=show_progress_bar, name=path)
