"""Configuration of a ``d2llm distill`` run: dataclasses that round-trip to YAML / JSON.

One :class:`DistillConfig` holds everything a run needs (student, teacher, training data, loss weights,
false-negative filter, trainer settings, evaluation sets), so a run is reproduced from its saved
``distill_config.yaml`` alone. Unknown keys are errors that name the section and the valid keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from d2llm_st.model_paths import BUNDLED_SMOLLM2

MODES = ("distill", "baseline", "untrained")
DATASET_TYPES = {"sts": "symmetric", "nli": "symmetric", "beir": "asymmetric"}
EVAL_TYPES = ("sts", "nli", "answer_selection")


@dataclass
class StudentConfig:
    """The D2LLM student (see :meth:`d2llm_st.D2LLM.from_llm`); ``dtype`` e.g. ``bfloat16`` loads the LLM in it."""

    model: str = BUNDLED_SMOLLM2
    lora_r: int | None = 8
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str | None = None
    pma_heads: int = 8
    pma_seeds: int = 1
    pma_attention_scale: str = "head_dim"
    iem_hidden_dim: int = 512
    iem_dropout: float = 0.0
    iem_cosine_residual: bool = False
    iem_cosine_scale: float = 20.0
    max_seq_length: int = 128
    bidirectional_from_layer: int | None = None
    query_prompt: str | None = "Query: "
    passage_prompt: str | None = "Passage: "
    symmetric_prompt: str | None = "Text: "
    dtype: str | None = None


@dataclass
class TeacherConfig:
    """The teacher (see :func:`d2llm_st.teacher.load_teacher`); scores are cached in ``cache`` (SQLite).

    ``cache`` defaults to ``<output_dir>/teacher_scores.sqlite``; ``features`` asks for the teacher features
    that feature imitation needs.
    """

    model: str = BUNDLED_SMOLLM2
    kind: str = "auto"
    max_length: int | None = None
    dtype: str = "auto"
    batch_size: int = 16
    cache: str | None = None
    features: bool = True


@dataclass
class DatasetConfig:
    """One training set: ``type`` is ``sts`` / ``nli`` (symmetric task) or ``beir`` (asymmetric).

    ``path`` is a data file (sts, nli) or a BEIR folder (beir); ``limit`` caps the number of training rows;
    ``num_negatives`` is ``K``. ``builder`` holds further keyword arguments of the data builder
    (``d2llm_st.data.build_distillation_dataset``), e.g. the mining method.
    """

    name: str = ""
    type: str = "nli"
    path: str = ""
    split: str = "train"
    limit: int | None = None
    num_negatives: int = 3
    builder: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return DATASET_TYPES[self.type]


@dataclass
class LossConfig:
    """Weights and temperatures of :class:`~d2llm_st.losses.D2LLMDistillLoss` (defaults: the D2LLM code's).

    ``baseline_scale`` is the cosine scale of ``MultipleNegativesRankingLoss`` in ``mode="baseline"``
    (sentence-transformers' default 20), so a baseline can be given the student's ``iem_cosine_scale``.
    """

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.01
    eta: float = 0.001
    temperature: float = 1.0
    in_batch_temperature: float = 1.0
    in_batch_hard_negatives: bool = False
    easy_negative_score: float = 0.0
    word_level_weight: float = 0.1
    word_level_temperature: float = 0.1
    train_backbone: bool = False
    baseline_scale: float = 20.0


@dataclass
class FalseNegativeConfig:
    """Dynamic false-negative filtering: ``mode`` ``drop`` or ``to_positive``; the threshold is re-estimated
    every ``update_every_steps`` steps (or at each epoch end when ``None``). ``options`` go to the filter."""

    enabled: bool = True
    mode: str = "drop"
    update_every_steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingConfig:
    """Trainer settings; ``extra`` holds any other ``SentenceTransformerTrainingArguments`` field."""

    output_dir: str = "runs/distill"
    max_steps: int = -1
    num_train_epochs: float = 1.0
    batch_size: int = 8
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    bf16: bool = False
    fp16: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 50
    save_total_limit: int | None = 2
    logging_steps: int = 10
    seed: int = 42
    multi_dataset_batch_sampler: str = "proportional"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSetConfig:
    """One evaluation set: ``sts`` (Spearman), ``nli`` (AUC entailment vs contradiction) or
    ``answer_selection`` (NDCG@10 over each question's candidates of a BEIR folder with ``candidates/``).
    ``limit`` keeps a fixed random subset of that many pairs (sts, nli) or questions (answer_selection)."""

    name: str = ""
    type: str = "sts"
    path: str = ""
    split: str = "dev"
    limit: int | None = None


@dataclass
class EvaluationConfig:
    sets: list[EvalSetConfig] = field(default_factory=list)
    batch_size: int = 32


@dataclass
class DistillConfig:
    """A full ``d2llm distill`` run. ``mode``: ``distill`` (D2LLM losses), ``baseline`` (the same backbone with
    mean pooling and ``MultipleNegativesRankingLoss``, cosine scores) or ``untrained`` (evaluate only)."""

    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    datasets: list[DatasetConfig] = field(default_factory=list)
    loss: LossConfig = field(default_factory=LossConfig)
    false_negatives: FalseNegativeConfig = field(default_factory=FalseNegativeConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    mode: str = "distill"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}.")
        names = [dataset.name for dataset in self.datasets]
        for i, dataset in enumerate(self.datasets):
            if dataset.type not in DATASET_TYPES:
                raise ValueError(f"datasets[{i}].type must be one of {sorted(DATASET_TYPES)}, got {dataset.type!r}.")
            if not dataset.name or not dataset.path:
                raise ValueError(f"datasets[{i}] needs a name and a path.")
            if dataset.num_negatives < 1:
                raise ValueError(f"datasets[{i}].num_negatives must be >= 1, got {dataset.num_negatives}.")
        if len(set(names)) != len(names):
            raise ValueError(f"Dataset names must be unique, got {names}.")
        for i, eval_set in enumerate(self.evaluation.sets):
            if eval_set.type not in EVAL_TYPES:
                raise ValueError(f"evaluation.sets[{i}].type must be one of {EVAL_TYPES}, got {eval_set.type!r}.")
        if not 0 <= self.training.warmup_ratio < 1:
            raise ValueError(
                f"training.warmup_ratio is a fraction of the steps in [0, 1), got {self.training.warmup_ratio}."
            )
        if self.false_negatives.mode not in ("drop", "to_positive"):
            raise ValueError(
                f"false_negatives.mode must be 'drop' or 'to_positive', got {self.false_negatives.mode!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        return _build(cls, data, "config")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str) -> DistillConfig:
        return cls.from_dict(yaml.safe_load(text) or {})

    def save(self, path: str) -> None:
        """Write YAML (``.yaml`` / ``.yml``) or JSON (anything else)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            if path.endswith((".yaml", ".yml")):
                f.write(self.to_yaml())
            else:
                json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path: str) -> DistillConfig:
        """Read a YAML or JSON file (JSON is valid YAML)."""
        with open(path, encoding="utf-8") as f:
            return cls.from_yaml(f.read())

    def with_overrides(self, overrides: list[str]) -> DistillConfig:
        """A copy with ``section.key=value`` overrides applied (values parsed as YAML), e.g. ``loss.alpha=0``.

        List items are addressed by index or by name: ``datasets.snli.limit=100``.
        """
        data = self.to_dict()
        for override in overrides:
            key, sep, value = override.partition("=")
            if not sep:
                raise ValueError(f"Override {override!r} is not of the form section.key=value.")
            target, parts = data, key.split(".")
            for part in parts[:-1]:
                target = _child(target, part, key)
            if isinstance(target, dict) and parts[-1] not in target:
                raise ValueError(f"Override {override!r}: no key {parts[-1]!r} (valid: {sorted(target)}).")
            target[parts[-1]] = yaml.safe_load(value)
        return type(self).from_dict(data)


def _child(node: Any, part: str, key: str) -> Any:
    if isinstance(node, list):
        if part.isdigit():
            return node[int(part)]
        for item in node:
            if isinstance(item, dict) and item.get("name") == part:
                return item
        raise ValueError(f"Override {key!r}: no list item named {part!r}.")
    if part not in node:
        raise ValueError(f"Override {key!r}: no section {part!r} (valid: {sorted(node)}).")
    return node[part]


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from nested dicts, naming the section of any unknown key."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"{where} must be a mapping, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {where}; valid keys: {sorted(fields)}.")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, value or {}, f"{where}.{name}")
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            item_cls = typing.get_args(hint)[0]
            value = [_build(item_cls, item, f"{where}.{name}[{i}]") for i, item in enumerate(value or [])]
        kwargs[name] = value
    return cls(**kwargs)
