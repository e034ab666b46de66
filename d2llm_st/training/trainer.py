"""``D2LLMTrainer``: sentence-transformers' trainer with checkpoints that hold what trains.

A checkpoint of :class:`~sentence_transformers.SentenceTransformerTrainer` is a full ``save_pretrained``
folder, so every one would carry the frozen base LLM (540 MB for SmolLM2-135M, gigabytes for larger LLMs).
Here an :class:`~d2llm_st.modules.LLMBackbone` saves its LoRA adapter and a reference to its base weights
instead (:attr:`~d2llm_st.modules.LLMBackbone.save_base_weights` ``= False``), unless those weights changed
(a trained or merged backbone); PMA, IEM and the optimizer state are saved as usual, and resuming reads the
base weights again from the reference.
"""

from __future__ import annotations

from sentence_transformers import SentenceTransformerTrainer

from d2llm_st.modules import LLMBackbone


class D2LLMTrainer(SentenceTransformerTrainer):
    """A ``SentenceTransformerTrainer`` whose checkpoints leave out unchanged base LLM weights."""

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        backbones = [module for module in self.model.modules() if isinstance(module, LLMBackbone)]
        previous = [backbone.save_base_weights for backbone in backbones]
        for backbone in backbones:
            backbone.save_base_weights = False
        try:
            super()._save(output_dir, state_dict=state_dict)
        finally:
            for backbone, setting in zip(backbones, previous):
                backbone.save_base_weights = setting
