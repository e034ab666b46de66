"""``D2LLM``: a sentence-transformers model whose pipeline is LLM backbone -> PMA pooling -> IEM.

Follow one text: :class:`~d2llm_st.modules.backbone.LLMBackbone` (token states) ->
:class:`~d2llm_st.modules.pma.PMAPooling` (one embedding) -> :class:`~d2llm_st.modules.iem.IEM`
(a pair score from two embeddings).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from d2llm_st.errors import UserError
from d2llm_st.model_card import D2LLMModelCardData
from d2llm_st.model_folders import D2LLM_MODULES, inspect_folder
from d2llm_st.model_paths import resolve_model_path
from d2llm_st.modules import IEM, MODULE_CLASSES, LLMBackbone, PMAPooling
from d2llm_st.modules.backbone import check_texts, merge_lora_adapters
from d2llm_st.modules.base import check_count, check_number
from d2llm_st.modules.pma import ATTENTION_SCALES
from d2llm_st.runtime import backbone_dtype, quiet_deliberate_bf16_warning
from d2llm_st.tasks import Task, check_task, prompt_name, role_prompts, task_roles

logger = logging.getLogger(__name__)
quiet_deliberate_bf16_warning()

SIMILARITY_FN_NAME = "iem"
"""What ``D2LLM.similarity_fn_name`` reports: the name sentence-transformers' evaluators prefix metrics with."""

SIMILARITY_BLOCK_ELEMENTS = 2**24
"""``D2LLM.similarity`` scores this many ``pairs x (2 * embedding_dim + 3 * hidden_dim)`` floats at a time."""


def _as_embeddings(values: Any, name: str, device: torch.device) -> torch.Tensor:
    """``values`` (tensor, array or nested lists of numbers) as a floating-point tensor on ``device``."""
    if values is None or isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a tensor or array of embeddings, got {type(values).__name__}.")
    try:
        tensor = torch.as_tensor(values, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name} must be a tensor or array of numbers ({error}).") from error
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must hold real numbers, got {tensor.dtype}.")
    return tensor if tensor.is_floating_point() else tensor.float()


def check_d2llm_folder(path: str) -> None:
    """Raise a :class:`UserError` unless the local folder ``path`` holds a whole saved D2LLM: the three
    ``modules.json`` entries (backbone, PMA, IEM) and each one's subfolder. The message names what the folder
    is, or the missing piece and its subfolder."""
    info = inspect_folder(path)
    if info.kind != "d2llm":
        hint = {
            "causal-lm": "build a student from it with D2LLM.from_llm(path)",
            "teacher": "build a student from it with D2LLM.from_llm(path), or use it as a teacher",
            "bi-encoder": "load it with SentenceTransformer(path)",
            "cross-encoder": "load it with CrossEncoder(path)",
        }.get(info.kind, "give the folder that `d2llm distill` or D2LLM.save_pretrained wrote")
        raise UserError(f"{path} is {info.description}, not a saved D2LLM: {hint}.")
    for name, class_path in D2LLM_MODULES.items():
        entry = next((module for module in info.modules if module.get("type") == class_path), None)
        if entry is None:
            raise UserError(
                f"{path}/modules.json has no {name} entry ({class_path}): the saved D2LLM is incomplete; "
                "re-save or re-download it."
            )
        folder = os.path.join(path, entry.get("path", ""))
        if not os.path.isdir(folder):
            raise UserError(
                f"{folder} is missing: the folder of the {name} module ({entry.get('path')!r} in modules.json); "
                "re-save or re-download the model."
            )


