"""D2LLM's training losses for sentence-transformers, one term per file.

:class:`D2LLMDistillLoss` combines them; the term functions work on plain tensors:

- :func:`in_batch_loss` (in_batch.py): contrastive over the B x B IEM score matrix.
- :func:`contrastive_imitation_loss` (contrastive_imitation.py): teacher-weighted contrastive over hard candidates.
- :func:`rank_correlation_loss`, :func:`rank_pairwise_loss` (rank_imitation.py): follow the teacher's order.
- :func:`feature_imitation_loss` (feature_imitation.py): match the teacher's feature Gram matrix.
- :func:`word_level_loss` (word_level.py): MD2PR token-level distillation of the teacher's attention.
"""

from d2llm_st.losses.contrastive_imitation import contrastive_imitation_loss
from d2llm_st.losses.d2llm_distill import D2LLMDistillLoss
from d2llm_st.losses.feature_imitation import feature_imitation_loss
from d2llm_st.losses.in_batch import in_batch_loss
from d2llm_st.losses.rank_imitation import rank_correlation_loss, rank_pairwise_loss
from d2llm_st.losses.word_level import word_level_loss

__all__ = [
    "D2LLMDistillLoss",
    "contrastive_imitation_loss",
    "feature_imitation_loss",
    "in_batch_loss",
    "rank_correlation_loss",
    "rank_pairwise_loss",
    "word_level_loss",
]
