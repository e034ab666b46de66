"""The ``d2llm`` command line: every command has --help, and the demo ranks passages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from d2llm_st.cli import build_parser


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_command_has_help(capsys):
    names = subcommands()
    assert "demo" in names
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: d2llm {name}" in capsys.readouterr().out


def test_unknown_command_fails_clearly():
    result = subprocess.run([sys.executable, "-m", "d2llm_st.cli", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr


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
