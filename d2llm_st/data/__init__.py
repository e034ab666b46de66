"""Distillation data: readers, training rows, hard-negative mining and false-negative filtering."""

from d2llm_st.data.readers import BEIRDataset, read_beir, read_nli, read_rows, read_sts

__all__ = ["BEIRDataset", "read_beir", "read_nli", "read_rows", "read_sts"]