class D2LLM(SentenceTransformer):
    """A D2LLM student: an LLM bi-encoder with PMA pooling and an IEM pair scorer.

    Load a saved model with ``D2LLM(path_or_hub_id)`` (or plain ``SentenceTransformer`` once
    ``d2llm_st`` is imported); build a fresh one with :meth:`from_llm`. ``encode`` gives
    embeddings (``encode_query`` / ``encode_document`` apply the query and passage prompts);
    :meth:`similarity` / :meth:`similarity_pairwise` (sentence-transformers' verbs, IEM logits),
    :meth:`score` and :meth:`predict` turn pairs into IEM relevance scores, and :meth:`rank` ranks
    documents for a query like ``CrossEncoder.rank``.
    """

    _module_classes = MODULE_CLASSES
    model_card_data_class = D2LLMModelCardData

    def __init__(self, model_name_or_path: str | os.PathLike | None = None, **kwargs: Any) -> None:
        """``SentenceTransformer.__init__``; a name is resolved (``bundled:``, folder, hub id) and must be a D2LLM.

        Raises:
            UserError: (a ``ValueError``) the folder is another kind of model (named in the message), or a
                module, its ``modules.json`` entry, its subfolder or its files are missing.
        """
        if model_name_or_path is not None:
            model_name_or_path = resolve_model_path(os.fspath(model_name_or_path), "model_name_or_path")
            if os.path.isdir(model_name_or_path):
                check_d2llm_folder(model_name_or_path)
        super().__init__(model_name_or_path, **kwargs)
        if model_name_or_path is not None:
            loaded = [type(module).__name__ for module in self]
            if loaded != list(D2LLM_MODULES):
                raise UserError(
                    f"{model_name_or_path} loaded as {' -> '.join(loaded)}, not {' -> '.join(D2LLM_MODULES)}: it is "
                    "not a D2LLM (load it with SentenceTransformer or CrossEncoder instead)."
                )

    def encode(self, inputs: Sequence[str] | str, *args: Any, **kwargs: Any) -> Any:
        """``SentenceTransformer.encode``, with a clear error for empty or non-text input."""
        if isinstance(inputs, str):
            if not inputs.strip():
                raise ValueError(f"inputs is an empty text ({inputs!r}): give some text to embed.")
        else:
            check_texts(inputs, "inputs")
        return super().encode(inputs, *args, **kwargs)

    @classmethod
    def from_llm(
        cls,
        model_name_or_path: str,
        *,
        lora_r: int | None = None,
        lora_alpha: int | None = None,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | str | None = None,
        pma_heads: int = 8,
        pma_seeds: int = 1,
        pma_output_dim: int | None = None,
        pma_attention_scale: str = "head_dim",
        iem_hidden_dim: int = 512,
        iem_dropout: float = 0.0,
        iem_cosine_residual: bool = False,
        iem_cosine_scale: float = 20.0,
        max_seq_length: int = 512,
        padding_side: str = "right",
        bidirectional_from_layer: int | None = None,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        symmetric_prompt: str | None = None,
        default_task: Task = "asymmetric",
        train_backbone: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        device: str | None = None,
    ) -> D2LLM:
        """Build a fresh (untrained PMA and IEM) student from a causal LM.

        Args:
            model_name_or_path: Hub id, local folder or ``bundled:smollm2`` of a decoder-only causal LM.
            lora_r: LoRA rank; ``None`` (default) means no LoRA.
            lora_alpha, lora_dropout, lora_target_modules: LoRA settings (see :class:`LLMBackbone`).
            pma_heads, pma_seeds, pma_output_dim, pma_attention_scale: PMA settings (see :class:`PMAPooling`).
            iem_hidden_dim, iem_dropout, iem_cosine_residual, iem_cosine_scale: IEM settings (see :class:`IEM`).
            max_seq_length: Longer texts are truncated (with a warning).
            padding_side: Tokenizer padding side of the backbone.
            bidirectional_from_layer: DeeLM: layers >= this index attend both ways; ``None`` = causal.
            query_prompt, passage_prompt, symmetric_prompt: Text prefixes for queries, passages and
                symmetric (NLI/STS) texts, stored as the prompts ``query``, ``document``, ``symmetric``.
            default_task: The IEM branch :meth:`similarity`, :meth:`similarity_pairwise` and :meth:`rank` use
                when called without a task (saved with the model): ``"asymmetric"`` (query -> passage search)
                or ``"symmetric"`` (NLI / STS).
            train_backbone: What trains, decided here (losses never change it): ``False`` (default) freezes the
                base LLM weights, so LoRA (if any), PMA and IEM train; ``True`` trains the whole backbone too.
                Saved with the backbone's config.
            model_kwargs: Passed to ``AutoModel.from_pretrained``; ``{"dtype": torch.float32}`` overrides the CPU
                bf16 policy of :mod:`d2llm_st.runtime` (default: bf16 base weights on a CPU with bf16 instructions).
            device: Device to put the model on (default: the best available).

        Raises:
            ValueError / TypeError: an invalid argument, named in the message, before the LLM is loaded.
        """
        check_count("max_seq_length", max_seq_length)
        check_count("lora_r", lora_r, optional=True)
        check_count("pma_heads", pma_heads)
        check_count("pma_seeds", pma_seeds)
        check_count("pma_output_dim", pma_output_dim, optional=True)
        if pma_attention_scale not in ATTENTION_SCALES:
            raise UserError(f"pma_attention_scale must be one of {ATTENTION_SCALES}, got {pma_attention_scale!r}.")
        check_count("iem_hidden_dim", iem_hidden_dim)
        check_number("iem_dropout", iem_dropout, low=0, high=1)
        check_number("lora_dropout", lora_dropout, low=0, high=1)
        check_number("iem_cosine_scale", iem_cosine_scale)
        prompts = role_prompts(query_prompt, passage_prompt, symmetric_prompt)
        model_kwargs = dict(model_kwargs or {})
        dtype = backbone_dtype(device)
        if dtype is not None and "dtype" not in model_kwargs and "torch_dtype" not in model_kwargs:
            model_kwargs["dtype"] = dtype
        # The name as given, not the resolved folder: the backbone records a hub id or ``bundled:`` name and saves
        # only what the base lacks (a resolved bundled:smollm2 is a local folder, which it would save whole).
        backbone = LLMBackbone(
            model_name_or_path,
            max_seq_length=max_seq_length,
            padding_side=padding_side,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            lora_target_modules=lora_target_modules,
            bidirectional_from_layer=bidirectional_from_layer,
            train_base_weights=train_backbone,
            model_kwargs=model_kwargs,
        )
        pma = PMAPooling(
            backbone.get_embedding_dimension(),
            num_heads=pma_heads,
            num_seeds=pma_seeds,
            output_dim=pma_output_dim,
            attention_scale=pma_attention_scale,
        )
        iem = IEM(
            pma.get_embedding_dimension(),
            hidden_dim=iem_hidden_dim,
            dropout=iem_dropout,
            cosine_residual=iem_cosine_residual,
            cosine_scale=iem_cosine_scale,
            default_task=default_task,
        )
        return cls(modules=[backbone, pma, iem], device=device, prompts=prompts)

    @property
    def backbone(self) -> LLMBackbone:
        return self[0]

    @property
    def pma(self) -> PMAPooling:
        return next(module for module in self if isinstance(module, PMAPooling))

    @property
    def iem(self) -> IEM:
        return self[-1]

    @property
    def default_task(self) -> Task:
        """The IEM branch :meth:`similarity`, :meth:`similarity_pairwise` and :meth:`rank` use when given no task.

        Stored in the IEM's config and saved with the model (folders saved before it existed load as
        ``"asymmetric"``). Set it to change the default, e.g. ``model.default_task = "symmetric"`` before
        running sentence-transformers' evaluators on STS pairs.
        """
        return self.iem.default_task

    @default_task.setter
    def default_task(self, task: Task) -> None:
        self.iem.default_task = check_task(task)

    @property
    def similarity_fn_name(self) -> str:
        """Always ``"iem"``: :meth:`similarity` and :meth:`similarity_pairwise` score with the IEM.

        sentence-transformers names metrics after it (``InformationRetrievalEvaluator`` reports
        ``iem_ndcg@10``, ...). It accepts only ``cosine`` / ``dot`` / ``euclidean`` / ``manhattan`` from
        other models; a D2LLM refuses them (``ValueError``): compare its embeddings with those functions
        directly (``sentence_transformers.util.cos_sim``), or name them in the evaluator
        (``similarity_fn_names=["cosine"]``, ``score_functions={"cosine": cos_sim}``).
        """
        return SIMILARITY_FN_NAME

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: Any) -> None:
        value = getattr(value, "value", value)  # a SimilarityFunction member
        if value not in (None, SIMILARITY_FN_NAME):
            raise ValueError(
                f"A D2LLM's similarity is its IEM, so similarity_fn_name is always {SIMILARITY_FN_NAME!r}; got "
                f"{value!r}. To compare its embeddings by {value} instead, apply sentence_transformers.util's "
                f"function to model.encode(...) output, or pass similarity_fn_names=[{value!r}] (score_functions= "
                "for InformationRetrievalEvaluator) to the evaluator."
            )
        # Marked as set, so loading does not restore the "cosine" that folders saved by older versions carry.
        self._similarity_fn_name = SIMILARITY_FN_NAME

    def similarity(
        self,
        embeddings1: torch.Tensor | np.ndarray | Sequence[torch.Tensor] | Sequence[np.ndarray],
        embeddings2: torch.Tensor | np.ndarray | Sequence[torch.Tensor] | Sequence[np.ndarray],
        task: Task | None = None,
    ) -> torch.Tensor:
        """IEM logits of every pair: ``[N1, d]`` x ``[N2, d]`` -> ``[N1, N2]``; higher = more relevant.

        sentence-transformers' own verb, so ``model.similarity(model.encode_query(queries),
        model.encode_document(documents))`` ranks by the IEM, and code written for any
        ``SentenceTransformer`` (``InformationRetrievalEvaluator``, ``mine_hard_negatives``, the model card's
        example) scores with it unchanged.

        Args:
            embeddings1: Queries (``asymmetric``) or first texts: ``[N1, d]`` or one ``[d]`` (a tensor, an
                array, or a list of vectors).
            embeddings2: Documents (``asymmetric``) or second texts: ``[N2, d]`` or ``[d]``.
            task: ``"asymmetric"`` (query -> document) or ``"symmetric"`` (NLI / STS); ``None`` (default):
                :attr:`default_task`.

        Returns:
            A float32 ``[N1, N2]`` tensor of IEM logits on the IEM's device; ``sigmoid`` of a logit is the
            emulated teacher ``P(yes)`` (:meth:`score`). Logits, not ``P(yes)``: the order is the same, but
            float32 rounds ``sigmoid(z)`` to exactly 1.0 above ``z`` ~ 17, which would turn a ranking into
            ties. Pairs are scored in blocks, so memory stays bounded for a large corpus; autograd records
            only when an input requires grad.
        """
        task = self.default_task if task is None else check_task(task)
        a = self._embedding_matrix(embeddings1, "embeddings1")
        b = self._embedding_matrix(embeddings2, "embeddings2")
        if not len(a) or not len(b):
            return torch.zeros(len(a), len(b), device=a.device)
        columns = min(len(b), self._pairs_per_block())
        rows = max(1, self._pairs_per_block() // columns)
        with self._grad_context(a, b):
            return torch.cat(
                [
                    torch.cat(
                        [
                            self.iem.pairwise_logits(a[i : i + rows], b[j : j + columns], task).float()
                            for j in range(0, len(b), columns)
                        ],
                        dim=1,
                    )
                    for i in range(0, len(a), rows)
                ]
            )

    def similarity_pairwise(
        self,
        embeddings1: torch.Tensor | np.ndarray | Sequence[torch.Tensor] | Sequence[np.ndarray],
        embeddings2: torch.Tensor | np.ndarray | Sequence[torch.Tensor] | Sequence[np.ndarray],
        task: Task | None = None,
    ) -> torch.Tensor:
        """IEM logits of row-wise pairs, ``embeddings1[i]`` with ``embeddings2[i]``: ``[N, d]`` x ``[N, d]`` -> ``[N]``.

        The row-wise counterpart of :meth:`similarity` (same arguments, same logits). ``task=None`` uses
        :attr:`default_task`.
        """
        task = self.default_task if task is None else check_task(task)
        a = self._embedding_matrix(embeddings1, "embeddings1")
        b = self._embedding_matrix(embeddings2, "embeddings2")
        if len(a) != len(b):
            raise ValueError(
                f"similarity_pairwise pairs row i of embeddings1 with row i of embeddings2, got {len(a)} and "
                f"{len(b)} rows; use similarity() to score every pair."
            )
        if not len(a):
            return torch.zeros(0, device=a.device)
        block = self._pairs_per_block()
        with self._grad_context(a, b):
            return torch.cat(
                [self.iem.logits(a[i : i + block], b[i : i + block], task).float() for i in range(0, len(a), block)]
            )

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        *,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        task: Task | None = None,
        apply_sigmoid: bool = True,
    ) -> list[dict[str, int | float | str]]:
        """Rank ``documents`` for one ``query`` by the IEM, like ``CrossEncoder.rank``.

        The query is encoded once (query prompt) and the documents once (document prompt; both with the
        symmetric prompt for ``task="symmetric"``), then scored with the IEM, as :meth:`predict` scores each
        ``(query, document)`` pair.

        Args:
            query: One text.
            documents: The texts to rank (an empty list gives ``[]``).
            top_k: Return only the best ``top_k``; ``None`` (default): all of them.
            return_documents: Add each document's text under ``"text"``.
            batch_size, show_progress_bar: Passed to the document encoding.
            task: ``"asymmetric"`` / ``"symmetric"``; ``None`` (default): :attr:`default_task`.
            apply_sigmoid: Report the emulated teacher ``P(yes)`` (default, like ``predict``) or the raw logit.

        Returns:
            ``[{"corpus_id": int, "score": float[, "text": str]}, ...]`` sorted by score, best first;
            ``corpus_id`` is the document's index in ``documents``. The order is by the logit (ties by
            ``corpus_id``), so documents whose ``P(yes)`` rounds to 1.0 in float32 still come in the model's order.
        """
        task = self.default_task if task is None else check_task(task)
        if not isinstance(query, str):
            raise TypeError(
                f"query must be one text (a str), got {type(query).__name__}; call rank once per query, or use "
                "similarity() on encode_query / encode_document output for many queries."
            )
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
            raise ValueError(f"top_k must be None (all documents) or an int >= 0, got {top_k!r}.")
        if not isinstance(documents, str) and not len(documents):
            return []
        documents = check_texts(documents, "documents")
        query_role, document_role = task_roles(task)
        query_embedding = self.encode_texts([query], query_role, batch_size=batch_size, show_progress_bar=False)
        document_embeddings = self.encode_texts(
            documents, document_role, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
        logits = self.similarity(query_embedding, document_embeddings, task)[0].cpu()
        scores = (logits.sigmoid() if apply_sigmoid else logits).tolist()
        by_logit = logits.tolist()
        order = sorted(range(len(documents)), key=lambda i: (-by_logit[i], i))[:top_k]
        return [
            {"corpus_id": i, "score": scores[i], **({"text": documents[i]} if return_documents else {})} for i in order
        ]

    def _embedding_matrix(self, embeddings: Any, name: str) -> torch.Tensor:
        """``[N, d]`` on the IEM's device from a tensor, an array or a list of vectors (one ``[d]`` -> ``[1, d]``)."""
        device = self.iem.symmetric.head.weight.device
        if isinstance(embeddings, (list, tuple)):
            vectors = [torch.as_tensor(vector, device=device) for vector in embeddings]
            matrix = torch.stack(vectors) if vectors else torch.zeros(0, self.iem.embedding_dim, device=device)
        else:
            matrix = torch.as_tensor(embeddings, device=device)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or matrix.shape[-1] != self.iem.embedding_dim:
            raise ValueError(
                f"{name} must be embeddings of this model's size, [N, {self.iem.embedding_dim}] or "
                f"[{self.iem.embedding_dim}], got shape {tuple(matrix.shape)}."
            )
        return matrix

    def _pairs_per_block(self) -> int:
        """How many pairs :meth:`similarity` scores at once (the IEM holds ~``2d + 3h`` floats per pair)."""
        return max(1, SIMILARITY_BLOCK_ELEMENTS // (2 * self.iem.embedding_dim + 3 * self.iem.hidden_dim))

    @staticmethod
    def _grad_context(*tensors: torch.Tensor) -> contextlib.AbstractContextManager:
        """Record autograd only when an input requires grad (an evaluator's scores need no graph)."""
        if torch.is_grad_enabled() and any(tensor.requires_grad for tensor in tensors):
            return contextlib.nullcontext()
        return torch.no_grad()

    def forward(self, input: dict[str, torch.Tensor] | Callable[[D2LLM], Any], **kwargs: Any) -> Any:
        """``SentenceTransformer.forward`` (backbone -> PMA -> IEM, which passes the embedding through); given a
        callable instead of features, returns ``input(self)``.

        The callable form is for training under ``DistributedDataParallel``: the wrapper tracks only the parameters
        used during its wrapped module's forward, but :class:`~d2llm_st.losses.D2LLMDistillLoss` scores pairs with
        the IEM outside the module chain, so it runs its whole computation as one forward call of the wrapper.
        """
        if callable(input):
            return input(self)
        return super().forward(input, **kwargs)

    @classmethod
    def for_inference(cls, model_name_or_path: str, **kwargs: Any) -> D2LLM:
        """Load a saved D2LLM to encode and score only, its LoRA adapter (if any) folded into the base weights.

        An unmerged adapter doubles a bf16 forward on the CPU (docs/cpu.md). The merged model no longer trains
        its LoRA and would save the full base weights: load with ``D2LLM(path)`` to train or re-save.
        ``kwargs`` go to ``D2LLM(model_name_or_path, **kwargs)`` (``device``, ...).
        """
        model = cls(model_name_or_path, **kwargs)
        merge_lora_adapters(model)
        return model

    def merge_lora(self) -> None:
        """Fold the LoRA adapter into the backbone weights (see :meth:`LLMBackbone.merge_lora`)."""
        self.backbone.merge_lora()

    def encode_texts(self, texts: Sequence[str], role: str, **kwargs: Any) -> torch.Tensor:
        """Encode texts as ``role`` (``query``, ``passage`` or ``symmetric``) into a tensor of embeddings."""
        texts = check_texts(texts)
        name = prompt_name(role)
        kwargs.setdefault("convert_to_tensor", True)
        return self.encode(texts, prompt_name=name if name in self.prompts else None, **kwargs)

    def score(
        self,
        query_embeddings: torch.Tensor | np.ndarray,
        passage_embeddings: torch.Tensor | np.ndarray,
        task: Task = "asymmetric",
        apply_sigmoid: bool = True,
    ) -> torch.Tensor:
        """Score precomputed embeddings with the IEM, no backbone pass.

        Shapes: one query ``[d]`` (or ``[1, d]``) against passages ``[N, d]`` gives ``[N]``;
        row-wise pairs ``[N, d]`` x ``[N, d]`` give ``[N]``; ``[Q, d]`` x ``[Q, N, d]`` gives ``[Q, N]``.

        Returns:
            A float32 tensor on the IEM's device. With ``apply_sigmoid=True`` (default) each value is
            the emulated teacher ``P(yes)`` in (0, 1): how likely the passage answers the query
            (``asymmetric``) or the two texts mean the same (``symmetric``). With ``False``, the raw logit:
            rank by it when logits can be large, since float32 rounds ``sigmoid(z)`` to 1.0 above ``z`` ~ 17.
        """
        check_task(task)
        device = self.iem.symmetric.head.weight.device
        queries = _as_embeddings(query_embeddings, "query_embeddings", device)
        passages = _as_embeddings(passage_embeddings, "passage_embeddings", device)
        if queries.ndim == 2 and queries.shape[0] == 1 and passages.ndim == 2:
            queries = queries[0]
        if queries.ndim == 1 and passages.ndim == 2:
            queries = queries[None, :]
        elif queries.ndim == 2 and passages.ndim == 2:
            if queries.shape[0] != passages.shape[0]:
                raise ValueError(
                    f"Row-wise scoring needs as many queries as passages, got {queries.shape[0]} and "
                    f"{passages.shape[0]}; pass one query [d] to score it against all passages."
                )
        elif queries.ndim == 2 and passages.ndim == 3 and queries.shape[0] == passages.shape[0]:
            queries = queries[:, None, :]
        else:
            raise ValueError(
                f"Cannot pair query_embeddings of shape {tuple(queries.shape)} with passage_embeddings of shape "
                f"{tuple(passages.shape)}: use [d] x [N, d], [N, d] x [N, d] or [Q, d] x [Q, N, d]."
            )
        if queries.shape[-1] != self.iem.embedding_dim or passages.shape[-1] != self.iem.embedding_dim:
            raise ValueError(
                f"Embeddings must have size {self.iem.embedding_dim} (this model's), got {queries.shape[-1]} "
                f"and {passages.shape[-1]}."
            )
        with torch.inference_mode():
            logits = self.iem.logits(queries, passages, task).float()
        return logits.sigmoid() if apply_sigmoid else logits

    def predict(
        self,
        pairs: Sequence[tuple[str, str] | list[str]],
        task: Task = "asymmetric",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        apply_sigmoid: bool = True,
    ) -> np.ndarray:
        """Score text pairs end to end (encode both sides, then the IEM), like ``CrossEncoder.predict``.

        ``asymmetric`` pairs are ``(query, passage)`` and use the query / passage prompts;
        ``symmetric`` pairs (NLI, STS) use the symmetric prompt for both texts.

        Returns:
            ``np.ndarray`` of shape ``[len(pairs)]``: the emulated teacher ``P(yes)`` per pair (or the
            raw logit with ``apply_sigmoid=False``).
        """
        check_task(task)
        if not isinstance(pairs, Sequence) or isinstance(pairs, (str, bytes)):
            raise TypeError(f"pairs must be a list of (text_a, text_b) pairs, got {type(pairs).__name__}.")
        if not pairs:
            raise ValueError("pairs is empty: pass at least one (text_a, text_b) pair.")
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"pairs[{i}] must be a (text_a, text_b) pair, got {pair!r}.")
        first = check_texts([pair[0] for pair in pairs], "pairs[:, 0]")
        second = check_texts([pair[1] for pair in pairs], "pairs[:, 1]")
        roles = task_roles(task)
        encode_kwargs = dict(batch_size=batch_size, show_progress_bar=show_progress_bar)
        a = self.encode_texts(first, roles[0], **encode_kwargs)
        b = self.encode_texts(second, roles[1], **encode_kwargs)
        return self.score(a, b, task=task, apply_sigmoid=apply_sigmoid).cpu().numpy()
