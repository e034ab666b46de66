"""Distillation data: readers, training rows, hard-negative mining and the one seeded subsample.

(The false-negative filter, which acts during training, is :mod:`d2llm_st.training.false_negatives`.)
"""

from d2llm_st.data.distillation import (
    build_distillation_dataset,
    distillation_rows_info,
    is_distillation_rows,
    load_distillation_rows,
    save_distillation_rows,
)
from d2llm_st.data.mining import mine_negative_ids, mine_negatives
from d2llm_st.data.pairs import LabelledPair, beir_pairs, nli_pairs, sts_pairs
from d2llm_st.data.readers import BEIRDataset, read_beir, read_nli, read_rows, read_sts
from d2llm_st.data.sampling import subsample

__all__ = [
    "build_distillation_dataset",
    "distillation_rows_info",
    "is_distillation_rows",
    "load_distillation_rows",
    "save_distillation_rows",
    "mine_negative_ids",
    "mine_negatives",
    "BEIRDataset",
    "LabelledPair",
    "beir_pairs",
    "nli_pairs",
    "read_beir",
    "read_nli",
    "read_rows",
    "read_sts",
    "sts_pairs",
    "subsample",
]
