"""Configuration of a ``d2llm distill`` run: dataclasses that round-trip to YAML / JSON.

One :class:`DistillConfig` holds everything a run needs (student, teacher, training data, loss weights,
false-negative filter, trainer settings, evaluation sets), so a run is reproduced from its saved
``distill_config.yaml`` alone. Unknown keys are errors that name the section and the valid keys; every value is
coerced to its field's declared type (YAML reads ``1e-3`` as a string, ``--set`` values too) or rejected with the
key's full name, and :meth:`DistillConfig.validate` range-checks counts, steps, rates and sizes, so a mistake is
reported before any data is built or model loaded.

Sections are the constructors' own keyword arguments, with the same names and defaults (a test checks them
against the signatures), so there is no mapping to drift:

- ``student``: ``D2LLM.from_llm(**student)``;
- ``loss``: ``D2LLMDistillLoss(model, task=..., false_negative_filter=..., **loss)`` (the task comes from each
  dataset, the filter from ``false_negatives``);
- ``baseline``: ``MultipleNegativesRankingLoss(model, **baseline)`` in ``mode: baseline``;
- ``training``: ``SentenceTransformerTrainingArguments(**training)`` (its own field names; ``extra`` holds any
  other field of it);
- ``evaluation.sets[]``: ``d2llm_st.evaluation.build_evaluator(**eval_set)``.

Keys renamed when the sections became the signatures (:data:`RENAMED`) are refused with their new name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from d2llm_st.errors import UserError
from d2llm_st.model_paths import BUNDLED_SMOLLM2, resolve_model_path
from d2llm_st.tasks import check_dataset_kind, check_eval_type, check_task, dataset_task

MODES = ("distill", "baseline", "untrained")
BASELINE_NEEDS_LORA = (
    "mode='baseline' needs student.lora_r (or student.train_backbone): mean pooling has no weights, so with a frozen "
    "backbone nothing would train. Set student.lora_r (the distilled student should use the same)."
)
TEACHER_HINT = (
    "Fine-tune a teacher with `d2llm teacher-train ... --output DIR` and set teacher.model to DIR, or use "
    "teacher.model=bundled:smollm2 for the zero-shot SmolLM2 teacher."
)
TEACHER_KINDS = ("auto", "llm", "cross-encoder")
BATCH_SAMPLERS = ("proportional", "round_robin")
PMA_ATTENTION_SCALES = ("head_dim", "model_dim")
DTYPES = ("auto", "float32", "bfloat16", "float16")
RULES = {
    "count": (lambda value: value >= 1, ">= 1"),
    "positive": (lambda value: value > 0, "> 0"),
    "non_negative": (lambda value: value >= 0, ">= 0"),
    "fraction": (lambda value: 0 <= value < 1, "in [0, 1)"),
    "probability": (lambda value: 0 <= value <= 1, "in [0, 1]"),
    "warmup": (
        lambda value: value >= 0 and (value < 1 or float(value).is_integer()),
        "a fraction of the steps in [0, 1) or a whole number of steps",
    ),
}
"""The ranges :meth:`DistillConfig.validate` checks: name -> (test, how to say it)."""

RENAMED = {
    "student.model": "student.model_name_or_path",
    "student.dtype": "student.model_kwargs (e.g. model_kwargs: {dtype: bfloat16})",
    "loss.train_backbone": "student.train_backbone (what trains is decided when the student is built)",
    "loss.baseline_scale": "baseline.scale",
    "training.batch_size": "training.per_device_train_batch_size",
    "training.warmup_ratio": "training.warmup_steps (a value below 1 is a fraction of the steps, as in transformers 5)",
}
"""Keys of older configs -> their names now (the sections are the constructors' own argument names)."""

EVAL_SET_COUNTS = ("limit", "candidate_k", "max_corpus")


@dataclass
class StudentConfig:
    """The ``student`` section: the keyword arguments of :meth:`d2llm_st.D2LLM.from_llm`, with its defaults
    (``model_name_or_path`` defaults to ``bundled:smollm2``); the student is ``D2LLM.from_llm(**student)``.

    ``model_kwargs`` go to ``AutoModel.from_pretrained`` (``{dtype: bfloat16}`` loads the LLM in bfloat16);
    ``train_backbone`` also trains the base LLM weights (LoRA, PMA and IEM always train).
    """

    model_name_or_path: str = BUNDLED_SMOLLM2
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str | None = None
    pma_heads: int = 8
    pma_seeds: int = 1
    pma_output_dim: int | None = None
    pma_attention_scale: str = "head_dim"
    iem_hidden_dim: int = 512
    iem_dropout: float = 0.0
    iem_cosine_residual: bool = False
    iem_cosine_scale: float = 20.0
    max_seq_length: int = 512
    padding_side: str = "right"
    bidirectional_from_layer: int | None = None
    query_prompt: str | None = None
    passage_prompt: str | None = None
    symmetric_prompt: str | None = None
    default_task: str = "asymmetric"
    train_backbone: bool = False
    model_kwargs: dict[str, Any] | None = None
    device: str | None = None


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
        return dataset_task(self.type)


@dataclass
class LossConfig:
    """The ``loss`` section: the keyword arguments of :class:`~d2llm_st.losses.D2LLMDistillLoss` with its
    defaults (the D2LLM code's), less ``task`` (each dataset's) and ``false_negative_filter`` (``false_negatives``).

    ``gather_across_devices`` matters under several processes only (docs/scaling.md): the in-batch term then scores
    each anchor against the positives of every process's batch.
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
    gather_across_devices: bool = False


@dataclass
class BaselineConfig:
    """The ``baseline`` section (``mode: baseline``): keyword arguments of sentence-transformers'
    ``MultipleNegativesRankingLoss``. ``scale`` is its cosine scale (default 20), so a baseline can be given the
    student's ``iem_cosine_scale``. ``gather_across_devices`` (several processes only) ranks each anchor against the
    candidates of every process's batch."""

    scale: float = 20.0
    gather_across_devices: bool = False


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
    """The ``training`` section: fields of ``SentenceTransformerTrainingArguments`` under their own names (d2llm's
    defaults), passed to it as they are; ``extra`` holds any other of its fields.

    ``warmup_steps`` below 1 is a fraction of the steps (transformers 5 folded ``warmup_ratio`` into it).
    ``bf16`` / ``fp16`` apply where a CUDA device supports them. The run sets ``save_strategy="steps"``,
    ``data_seed=seed``, the no-duplicates batch sampler, the column prompts, ``report_to="none"`` and
    ``eval_strategy="no"`` itself (``extra`` may override them).
    """

    output_dir: str = "runs/distill"
    max_steps: int = -1
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 8
    learning_rate: float = 1e-4
    warmup_steps: float = 0.1
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
    """One evaluation set: the arguments of :func:`d2llm_st.evaluation.build_evaluator` (the evaluator is
    ``build_evaluator(**eval_set)``). ``type``: ``sts`` (Spearman), ``nli`` (AUC of entailment vs contradiction),
    ``ir`` (NDCG@10 of retrieve-then-rerank over a BEIR corpus) or ``answer-selection`` (NDCG@10 over each
    question's candidates of a BEIR folder with ``candidates/``). ``limit`` keeps a fixed random subset of that many
    pairs (sts, nli), queries (ir) or questions (answer-selection); ``candidate_k`` and ``max_corpus`` are for
    ``ir``; ``threshold`` (``nli``: a score threshold chosen on another split) adds ``accuracy_at_threshold``."""

    name: str = ""
    type: str = "sts"
    path: str = ""
    split: str = "dev"
    limit: int | None = None
    candidate_k: int = 100
    max_corpus: int | None = None
    threshold: float | None = None


@dataclass
class EvaluationConfig:
    """The ``evaluation`` section: the eval sets (:class:`EvalSetConfig`) and their batch size."""

    sets: list[EvalSetConfig] = field(default_factory=list)
    batch_size: int = 32


@dataclass
class DistillConfig:
    """A full ``d2llm distill`` run. ``mode``: ``distill`` (D2LLM losses), ``baseline`` (the same backbone with
    mean pooling and ``MultipleNegativesRankingLoss``, cosine scores) or ``untrained`` (evaluate only).

    Each section's keys and defaults are those of the constructor it feeds (see the module docstring)."""

    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    datasets: list[DatasetConfig] = field(default_factory=list)
    loss: LossConfig = field(default_factory=LossConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    false_negatives: FalseNegativeConfig = field(default_factory=FalseNegativeConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    mode: str = "distill"

    def __post_init__(self) -> None:
        _coerce_fields(self, "")
        self.validate()

    def validate(self) -> None:
        """Check choices and ranges (``__post_init__`` has coerced the types first); raise a
        :class:`~d2llm_st.errors.UserError` naming the key."""
        if self.mode not in MODES:
            raise UserError(f"mode must be one of {MODES}, got {self.mode!r}.")
        names = [dataset.name for dataset in self.datasets]
        for i, dataset in enumerate(self.datasets):
            _keyed(f"datasets[{i}].type", check_dataset_kind, dataset.type)
            if not dataset.name or not dataset.path:
                raise UserError(f"datasets[{i}] needs a name and a path.")
        if len(set(names)) != len(names):
            raise UserError(f"Dataset names must be unique, got {names}.")
        for i, eval_set in enumerate(self.evaluation.sets):
            _keyed(f"evaluation.sets[{i}].type", check_eval_type, eval_set.type)
            if not eval_set.name or not eval_set.path:
                raise UserError(f"evaluation.sets[{i}] needs a name and a path.")
        student = self.student
        _keyed("student.default_task", check_task, student.default_task)
        for key, value, choices in (
            ("teacher.kind", self.teacher.kind, TEACHER_KINDS),
            ("student.pma_attention_scale", student.pma_attention_scale, PMA_ATTENTION_SCALES),
            ("student.padding_side", student.padding_side, ("right", "left")),
        ):
            if value not in choices:
                raise UserError(f"{key} must be one of {choices}, got {value!r}.")
        dtype = (student.model_kwargs or {}).get("dtype")
        if dtype is not None and dtype not in DTYPES:
            raise UserError(f"student.model_kwargs.dtype must be one of {DTYPES}, got {dtype!r}.")
        if self.false_negatives.mode not in ("drop", "to_positive"):
            raise UserError(f"false_negatives.mode must be 'drop' or 'to_positive', got {self.false_negatives.mode!r}.")
        if self.training.multi_dataset_batch_sampler not in BATCH_SAMPLERS:
            raise UserError(
                f"training.multi_dataset_batch_sampler must be one of {BATCH_SAMPLERS}, "
                f"got {self.training.multi_dataset_batch_sampler!r}."
            )
        if self.training.max_steps != -1 and self.training.max_steps < 1:
            raise UserError(
                f"training.max_steps must be -1 (train for num_train_epochs) or >= 1, got {self.training.max_steps}."
            )
        for key, value, rule in self._ranges():
            holds, text = RULES[rule]
            if value is not None and not holds(value):
                raise UserError(f"{key} must be {text}, got {value}.")

    def check_inputs(self, build_data: bool = True, load_teacher: bool = True) -> None:
        """Fail before any loading when a data path does not exist or a model name does not resolve.

        Args:
            build_data: The training sets will be built from ``datasets`` (not given ready-made); those whose
                ``path`` holds rows saved by ``d2llm mine`` need no teacher.
            load_teacher: The teacher will be loaded from ``teacher.model`` (not given loaded).

        Raises:
            FileNotFoundError: naming the key of a missing data path.
            UserError: a baseline with nothing to train, or a model name that is neither a folder here nor a
                reachable hub id (see :func:`~d2llm_st.model_paths.resolve_model_path`).
        """
        if self.mode == "baseline" and self.student.lora_r is None and not self.student.train_backbone:
            raise UserError(BASELINE_NEEDS_LORA)
        keyed = [(f"evaluation.sets[{i}].path", s.path) for i, s in enumerate(self.evaluation.sets)]
        if build_data and self.mode != "untrained":
            keyed = [(f"datasets[{i}].path", d.path) for i, d in enumerate(self.datasets)] + keyed
        for key, path in keyed:
            if not os.path.exists(path):
                raise FileNotFoundError(f"{key}: no such file or folder: {path}")
        resolve_model_path(self.student.model_name_or_path, "student.model_name_or_path")
        from d2llm_st.data.distillation import is_distillation_rows

        word_level = self.mode == "distill" and self.loss.word_level_weight > 0
        raw_data = build_data and any(not is_distillation_rows(dataset.path) for dataset in self.datasets)
        if load_teacher and self.mode != "untrained" and (raw_data or word_level):
            try:
                resolve_model_path(self.teacher.model, "teacher.model")
            except FileNotFoundError as error:
                raise FileNotFoundError(f"{error} {TEACHER_HINT}") from error
            except UserError as error:
                raise UserError(f"{error} {TEACHER_HINT}") from error

    def _ranges(self) -> list[tuple[str, float | None, str]]:
        """``(key, value, rule name in RULES)`` for every bounded number; ``None`` (not set) is always allowed."""
        student, teacher, loss, training = self.student, self.teacher, self.loss, self.training
        ranges = [
            ("student.lora_r", student.lora_r, "count"),
            ("student.lora_alpha", student.lora_alpha, "positive"),
            ("student.lora_dropout", student.lora_dropout, "fraction"),
            ("student.pma_heads", student.pma_heads, "count"),
            ("student.pma_seeds", student.pma_seeds, "count"),
            ("student.pma_output_dim", student.pma_output_dim, "count"),
            ("student.iem_hidden_dim", student.iem_hidden_dim, "count"),
            ("student.iem_dropout", student.iem_dropout, "fraction"),
            ("student.max_seq_length", student.max_seq_length, "count"),
            ("student.bidirectional_from_layer", student.bidirectional_from_layer, "non_negative"),
            ("teacher.max_length", teacher.max_length, "count"),
            ("teacher.batch_size", teacher.batch_size, "count"),
            ("loss.alpha", loss.alpha, "non_negative"),
            ("loss.beta", loss.beta, "non_negative"),
            ("loss.gamma", loss.gamma, "non_negative"),
            ("loss.eta", loss.eta, "non_negative"),
            ("loss.temperature", loss.temperature, "positive"),
            ("loss.in_batch_temperature", loss.in_batch_temperature, "positive"),
            ("loss.easy_negative_score", loss.easy_negative_score, "probability"),
            ("loss.word_level_weight", loss.word_level_weight, "non_negative"),
            ("loss.word_level_temperature", loss.word_level_temperature, "positive"),
            ("baseline.scale", self.baseline.scale, "positive"),
            ("false_negatives.update_every_steps", self.false_negatives.update_every_steps, "count"),
            ("training.num_train_epochs", training.num_train_epochs, "positive"),
            ("training.per_device_train_batch_size", training.per_device_train_batch_size, "count"),
            ("training.learning_rate", training.learning_rate, "positive"),
            ("training.warmup_steps", training.warmup_steps, "warmup"),
            ("training.weight_decay", training.weight_decay, "non_negative"),
            ("training.max_grad_norm", training.max_grad_norm, "non_negative"),
            ("training.save_steps", training.save_steps, "count"),
            ("training.save_total_limit", training.save_total_limit, "count"),
            ("training.logging_steps", training.logging_steps, "count"),
            ("evaluation.batch_size", self.evaluation.batch_size, "count"),
        ]
        for i, dataset in enumerate(self.datasets):
            ranges += [(f"datasets[{i}].limit", dataset.limit, "count")]
            ranges += [(f"datasets[{i}].num_negatives", dataset.num_negatives, "count")]
        for i, eval_set in enumerate(self.evaluation.sets):
            ranges += [(f"evaluation.sets[{i}].{key}", getattr(eval_set, key), "count") for key in EVAL_SET_COUNTS]
        return ranges

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
        """Read a YAML or JSON file (JSON is valid YAML); a syntax error names the file and line."""
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            return cls.from_yaml(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else path
            problem = getattr(error, "problem", None) or str(error)
            raise UserError(f"{where}: not valid YAML ({problem}).") from error

    def with_overrides(self, overrides: list[str]) -> DistillConfig:
        """A copy with ``section.key=value`` overrides applied (values parsed as YAML), e.g. ``loss.alpha=0``.

        List items are addressed by index or by name: ``datasets.snli.limit=100``.
        """
        data = self.to_dict()
        for override in overrides:
            key, sep, value = override.partition("=")
            if not sep:
                raise UserError(f"Override {override!r} is not of the form section.key=value.")
            target, parts = data, key.split(".")
            for part in parts[:-1]:
                target = _child(target, part, key)
            if isinstance(target, dict) and parts[-1] not in target:
                renamed = RENAMED.get(".".join(part for part in parts if not part.isdigit()))
                hint = f"; it was renamed {renamed}" if renamed else ""
                raise UserError(f"Override {override!r}: no key {parts[-1]!r}{hint} (valid: {sorted(target)}).")
            try:
                target[parts[-1]] = yaml.safe_load(value)
            except yaml.YAMLError as error:
                raise UserError(f"Override {override!r}: the value is not valid YAML ({error}).") from error
        return type(self).from_dict(data)


def _keyed(key: str, check: Any, value: Any) -> None:
    """``check(value)``, its :class:`UserError` prefixed with the config key."""
    try:
        check(value)
    except UserError as error:
        raise UserError(f"{key}: {error}") from error


def _child(node: Any, part: str, key: str) -> Any:
    if isinstance(node, list):
        if part.isdigit():
            if int(part) >= len(node):
                raise UserError(f"Override {key!r}: no list item {part} (there are {len(node)}).")
            return node[int(part)]
        for item in node:
            if isinstance(item, dict) and item.get("name") == part:
                return item
        raise UserError(f"Override {key!r}: no list item named {part!r}.")
    if not isinstance(node, dict) or part not in node:
        valid = sorted(node) if isinstance(node, dict) else []
        raise UserError(f"Override {key!r}: no section {part!r} (valid: {valid}).")
    return node[part]


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from nested dicts, naming the section of any unknown key."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of keys to values, got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    section = where.removeprefix("config").lstrip(".")
    renamed = {key: RENAMED[f"{section}.{key}"] for key in sorted(unknown) if f"{section}.{key}" in RENAMED}
    if renamed:
        table = "; ".join(f"{section}.{old} -> {new}" for old, new in renamed.items())
        raise UserError(
            f"Renamed key(s) in {where}: {table}. The config sections are now the constructors' own argument names "
            "(docs/training.md, 'Renamed keys'); rename them in the config."
        )
    if unknown:
        raise UserError(f"Unknown key(s) {sorted(unknown)} in {where}; valid keys: {sorted(fields)}.")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, value or {}, f"{where}.{name}")
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            if not isinstance(value or [], list):
                raise UserError(f"{where}.{name} must be a list, got {value!r}.")
            item_cls = typing.get_args(hint)[0]
            value = [_build(item_cls, item, f"{where}.{name}[{i}]") for i, item in enumerate(value or [])]
        kwargs[name] = value
    return cls(**kwargs)


def _coerce_fields(section: Any, prefix: str) -> None:
    """Coerce every field of ``section`` (and of its sub-sections) to its declared type, in place."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        key, value, hint = f"{prefix}{f.name}", getattr(section, f.name), hints[f.name]
        if dataclasses.is_dataclass(hint):
            _coerce_fields(value, f"{key}.")
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            for i, item in enumerate(value):
                _coerce_fields(item, f"{key}[{i}].")
        else:
            setattr(section, f.name, _coerce(value, hint, key))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint`` (``int``, ``float``, ``bool``, ``str``, ``dict``, ``list[...]``, unions with
    ``None``); numbers written as strings (YAML reads ``1e-3`` as one) are parsed. Raises a :class:`UserError`
    naming ``key`` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        for option in options:
            try:
                return _coerce(value, option, key)
            except UserError:
                continue
        expected = " or ".join(_describe(option) for option in options)
        raise UserError(f"{key}: expected {expected}{' or null' if type(None) in args else ''}, got {value!r}.")
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{key}: expected {_describe(hint)}, got {value!r}.")
        return [_coerce(item, args[0], f"{key}[{i}]") for i, item in enumerate(value)]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {value!r}.")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
    elif hint is float:
        number = _number(value)
        if number is not None:
            return float(number)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"No coercion to {hint!r} for {key} (a config field of an unsupported type).")
    raise UserError(f"{key}: expected {_describe(hint)}, got {value!r}.")


def _number(value: Any) -> int | float | None:
    """A finite number from an int, float or numeric string; ``None`` for anything else (``True`` included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    return {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))
