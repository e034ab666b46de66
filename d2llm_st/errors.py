"""The error for a user's mistake, and which errors the ``d2llm`` CLI reports as one line instead of a traceback.

Policy: code that checks what a user gave (command-line arguments, data files, config values, model names and
folders, API inputs) raises :class:`UserError` with a message naming what is wrong and how to fix it. It is a
``ValueError``, so API callers that catch ``ValueError`` (as docs/api.md promises) keep working. The CLI prints
such an error as ``d2llm <command>: error: <message>`` and exits with status 2, as argparse does for a bad
argument; so does a missing, misplaced or unreadable file (``FileNotFoundError``, ``IsADirectoryError``,
``NotADirectoryError``, ``PermissionError``), whose message names the path. Any other exception is a bug (or an
environment problem) and keeps its traceback. ``d2llm --debug`` or ``D2LLM_DEBUG=1`` shows the traceback of a user
error too.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user gave; the message says what is wrong and what to do instead."""


USER_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
"""What the CLI reports in one line (see the module docstring)."""
