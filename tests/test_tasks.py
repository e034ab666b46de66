"""The one vocabulary (d2llm_st.tasks) and the one seeded subsample (d2llm_st.data.sampling), and that every module
speaks them instead of spelling its own."""

from __future__ import annotations

import ast
import os
import random

import pytest

from d2llm_st import tasks
from d2llm_st.data.sampling import subsample, subsample_indices
from d2llm_st.errors import UserError

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_tasks_roles_and_prompt_names():
    assert tasks.TASKS == ("symmetric", "asymmetric") and set(tasks.TASK_ROLES) == set(tasks.TASKS)
    assert tasks.task_roles("asymmetric") == ("query", "passage")
    assert tasks.task_roles("symmetric") == ("symmetric", "symmetric")
    assert [tasks.prompt_name(role) for role in tasks.ROLES] == ["query", "document", "symmetric"]
    assert tasks.column_role("anchor", "asymmetric") == "query"
    assert tasks.column_role("negative_3", "asymmetric") == tasks.column_role("positive", "asymmetric") == "passage"
    assert {tasks.column_role(column, "symmetric") for column in ("anchor", "positive")} == {"symmetric"}
    assert tasks.role_prompts("Q: ", None, "T: ") == {"query": "Q: ", "symmetric": "T: "}
    with pytest.raises(TypeError, match="passage_prompt must be a string"):
        tasks.role_prompts(passage_prompt=3)


def test_dataset_kinds_and_eval_types_have_one_spelling_and_a_task():
    assert {kind: tasks.dataset_task(kind) for kind in tasks.DATASET_KINDS} == {
        "nli": "symmetric",
        "sts": "symmetric",
        "beir": "asymmetric",
    }
    assert set(tasks.EVAL_TYPES) == {"sts", "nli", "ir", "answer-selection"}
    assert tasks.check_eval_type("answer-selection") == "answer-selection"


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (tasks.check_task, "ranking", "Unknown task 'ranking': use 'symmetric' .* or 'asymmetric'"),
        (tasks.check_role, "document", "Unknown role 'document': use one of 'query', 'passage', 'symmetric'"),
        (tasks.check_dataset_kind, "csv", "Unknown dataset kind 'csv': use one of 'nli', 'sts', 'beir'"),
        (tasks.check_eval_type, "answer_selection", "Unknown evaluation type 'answer_selection': it is spelled "),
        (tasks.check_eval_type, "qa", "Unknown evaluation type 'qa': use one of 'sts', 'nli', 'ir', 'answer-sel"),
    ],
)
def test_checks_name_the_valid_words(check, value, message):
    with pytest.raises(UserError, match=message):
        check(value)


def test_pad_token_fallback(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.pad_token = None
    tasks.ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    tokenizer.pad_token, tokenizer.eos_token = None, None
    tasks.ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == "<unk>"
    tokenizer.pad_token = tokenizer.unk_token = None
    with pytest.raises(ValueError, match="has no pad, eos or unk token"):
        tasks.ensure_pad_token(tokenizer, "this one")
    tasks.ensure_pad_token(None)  # a model without a tokenizer: nothing to do


def test_subsample_keeps_the_original_order_and_the_rows_random_sample_picks():
    rows = [f"row {i}" for i in range(50)]
    kept = subsample(rows, 7, seed=3)
    # The positions random.Random(seed).sample would draw, in file order: reordering the call sites' old
    # `random.Random(seed).sample(rows, k)` keeps the same rows.
    assert kept == sorted(random.Random(3).sample(rows, 7), key=rows.index)
    assert subsample_indices(50, 7, seed=3) == [rows.index(row) for row in kept]
    assert kept == subsample(rows, 7, seed=3) and kept != subsample(rows, 7, seed=4)
    assert subsample(rows, None) == rows and subsample(rows, 50) == rows and subsample(rows, 80) == rows
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit must be a positive number"):
            subsample(rows, bad)


def test_the_evaluation_subset_is_the_same_subsample_it_always_was(tmp_path):
    from d2llm_st.evaluation.base import evaluation_subset

    items = list(range(100))
    expected = sorted(random.Random(0).sample(range(100), 10))  # the evaluators' semantics before issue 19
    assert evaluation_subset(items, 10, "items") == expected == subsample(items, 10)


def _names_assigned(source: str) -> dict[str, ast.AST]:
    tree = ast.parse(source)
    return {
        target.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


def _is_words(node: ast.AST) -> bool:
    """A string constant, or a tuple / list of them: a value that spells vocabulary (not data keyed by it)."""
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_is_words(element) for element in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def test_no_module_spells_the_vocabulary_again():
    """Literal task / role / kind tables (lists of the words, or maps between them) live in d2llm_st/tasks.py only;
    data keyed by them (evaluator classes, templates, prompts) may live where it is used."""
    vocabulary = [
        {"symmetric", "asymmetric"},
        {"query", "passage", "symmetric"},
        {"nli", "sts", "beir"},
        {"sts", "nli", "answer_selection"},
        {"sts", "nli", "ir", "answer-selection"},
    ]
    offenders = []
    for path, source in package_sources():
        if path != os.path.join("d2llm_st", "tasks.py"):
            for variable, value in _names_assigned(source).items():
                if isinstance(value, ast.Dict) and not all(_is_words(v) for v in value.values):
                    continue
                if isinstance(value, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                    elements = value.keys if isinstance(value, ast.Dict) else value.elts
                    words = {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                    if words and any(words == spelled for spelled in vocabulary):
                        offenders.append(f"{path}: {variable}")
    assert not offenders, offenders


def package_sources():
    """``(path relative to the checkout, source)`` of every module of d2llm_st."""
    for folder, _, files in os.walk(os.path.join(ROOT, "d2llm_st")):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, ROOT), open(path, encoding="utf-8").read()


def test_no_module_falls_back_to_a_pad_token_itself():
    offenders = [path for path, source in package_sources() if "pad_token = " in source]
    assert offenders == [os.path.join("d2llm_st", "tasks.py")], offenders


def test_no_module_draws_its_own_seeded_sample_of_rows():
    """``random.Random(seed).sample`` (rows of a dataset) is drawn in data/sampling.py only; mining's per-anchor
    window sample (one stream over all anchors) is the one other draw, and of corpus positions, not rows."""
    offenders = [path for path, source in package_sources() if ".sample(" in source]
    assert sorted(offenders) == [os.path.join("d2llm_st", "data", f) for f in ("mining.py", "sampling.py")], offenders
