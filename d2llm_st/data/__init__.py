"""Distillation data: readers, training rows, hard-negative mining and false-negative filtering."""

from d2llm_st.data.distillation import build_distillation_dataset
from d2llm_st.data.false_negatives import DynamicFalseNegativeFilter
from d2llm_st.data.mining import mine_negative_ids, mine_negatives
from d2llm_st.data.pairs import LabelledPair, beir_pairs, nli_pairs, sts_pairs
from d2llm_st.data.readers import BEIRDataset, read_beir, read_nli, read_rows, read_sts

__all__ = [
    "DynamicFalseNegativeFilter",
    "build_distillation_dataset",
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
]
