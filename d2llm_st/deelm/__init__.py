"""DeeLM (BeLLM): find the turning-point layer of a decoder LLM for sentence similarity.

The bidirectional layers themselves are :func:`d2llm_st.modules.bidirectional.enable_bidirectional`.
"""

from d2llm_st.deelm.turning_point import (
    DEFAULT_PROMPT,
    LayerwiseSTS,
    find_turning_point,
    layerwise_cosines,
    pool,
    turning_point,
)

__all__ = ["DEFAULT_PROMPT", "LayerwiseSTS", "find_turning_point", "layerwise_cosines", "pool", "turning_point"]
