"""``D2LLMDistillLoss``: all of D2LLM's training terms as one sentence-transformers loss.

Like sentence-transformers' losses, it leaves the model alone: what trains is decided when the student is built
(``D2LLM.from_llm(..., train_backbone=False)`` freezes the base LLM; LoRA, PMA and IEM train). It reads
everything else from the batch: teacher scores (and features) in ``label``, the word-level alignment that
:class:`~d2llm_st.training.collator.D2LLMDataCollator` prepared; the false-negative filter it is given keeps its
own state (:mod:`d2llm_st.training.false_negatives`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from sentence_transformers.util import all_gather, all_gather_with_grad, get_rank, get_world_size
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from d2llm_st.losses.bucketing import embed_in_length_buckets
from d2llm_st.losses.contrastive_imitation import candidate_masks, contrastive_imitation_loss
from d2llm_st.losses.feature_imitation import feature_imitation_loss
from d2llm_st.losses.in_batch import in_batch_loss
from d2llm_st.losses.rank_imitation import rank_correlation_loss, rank_pairwise_loss
from d2llm_st.losses.word_level import ATTENTION_KEY, MASK_KEY, WORD_KEYS, word_level_loss
from d2llm_st.modules import IEM, LLMBackbone
from d2llm_st.tasks import TASKS, check_task

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


class FalseNegativeFilter(Protocol):
    """What the loss needs from a false-negative filter (see :mod:`d2llm_st.training.false_negatives`)."""

    mode: str

    def mask(self, negative_scores: np.ndarray) -> np.ndarray: ...

    def observe(self, positive_scores: np.ndarray) -> None: ...


def _module(model: nn.Module, cls: type) -> nn.Module:
    found = next((module for module in model.children() if isinstance(module, cls)), None)
    if found is None:
        raise ValueError(
            f"D2LLM losses need a model with a {cls.__name__} module (build it with D2LLM.from_llm); this model's "
            f"modules are {[type(module).__name__ for module in model.children()]}."
        )
    return found


def split_labels(labels: torch.Tensor, n_candidates: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``label`` -> (teacher scores ``[B, C]``, teacher features ``[B, C, H]`` or None).

    Accepts ``[B, C]`` scores, or ``[B, C, 1 + H]`` with each candidate's score followed by its features.
    """
    if labels is None:
        raise ValueError(
            "D2LLMDistillLoss needs teacher scores in the 'label' column: a list of 1 + K scores per row "
            "(positive first), or [1 + K][1 + H] with features; build it with d2llm_st.data."
        )
    if labels.ndim == 2 and labels.shape[1] == n_candidates:
        return labels.float(), None
    if labels.ndim == 3 and labels.shape[1] == n_candidates and labels.shape[2] >= 2:
        return labels[..., 0].float(), labels[..., 1:].float()
    raise ValueError(
        f"The label column must hold [{n_candidates}] teacher scores (positive, then {n_candidates - 1} negatives) "
        f"or [{n_candidates}][1 + H] scores with features per row; got a batch of shape {tuple(labels.shape)}."
    )


