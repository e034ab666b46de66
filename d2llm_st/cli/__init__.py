"""The ``d2llm`` command line: one subcommand per module in this package.

Each module ``d2llm_st/cli/<name>.py`` defines ``COMMAND`` (the subcommand name), ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args)``; they are discovered here, so adding a command
is adding a file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="d2llm", description="D2LLM: distilled LLMs for semantic search.")
    parser.add_argument("--log-level", default="INFO", help="Logging level (DEBUG, INFO, WARNING).")
    parser.add_argument(
        "--threads",
        type=int,
        help="Torch CPU threads (default: D2LLM_NUM_THREADS, OMP_NUM_THREADS, or the cores not busy with other work).",
    )
    parser.add_argument(
        "--cpu-dtype",
        choices=("auto", "bfloat16", "float32"),
        help="LLM backbone weights on the CPU (default: D2LLM_CPU_DTYPE or auto = bfloat16 where the CPU has bf16 "
        "instructions); float32 turns bf16 off.",
    )
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
    from d2llm_st.runtime import DTYPE_ENV, configure_cpu  # imports torch: after --help and argument errors

    if args.cpu_dtype:
        os.environ[DTYPE_ENV] = args.cpu_dtype  # read by every model load of this process
    logging.getLogger(__name__).info(configure_cpu(args.threads))
    return args.run(args) or 0
