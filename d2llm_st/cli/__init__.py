"""The ``d2llm`` command line: one subcommand per module in this package.

Each module ``d2llm_st/cli/<name>.py`` defines ``COMMAND`` (the subcommand name), ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args)``; they are discovered here, so adding a command
is adding a file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="d2llm", description="D2LLM: distilled LLMs for semantic search.")
    parser.add_argument("--log-level", default="INFO", help="Logging level (DEBUG, INFO, WARNING).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if info.name.startswith("_"):  # __main__ and private helpers
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        sub = subparsers.add_parser(
            module.COMMAND,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args) or 0
