"""The ``d2llm`` command line: one subcommand per module in this package.

Each module ``d2llm_st/cli/<name>.py`` defines ``COMMAND`` (the subcommand name), ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args)``; they are discovered here, so adding a command
is adding a file. A command module imports nothing heavy (torch, transformers, ...) at module level and checks
its arguments and files before it does inside ``run``, so ``--help`` and a mistake are answered at once.

Errors: a user's mistake (see :mod:`d2llm_st.errors`) prints one line ``d2llm <command>: error: ...`` and exits
with status 2, like argparse's own errors; ``--debug`` or the environment variable ``D2LLM_DEBUG=1`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from d2llm_st.cli._types import positive_float, positive_int
from d2llm_st.distributed import TIMEOUT_ENV
from d2llm_st.errors import USER_ERRORS

DEBUG_ENV = "D2LLM_DEBUG"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="d2llm", description="D2LLM: distilled LLMs for semantic search.")
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="Logging level (default: INFO)."
    )
    debug_help = f"Show the full traceback of an error (or set {DEBUG_ENV}=1)."
    parser.add_argument("--debug", action="store_true", help=debug_help)
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="Torch CPU threads (default: D2LLM_NUM_THREADS, OMP_NUM_THREADS, or the cores not busy with other work).",
    )
    parser.add_argument(
        "--cpu-dtype",
        choices=("auto", "bfloat16", "float32"),
        help="LLM backbone weights on the CPU (default: D2LLM_CPU_DTYPE or auto = bfloat16 where the CPU has bf16 "
        "instructions); float32 turns bf16 off.",
    )
    parser.add_argument(
        "--dist-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="Under torchrun / accelerate launch: how long a process waits for the others (default: "
        "D2LLM_DIST_TIMEOUT or 1800); see docs/scaling.md.",
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
        # Also after the command; SUPPRESS keeps the top-level value when it is not given here.
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        sub.set_defaults(run=module.run)
    return parser


def launched_by_environment() -> bool:
    """Whether torchrun / accelerate launch started this process as one of several (the variables they set)."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1") and bool(os.environ.get("RANK", "").strip())


def debug_requested(args: argparse.Namespace) -> bool:
    return args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Under torchrun / accelerate launch, say which process wrote a line.
    where = f"[rank {os.environ['RANK']}/{os.environ['WORLD_SIZE']}] " if launched_by_environment() else ""
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s %(levelname)s {where}%(name)s: %(message)s")
    try:
        from d2llm_st.runtime import DTYPE_ENV, configure_cpu  # imports torch: after --help and argument errors

        if args.cpu_dtype:
            os.environ[DTYPE_ENV] = args.cpu_dtype  # read by every model load of this process
        if args.dist_timeout:
            os.environ[TIMEOUT_ENV] = str(args.dist_timeout)
        logging.getLogger(__name__).info(configure_cpu(args.threads))
        return args.run(args) or 0
    except USER_ERRORS as error:
        if debug_requested(args):
            raise
        message = " ".join(str(error).split("\n"))
        print(f"d2llm {args.command}: error: {message}", file=sys.stderr)
        return 2