class D2LLMDistillLoss(nn.Module):
    def __init__(
        self,
        model: SentenceTransformer,
        task: str = "asymmetric",
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.01,
        eta: float = 0.001,
        temperature: float = 1.0,
        in_batch_temperature: float = 1.0,
        in_batch_hard_negatives: bool = False,
        easy_negative_score: float = 0.0,
        false_negative_filter: FalseNegativeFilter | None = None,
        word_level_weight: float = 0.1,
        word_level_temperature: float = 0.1,
        gather_across_devices: bool = False,
    ) -> None:
        """D2LLM's distillation loss: in-batch contrastive + contrastive, rank and feature imitation of an
        LLM teacher (+ optional word-level distillation), computed with the student's IEM.

        With ``z`` the student IEM logit, ``s`` the teacher ``P(yes)``, ``B`` anchors and ``K`` hard
        negatives per anchor (candidates ``c in {p, n_1..n_K}``)::

            L = L_in-batch + alpha L_CI + beta L_RI_a + gamma L_RI_b + eta L_FI (+ w L_word)

            L_in-batch = mean_i -log softmax_j(z(a_i, p_j) / tau_ib)[i]                      (B x B matrix)
                         (with ``in_batch_hard_negatives``: B x B(1 + K), every row's hard negatives too)
            L_CI       = mean_i -log softmax_c(z_ic w_ic / tau)[p],  w = s (positive), 1 - s (negatives)
            L_RI_a     = mean_i 1 - Pearson_c(z_ic, s_ic)
            L_RI_b     = mean_{i,k,j!=i} max(0, s_ik - s_easy) * -log sigmoid(z(a_i, n_ik) - z(a_i, p_j))
            L_FI       = mean_i || G(h_i) - G(f_i) ||_F^2,  G = cosine Gram over the 1 + K pairs of anchor i,
                         h = IEM hidden vectors, f = teacher features
            L_word     = mean KL(teacher attention || softmax_j cos(q_tok, p_tok_j) / tau_w)   (MD2PR)

        The teacher scores of in-batch (easy) negatives are not in the data, so ``s_easy`` is the constant
        ``easy_negative_score`` (0: a random in-batch text is irrelevant). A false-negative filter flags
        hard negatives whose teacher score looks like a positive's; flagged ones leave the CI / RI terms
        (``mode="drop"``) or join the positives of CI (``mode="to_positive"``). The loss returns each
        *weighted* term in a dict, so the trainer logs them separately and their sum is the total.

        The loss never changes which parameters train: that is decided when the student is built
        (``D2LLM.from_llm(..., train_backbone=False)``, the default, trains LoRA, PMA and IEM only).

        Args:
            model: A D2LLM student (LLMBackbone -> PMAPooling -> IEM).
            task: ``asymmetric`` (query -> passage) or ``symmetric`` (NLI / STS): the IEM branch; one loss per
                task, one task per batch (train several datasets with a dict of losses).
            alpha, beta, gamma, eta: Weights of CI, RI a, RI b and FI (defaults from the D2LLM code).
            temperature: ``tau`` of the CI softmax.
            in_batch_temperature: ``tau_ib`` of the in-batch softmax.
            in_batch_hard_negatives: Also put every row's hard negatives in the in-batch softmax, as
                ``MultipleNegativesRankingLoss`` does: ``B(1 + K)`` candidates per anchor instead of ``B``.
                An anchor's own hard negatives that the false-negative filter flags are left out of its row.
            easy_negative_score: ``s_easy``, the teacher score assumed for in-batch negatives in RI b.
            false_negative_filter: A :class:`~d2llm_st.training.false_negatives.DynamicFalseNegativeFilter` or
                ``None``; the loss hands it each batch's positive scores. Re-estimate its threshold during
                training with :class:`~d2llm_st.training.false_negatives.FalseNegativeFilterCallback`.
            word_level_weight: ``w``; 0 turns word-level distillation off. The term is computed for batches that
                carry the word-level alignment (collate with ``D2LLMDataCollator(word_alignment=...)``).
            word_level_temperature: ``tau_w`` of the student's token-similarity softmax.
            gather_across_devices: Under several processes (DDP: ``torchrun`` / ``accelerate launch``), score each
                anchor against the positives (and, with ``in_batch_hard_negatives``, the hard negatives) of *every*
                process's batch, gathered with an autograd-aware all-gather, as sentence-transformers'
                ``MultipleNegativesRankingLoss(gather_across_devices=True)`` does: the in-batch term and RI b then
                see ``N x B`` texts per anchor instead of ``B`` (``N`` processes of ``B`` rows), which is what one
                process with batch ``N x B`` computes. The per-row terms (CI, RI a, FI, word level) do not change.
                Every process must train on the same dataset at each step with the same batch size
                (:class:`~d2llm_st.training.trainer.D2LLMTrainer` arranges it; a mismatch is an error, not a hang).
                One process: no effect.

        References:
            - D2LLM: Liao et al., "D2LLM: Decomposed and Distilled Large Language Models for Semantic Search",
              ACL 2024, https://arxiv.org/abs/2406.17262
            - Word-level distillation and dynamic false-negative filtering: Li, Hai and Tang, "MD2PR: A
              Multi-level Distillation based Dense Passage Retrieval Model", https://arxiv.org/abs/2312.16821

        Requirements:
            1. A D2LLM model (backbone -> PMA -> IEM).
            2. Rows ``(anchor, positive, negative_1, ..., negative_K)`` with teacher scores in ``label``.
            3. Word-level: :class:`~d2llm_st.training.collator.D2LLMDataCollator` with a
               :class:`~d2llm_st.training.word_alignment.WordAlignment` (the teacher's attention, aligned).

        Inputs:
            +---------------------------------------------+------------------------------------------------------+
            | Texts                                       | Labels                                               |
            +=============================================+======================================================+
            | (anchor, positive, negative_1..negative_K)  | ``[s_p, s_n1, ..., s_nK]``                           |
            +---------------------------------------------+------------------------------------------------------+
            | (anchor, positive, negative_1..negative_K)  | ``[[s_p, *f_p], [s_n1, *f_n1], ...]`` (enables FI)   |
            +---------------------------------------------+------------------------------------------------------+

        Example:
            ::

                import d2llm_st
                from datasets import Dataset
                from sentence_transformers import SentenceTransformerTrainer
                from d2llm_st import D2LLM
                from d2llm_st.losses import D2LLMDistillLoss

                model = D2LLM.from_llm("HuggingFaceTB/SmolLM2-135M-Instruct", lora_r=8)
                train_dataset = Dataset.from_dict({
                    "anchor": ["what is the capital of france?"],
                    "positive": ["Paris is the capital of France."],
                    "negative_1": ["Berlin is the capital of Germany."],
                    "label": [[0.97, 0.05]],  # teacher P(yes) of (anchor, positive), (anchor, negative_1)
                })
                loss = D2LLMDistillLoss(model, task="asymmetric")
                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__()
        self.model = model
        self.task = check_task(task)
        for name, value in (("temperature", temperature), ("in_batch_temperature", in_batch_temperature)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}.")
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("eta", eta)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        if word_level_weight < 0 or not word_level_temperature > 0:
            raise ValueError("word_level_weight must be >= 0 and word_level_temperature > 0.")
        self.alpha, self.beta, self.gamma, self.eta = alpha, beta, gamma, eta
        self.temperature = temperature
        self.in_batch_temperature = in_batch_temperature
        self.in_batch_hard_negatives = in_batch_hard_negatives
        self.easy_negative_score = easy_negative_score
        self.false_negative_filter = false_negative_filter
        self.word_level_weight = word_level_weight
        self.word_level_temperature = word_level_temperature
        self.gather_across_devices = gather_across_devices
        self.iem: IEM = _module(model, IEM)
        self.backbone: LLMBackbone = _module(model, LLMBackbone)
        self._warned_no_features = self._warned_no_alignment = False

    def _embed(
        self, model: nn.Module, sentence_features: list[dict[str, Any]], word_level: bool
    ) -> tuple[dict, torch.Tensor, dict | None]:
        """Anchor output (with ``sentence_embedding``), candidate embeddings ``[B, C, d]``, and with word-level
        distillation the positive's output (its token states; ``None`` otherwise).

        Texts are embedded in length buckets (:mod:`d2llm_st.losses.bucketing`); the anchor and the positive
        keep a forward pass of their own when word-level distillation needs their token states.
        """

        def model_inputs(features: dict) -> dict:
            return {key: value for key, value in features.items() if key not in WORD_KEYS}

        columns = [model_inputs(features) for features in sentence_features]
        batch = len(columns[0]["input_ids"])
        tokenizer = self.backbone.tokenizer
        bucketed = columns
        anchor = positive = None
        if word_level:
            anchor, positive = model(columns[0]), model(columns[1])
            bucketed = columns[2:]
        embeddings = (
            embed_in_length_buckets(model, bucketed, batch, tokenizer.pad_token_id, tokenizer.padding_side)
            if bucketed
            else []
        )
        if anchor is None:
            anchor, embeddings = {"sentence_embedding": embeddings[0]}, embeddings[1:]
        else:
            embeddings = [positive["sentence_embedding"], *embeddings]
        return anchor, torch.stack(embeddings, dim=1), positive

    def _false_negatives(self, teacher_scores: torch.Tensor) -> torch.Tensor | None:
        """``[B, K]`` bool: hard negatives the filter flags as false negatives (None without a filter)."""
        if self.false_negative_filter is None:
            return None
        self.false_negative_filter.observe(teacher_scores[:, 0].detach().cpu().numpy())
        if teacher_scores.shape[1] < 2:
            return None
        flagged = self.false_negative_filter.mask(teacher_scores[:, 1:].detach().cpu().numpy())
        return torch.as_tensor(np.asarray(flagged, dtype=bool), device=teacher_scores.device)

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's ``tensor`` concatenated along the rows in rank order (this process's part keeps its
        autograd graph, so gradients flow back to the process that computed it); ``tensor`` itself without a
        process group."""
        if not self.gather_across_devices or get_world_size() == 1:
            return tensor
        return all_gather_with_grad(tensor.contiguous())

    def _check_same_step(self, candidates: torch.Tensor) -> None:
        """Before gathering: every process holds a batch of the same shape and task (else a clear error on all of
        them, where the all-gather of different shapes would fail obscurely or hang)."""
        if not self.gather_across_devices or get_world_size() == 1:
            return
        batch, n_candidates, dim = candidates.shape
        mine = torch.tensor([batch, n_candidates, dim, TASKS.index(self.task)], device=candidates.device)
        shapes = all_gather(mine).reshape(-1, 4).tolist()
        if any(shape != shapes[0] for shape in shapes):
            described = "; ".join(
                f"rank {rank}: {b} rows x {c} candidates ({TASKS[t]})" for rank, (b, c, _, t) in enumerate(shapes)
            )
            raise ValueError(
                "gather_across_devices needs every process to train on the same dataset with the same batch size at "
                f"each step, but this step has {described}. Train with d2llm_st.training.D2LLMTrainer (its "
                "multi-dataset sampler gives all processes one dataset per step) and dataloader_drop_last=True."
            )

    def _in_batch_matrix(
        self,
        positive_logits: torch.Tensor,
        anchors: torch.Tensor,
        candidates: torch.Tensor,
        false_negatives: torch.Tensor | None,
        offset: int,
    ) -> torch.Tensor:
        """``[B, N]`` anchor x in-batch positive logits (``N = B``, or ``N = W x B`` gathered from ``W``
        processes), or with ``in_batch_hard_negatives`` ``[B, N(1 + K)]``: the positives first, then every in-batch
        row's hard negatives (an anchor's own flagged false negatives, rows ``offset + i``, masked out)."""
        if not self.in_batch_hard_negatives or candidates.shape[1] < 2:
            return positive_logits
        batch, n_negatives = candidates.shape[0], candidates.shape[1] - 1
        negatives = self._gather(candidates[:, 1:])  # [N, K, d]
        rows = negatives.shape[0]
        negative_logits = self.iem.pairwise_logits(anchors, negatives.reshape(rows * n_negatives, -1), self.task)
        if false_negatives is not None:
            own = torch.zeros(batch, rows, n_negatives, dtype=torch.bool, device=negative_logits.device)
            own[torch.arange(batch), offset + torch.arange(batch)] = false_negatives
            negative_logits = negative_logits.masked_fill(own.reshape(batch, -1), float("-inf"))
        return torch.cat([positive_logits, negative_logits], dim=1)

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        sentence_features = list(sentence_features)
        if isinstance(self.model, DistributedDataParallel):
            # DDP (the trainer puts its wrapper in self.model) sees only what runs inside the wrapped module's
            # forward, but the IEM scores pairs outside it: its parameters would look unused and then get a
            # gradient twice. So the whole loss runs inside one forward call of the wrapper (D2LLM.forward runs a
            # callable it is given with the model itself).
            from d2llm_st.model import D2LLM

            if not isinstance(self.model.module, D2LLM):
                raise TypeError(
                    "D2LLMDistillLoss under DistributedDataParallel needs a D2LLM model (D2LLM.from_llm or "
                    f"D2LLM(path)), not a {type(self.model.module).__name__}."
                )
            return self.model(functools.partial(self._terms, sentence_features=sentence_features, labels=labels))
        return self._terms(self.model, sentence_features, labels)

    def _terms(
        self, model: nn.Module, sentence_features: list[dict[str, Any]], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The weighted terms, embedding the texts with ``model`` (the D2LLM itself, never a DDP wrapper)."""
        if len(sentence_features) < 2:
            raise ValueError(
                "D2LLMDistillLoss needs (anchor, positive, negative_1..negative_K) columns, got "
                f"{len(sentence_features)}."
            )
        n_candidates = len(sentence_features) - 1
        teacher_scores, teacher_features = split_labels(labels, n_candidates)
        alignment = sentence_features[0].get(ATTENTION_KEY), sentence_features[1].get(MASK_KEY)
        word_level = bool(self.word_level_weight) and None not in alignment
        anchor, candidates, positive = self._embed(model, sentence_features, word_level)
        anchors = anchor["sentence_embedding"]
        logits, hidden = self.iem.logits(anchors[:, None, :], candidates, self.task, return_hidden=True)
        self._check_same_step(candidates)
        # In-batch positives: this batch's, or every process's (this process's rows start at `offset`).
        positives = candidates[:, 0]
        in_batch_positives = self._gather(positives)
        offset = get_rank() * anchors.shape[0] if in_batch_positives is not positives else 0
        in_batch_logits = self.iem.pairwise_logits(anchors, in_batch_positives, self.task)

        false_negatives = self._false_negatives(teacher_scores)
        to_positive = getattr(self.false_negative_filter, "mode", "drop") == "to_positive"
        positive_mask, valid_mask = candidate_masks(logits.shape, logits.device, false_negatives, to_positive)

        in_batch_matrix = self._in_batch_matrix(in_batch_logits, anchors, candidates, false_negatives, offset)
        terms = {"in_batch": in_batch_loss(in_batch_matrix, self.in_batch_temperature, offset)}
        if n_candidates > 1:
            if self.alpha:
                terms["contrastive_imitation"] = self.alpha * contrastive_imitation_loss(
                    logits, teacher_scores, self.temperature, positive_mask, valid_mask
                )
            if self.beta:
                terms["rank_imitation_pearson"] = self.beta * rank_correlation_loss(logits, teacher_scores, valid_mask)
            if self.gamma and in_batch_logits.shape[1] > 1:
                batch, columns = in_batch_logits.shape
                others = torch.ones(batch, columns, dtype=torch.bool, device=logits.device)
                others[torch.arange(batch), offset + torch.arange(batch)] = False  # not the anchor's own positive
                terms["rank_imitation_pairwise"] = self.gamma * rank_pairwise_loss(
                    logits[:, 1:],
                    in_batch_logits[others].reshape(batch, columns - 1),
                    teacher_scores[:, 1:],
                    self.easy_negative_score,
                    hard_mask=valid_mask[:, 1:],
                )
        if self.eta:
            if teacher_features is not None:
                terms["feature_imitation"] = self.eta * feature_imitation_loss(hidden, teacher_features)
            elif not self._warned_no_features:
                logger.warning("eta > 0 but the labels hold no teacher features: feature imitation is skipped.")
                self._warned_no_features = True
        if word_level:
            attention, passage_mask = alignment
            terms["word_level"] = self.word_level_weight * word_level_loss(
                anchor["token_embeddings"],
                positive["token_embeddings"],
                attention,
                passage_mask.bool() & positive["attention_mask"].bool(),
                self.word_level_temperature,
            )
        elif self.word_level_weight and not self._warned_no_alignment:
            logger.warning(
                "word_level_weight > 0 but the batch holds no word-level alignment: word-level distillation is "
                "skipped. Collate with d2llm_st.training.D2LLMDataCollator(word_alignment=WordAlignment(teacher, "
                "...)) to train it, or set word_level_weight=0."
            )
            self._warned_no_alignment = True
        return terms

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "eta": self.eta,
            "temperature": self.temperature,
            "in_batch_temperature": self.in_batch_temperature,
            "in_batch_hard_negatives": self.in_batch_hard_negatives,
            "easy_negative_score": self.easy_negative_score,
            "false_negative_filter": None
            if self.false_negative_filter is None
            else getattr(self.false_negative_filter, "mode", type(self.false_negative_filter).__name__),
            "word_level_weight": self.word_level_weight,
            "word_level_temperature": self.word_level_temperature,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{liao2024d2llm,
    title = {{D2LLM}: Decomposed and Distilled Large Language Models for Semantic Search},
    author = {Liao, Zihan and Yu, Hang and Li, Jianguo and Wang, Jun and Zhang, Wei},
    booktitle = {Proceedings of the 62nd Annual Meeting of the Association for Computational Linguistics},
    year = {2024},
    url = {https://arxiv.org/abs/2406.17262},
}
"""
