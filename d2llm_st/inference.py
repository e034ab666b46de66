"""Low-latency reranking: one query against precomputed passage embeddings, with the query path as a CUDA graph.

D2LLM's online cost is one backbone pass over a short query plus a small IEM over ``N`` stored
passage embeddings. For a batch of one short text a GPU is bound by kernel launches, not by maths:
a 7B-shaped backbone issues hundreds of small kernels from Python. :class:`FastReranker` removes
that overhead with static shapes: the query is padded to a fixed length bucket, and the backbone +
PMA pass for each bucket is captured once as a ``torch.cuda.CUDAGraph`` and replayed per query.

Padding is exact, not an approximation: with a causal backbone, real tokens never attend to the
padding on their right, and PMA masks it out. A backbone with bidirectional layers (DeeLM) would
attend to it, so there each query length gets its own graph (no padding). On the CPU (or with
``cuda_graphs=False``) the same function runs eagerly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from d2llm_st.model import D2LLM
from d2llm_st.modules.backbone import merge_lora_adapters
from d2llm_st.tasks import Task, check_task, prompt_name, task_roles

logger = logging.getLogger(__name__)


class _CapturedPass:
    """Static buffers and one captured CUDA graph of ``forward`` for a padded query length and candidate count."""

    def __init__(self, forward, length: int, passages: torch.Tensor | None, pad_token_id: int, device) -> None:
        self.pad_token_id = pad_token_id
        self.input_ids = torch.full((1, length), pad_token_id, dtype=torch.long, device=device)
        self.attention_mask = torch.zeros((1, length), dtype=torch.long, device=device)
        self.passages = passages
        warmup_stream = torch.cuda.Stream(device)
        warmup_stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(warmup_stream):
            for _ in range(2):  # lets lazy initialisation (cuBLAS handles, workspaces) happen outside the capture
                forward(self.input_ids, self.attention_mask, self.passages)
        torch.cuda.current_stream(device).wait_stream(warmup_stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = forward(self.input_ids, self.attention_mask, self.passages)

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, passages: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        length = input_ids.shape[1]
        self.input_ids[:, length:] = self.pad_token_id
        self.attention_mask[:, length:] = 0
        self.input_ids[:, :length].copy_(input_ids)
        self.attention_mask[:, :length].copy_(attention_mask)
        if passages is not None:
            self.passages[: len(passages)].copy_(passages)  # rows past N keep stale values; their scores are dropped
        self.graph.replay()
        return self.outputs


class FastReranker:
    """Score one query against ``N`` precomputed passage embeddings, fast (``D2LLM.score`` semantics).

    Args:
        model: A D2LLM student, already on its device and dtype (e.g. ``model.to(torch.bfloat16)``).
        task: ``"asymmetric"`` (query -> passage; the query gets the ``query`` prompt) or ``"symmetric"``
            (the ``symmetric`` prompt).
        buckets: Padded query lengths in tokens; a query is padded to the smallest bucket that holds it.
            Longer queries (up to the model's ``max_seq_length``) get a bucket of their own length.
        cuda_graphs: Capture the query path as CUDA graphs; default: when the model is on a CUDA device.
        compile: Also ``torch.compile`` the query path (fewer, fused kernels inside the graph); compiling takes
            a while per bucket, on the first query of each.
        merge_lora: Fold the model's LoRA adapter into its weights first (default). An unmerged adapter adds
            two small matrix products, casts and an addition to every linear layer: about twice the time of
            the bare backbone on a CPU. The merged model scores the same (up to bf16 rounding) but no longer
            trains LoRA; pass ``False`` to keep the model as it is.

    With CUDA graphs, :meth:`score` captures backbone + PMA + IEM together, once per query-length bucket
    and candidate-count bucket (``N`` rounded up to a power of two, at least 16; the padded rows are
    scored and dropped). Capturing takes about a second for a 7B backbone, so warm up with one query of
    each shape before serving. One instance keeps static buffers and is not thread-safe: use one per worker.

    Example::

        reranker = FastReranker(model)
        passage_embeddings = model.encode_texts(passages, "passage")  # once, offline
        scores = reranker.score("what causes rain?", passage_embeddings)  # [N] P(yes), one backbone pass
    """

    def __init__(
        self,
        model: D2LLM,
        task: Task = "asymmetric",
        buckets: Sequence[int] = (16, 32, 48, 64, 96, 128, 192, 256),
        cuda_graphs: bool | None = None,
        compile: bool = False,
        merge_lora: bool = True,
    ) -> None:
        self.model = model.eval()
        if merge_lora and merge_lora_adapters(model):
            logger.info("FastReranker: merged the model's LoRA adapter into its weights (merge_lora=False keeps it).")
        self.task = check_task(task)
        self.device = next(model.parameters()).device
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda"
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs the model on a CUDA device; it is on {self.device}.")
        self.cuda_graphs = cuda_graphs
        self.buckets = sorted(int(b) for b in buckets)
        self.prompt = model.prompts.get(prompt_name(task_roles(task)[0])) or None
        backbone = model.backbone
        self.pad_token_id = backbone.tokenizer.pad_token_id
        # Causal layers never look right, so right padding cannot change real tokens' states.
        self.padding_is_exact = backbone.bidirectional_from_layer is None and backbone.padding_side == "right"
        self._graphs: dict[tuple[int, int], _CapturedPass] = {}
        self._forward_fn = torch.compile(self._forward, dynamic=False) if compile else self._forward

    def _forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, passages: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Backbone + PMA (+ IEM logits) for ``[1, L]`` ids; no host synchronisation, so it can be captured."""
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        # No mask to the backbone: the causal mask alone is exact for right padding (see module docstring),
        # and transformers' padding-mask checks would synchronise with the host inside a capture.
        output = self.model.backbone.auto_model(
            input_ids=input_ids, attention_mask=None, position_ids=position_ids, use_cache=False
        )
        embedding = self.model.pma.pool(output.last_hidden_state, attention_mask)
        logits = None if passages is None else self.model.iem.logits(embedding, passages, self.task).float()
        return embedding, logits

    def _bucket(self, length: int) -> int:
        if not self.padding_is_exact:
            return length
        return next((bucket for bucket in self.buckets if bucket >= length), length)

    def _run(self, query: str, passages: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}.")
        if not query.strip():
            raise ValueError(f"query is an empty text ({query!r}): give some text to score passages against.")
        features = self.model.backbone.preprocess([query], prompt=self.prompt)
        input_ids, attention_mask = features["input_ids"], features["attention_mask"]
        with torch.inference_mode():
            if not self.cuda_graphs:  # eager: no static shapes to keep, so no padding to compute
                return self._forward_fn(input_ids.to(self.device), attention_mask.to(self.device), passages)
            length = self._bucket(input_ids.shape[1])
            n_bucket = 0 if passages is None else max(16, 1 << (len(passages) - 1).bit_length())
            key = (length, n_bucket)
            if key not in self._graphs:
                logger.info(f"Capturing the query path as a CUDA graph: {length} tokens, {n_bucket} candidates.")
                static_passages = None
                if passages is not None:
                    static_passages = passages.new_zeros((n_bucket, passages.shape[1]))
                self._graphs[key] = _CapturedPass(
                    self._forward_fn, length, static_passages, self.pad_token_id, self.device
                )
            embedding, logits = self._graphs[key](input_ids, attention_mask, passages)
            return embedding.clone(), None if logits is None else logits[: len(passages)].clone()

    def encode_query(self, query: str) -> torch.Tensor:
        """The query's embedding ``[d]`` (equal to ``model.encode_texts([query], role)[0]``)."""
        return self._run(query, None)[0][0]

    def score(
        self, query: str, passage_embeddings: torch.Tensor | np.ndarray, apply_sigmoid: bool = True
    ) -> torch.Tensor:
        """IEM scores ``[N]`` of ``query`` against ``passage_embeddings`` ``[N, d]``, as :meth:`D2LLM.score` gives."""
        iem = self.model.iem
        passages = torch.as_tensor(passage_embeddings, device=self.device, dtype=iem.symmetric.head.weight.dtype)
        if passages.ndim != 2 or passages.shape[1] != iem.embedding_dim or not len(passages):
            raise ValueError(
                f"passage_embeddings must have shape [N, {iem.embedding_dim}] with N >= 1, got {tuple(passages.shape)}."
            )
        logits = self._run(query, passages)[1]
        return logits.sigmoid() if apply_sigmoid else logits
