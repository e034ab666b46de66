"""The ``d2llm`` command line: every command has --help, the demo ranks passages, and a mistake is one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import error_lines

from d2llm_st.cli import build_parser, main
from d2llm_st.errors import UserError

HEAVY = ("torch", "transformers", "sentence_transformers", "datasets", "peft")


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """``python -m d2llm_st.cli ARGS`` in a fresh process (PYTHONPATH and the rest of the environment inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "d2llm_st.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = error_lines(result.stderr)
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"d2llm {command}: error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_every_command_has_help(capsys):
    names = subcommands()
    assert "demo" in names
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: d2llm {name}" in capsys.readouterr().out


def test_the_cli_reference_is_generated_from_the_parser():
    import importlib.util

    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "cli_docs.py")
    spec = importlib.util.spec_from_file_location("cli_docs", script)
    cli_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli_docs)
    with open(cli_docs.PATH, encoding="utf-8") as f:
        assert f.read() == cli_docs.render(), "docs/cli.md is stale: run python scripts/cli_docs.py"


def test_unknown_command_fails_clearly():
    result = cli("nope")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_the_parser_imports_nothing_heavy():
    """What makes --help and argument errors immediate: no command module imports torch & co. at module level."""
    code = (
        "import sys; from d2llm_st.cli import build_parser; build_parser(); import d2llm_st.training.config; "
        f"print([name for name in {HEAVY!r} if name in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_help_and_argument_errors_return_at_once(tmp_path):
    for args in [["--help"], *([name, "--help"] for name in subcommands())]:
        start = time.perf_counter()
        result = cli(*args, timeout=60)
        assert result.returncode == 0 and "usage: d2llm" in result.stdout, result.stderr
        assert time.perf_counter() - start < 15, args  # ~0.3 s unloaded; torch alone would take longer
    data = ["--teacher", "bundled:smollm2", "--kind", "nli", "--data"]
    for extra, message in [
        ([str(tmp_path / "missing.jsonl")], "argument --data: no such file or folder: "),
        ([str(tmp_path), "--limit", "-3"], "argument --limit: must be at least 1, got -3"),
        ([str(tmp_path), "--limit", "0"], "argument --limit: must be at least 1, got 0"),
        ([str(tmp_path), "--batch-size", "many"], "argument --batch-size: expected a whole number, got 'many'"),
    ]:
        result = cli("teacher-score", *data, *extra, timeout=60)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    empty_query = cli("demo", "--query", "", timeout=60)  # used to be a reshape error after loading the LLM
    assert empty_query.returncode == 2 and "argument --query: must not be empty" in empty_query.stderr


def test_a_user_error_is_one_line_and_the_debug_switches_show_the_traceback(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"premise": "a cat", "hypothesis": "a dog", "label": "entailment"}\n')
    args = ["teacher-score", "--teacher", "./no-teacher-here", "--kind", "nli", "--data", str(data)]
    assert_one_line_error(cli(*args), "teacher-score", "--teacher='./no-teacher-here': no such folder here")
    for result in (cli("--debug", *args), cli(*args, "--debug"), cli(*args, D2LLM_DEBUG="1")):
        assert result.returncode == 1 and "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


def test_only_user_errors_are_shortened(monkeypatch, capsys):
    import d2llm_st.cli.teacher_score as command

    def user_mistake(args):
        raise UserError("the config names no data;\nadd some")

    def bug(args):
        raise KeyError("internal")

    argv = ["teacher-score", "--teacher", "t", "--kind", "nli", "--data", "."]
    monkeypatch.setattr(command, "run", user_mistake)
    assert main(argv) == 2
    assert capsys.readouterr().err == "d2llm teacher-score: error: the config names no data; add some\n"
    monkeypatch.setattr(command, "run", bug)
    with pytest.raises(KeyError, match="internal"):  # a bug keeps its traceback
        main(argv)


def test_a_broken_data_line_is_reported_with_file_and_line(tiny_llama, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"premise": "a cat", "hypothesis": "a dog", "label": "entailment"}\n{"premise": oops}\n')
    result = cli("teacher-score", "--teacher", tiny_llama, "--kind", "nli", "--data", str(data))
    assert_one_line_error(result, "teacher-score", f"{data}:2: not valid JSON")


def test_models_of_the_wrong_kind_are_refused_in_one_line(tiny_llama, minilm, tmp_path):
    from d2llm_st import D2LLM

    data = tmp_path / "sts.jsonl"
    data.write_text('{"sentence1": "a cat", "sentence2": "a dog", "score": 1}\n' * 2)
    wrong_column = cli("teacher-score", "--teacher", minilm, "--kind", "nli", "--data", str(data))
    assert_one_line_error(wrong_column, "teacher-score", "row 0 has no premise, hypothesis, label")
    sts = ["--kind", "sts", "--data", str(data)]
    assert_one_line_error(cli("teacher-score", "--teacher", minilm, *sts), "teacher-score", "bi-encoder")
    assert_one_line_error(cli("demo", "--model", minilm), "demo", "bi-encoder", "not a saved D2LLM")
    student = str(tmp_path / "student")
    D2LLM.from_llm(tiny_llama, pma_heads=4, iem_hidden_dim=8, device="cpu").save_pretrained(student)
    result = cli("eval", "--model", student, "--model-type", "cross-encoder", "--task", "sts", "--data", str(data))
    assert_one_line_error(result, "eval", "is a D2LLM student", "not a pair scorer")


@pytest.mark.slow
def test_demo_prints_a_ranking(smollm2):
    result = subprocess.run(
        [sys.executable, "-m", "d2llm_st.cli", "demo", "--passage", "Paris is in France.", "--passage", "Bananas."],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 2 and {line.split()[0] for line in lines} == {"1", "2"}


@pytest.mark.slow
def test_bundled_smollm2_works_as_a_teacher_in_the_commands(smollm2, tmp_path):
    data = tmp_path / "nli.jsonl"
    rows = [("a man plays guitar", "a man makes music", "entailment"), ("a cat sleeps", "a cat runs", "contradiction")]
    data.write_text("".join(f'{{"premise": "{a}", "hypothesis": "{b}", "label": "{y}"}}\n' for a, b, y in rows))
    scored = cli("teacher-score", "--teacher", "bundled:smollm2", "--kind", "nli", "--data", str(data), timeout=300)
    assert scored.returncode == 0 and "scored 2 pairs" in scored.stdout, scored.stderr[-2000:]
    args = ["--model", "bundled:smollm2", "--task", "nli", "--data", str(data), "--split", "x"]
    evaluated = cli("eval", *args, timeout=300)
    assert evaluated.returncode == 0 and "(teacher, teacher P(yes))" in evaluated.stdout, evaluated.stderr[-2000:]


def test_teacher_train_data_can_be_balanced_and_limited_per_set(shared_data):
    from d2llm_st.cli._data_args import read_labelled_pairs

    wikiqa, stsb = os.path.join(shared_data, "ir", "wikiqa"), os.path.join(shared_data, "sts", "stsb", "dev.jsonl.gz")
    parser = build_parser()
    args = parser.parse_args(
        ["teacher-train", "--model", "m", "--output", "o", "--kind", "beir", "--data", wikiqa, "--kind", "sts"]
        + ["--data", stsb, "--limit", "40", "--limit", "25"]
    )
    plain = read_labelled_pairs(args)
    assert len(plain) == 65
    wiki_plain = [pair for pair in plain if pair.task == "asymmetric"]
    assert sum(pair.label == 1.0 for pair in wiki_plain) < 20  # about one right answer in eight candidates

    args.balance = True
    balanced = read_labelled_pairs(args)
    wiki = [pair for pair in balanced if pair.task == "asymmetric"]
    assert sum(pair.label == 1.0 for pair in wiki) == sum(pair.label == 0.0 for pair in wiki) == 20
    assert read_labelled_pairs(args) == balanced  # seeded

    args.limit = [40, 25, 10]
    with pytest.raises(UserError, match="once per --data"):
        read_labelled_pairs(args)
