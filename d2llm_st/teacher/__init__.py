"""Teachers: LLMs (or any CrossEncoder) that judge text pairs jointly, for D2LLM to distill from.

- :class:`LLMTeacher`: a causal LM asked a yes/no question; ``P(yes)`` is the score.
- :class:`CrossEncoderTeacher`: a sentence-transformers ``CrossEncoder`` behind the same interface.
- :class:`ScoreCache`: scores on disk, so scoring resumes after an interruption.
- :func:`finetune_teacher`: LoRA-tune a causal LM to answer yes / no on labelled pairs.
"""

from d2llm_st.teacher.base import PairAttention, Teacher, TeacherOutput
from d2llm_st.teacher.cache import ScoreCache
from d2llm_st.teacher.cross_encoder_teacher import CrossEncoderTeacher
from d2llm_st.teacher.finetune import TeacherTrainingConfig, finetune_teacher
from d2llm_st.teacher.llm_teacher import LLMTeacher
from d2llm_st.teacher.loading import load_teacher
from d2llm_st.teacher.templates import ASYMMETRIC_TEMPLATE, DEFAULT_TEMPLATES, SYMMETRIC_TEMPLATE, PromptTemplate

__all__ = [
    "ASYMMETRIC_TEMPLATE",
    "CrossEncoderTeacher",
    "DEFAULT_TEMPLATES",
    "LLMTeacher",
    "PairAttention",
    "PromptTemplate",
    "SYMMETRIC_TEMPLATE",
    "ScoreCache",
    "Teacher",
    "TeacherOutput",
    "TeacherTrainingConfig",
    "finetune_teacher",
    "load_teacher",
]
