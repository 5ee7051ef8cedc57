"""One contract for every command line of the project (`python -m ...` and scripts/*.sh).

A user error (a config key or value, a missing or malformed file, an impossible setting, a checkpoint made for
something else, a full disk) ends the command with ONE line on stderr, `error: <what, which file or key, what to
do>`, and exit status 2. Anything else is a bug: it keeps its traceback (exit status 1).

What is a user error is decided where it is raised, not where it is caught: code that finds a user's mistake raises
`InputError` (a value, key or file content is wrong; a ValueError) or `MissingFileError` (a file the user named, or
that an earlier step should have written, is not there; a FileNotFoundError), or an exception class of its own that
derives from `UserError`. A plain ValueError or FileNotFoundError stays a bug. A full disk (ENOSPC, EDQUOT, EFBIG
from any write) is a user error too.

    @cli_main
    def main(argv: list[str] | None = None) -> int: ...

    if __name__ == "__main__":
        sys.exit(main())

This module imports only the standard library.
"""

from __future__ import annotations

import argparse
import errno
import functools
import math
import sys
from collections.abc import Callable
from typing import TypeVar

__all__ = ["UserError", "InputError", "MissingFileError", "cli_main", "is_user_error", "error_line", "finite_float",
           "EXIT_USER"]

EXIT_USER = 2  # the exit status of a user error (argparse's own usage errors use it too)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

Main = TypeVar("Main", bound=Callable)


class UserError(Exception):
    """Something the user gave or did is wrong; the message names the file, key or setting and says what to do."""


class InputError(UserError, ValueError):
    """A value, key or file content the user gave is wrong (or not finite)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named, or that an earlier step should have written, does not exist."""


def is_user_error(error: BaseException) -> bool:
    """Whether `error` ends a command with `error: ...` and exit 2 (True) or keeps its traceback (False)."""
    return isinstance(error, UserError) or (isinstance(error, OSError) and error.errno in _DISK_FULL)


def error_line(error: BaseException) -> str:
    """The one line printed for a user error: `error: ` + its message with line breaks folded into spaces."""
    if isinstance(error, OSError) and not isinstance(error, UserError) and error.errno in _DISK_FULL:
        where = f" writing {error.filename}" if error.filename else ""
        text = (f"{error.strerror or 'the disk is full'}{where}; free some space on that disk or write the "
                "outputs elsewhere (the previous files are kept)")
    else:
        text = " ".join(str(error).split()) or type(error).__name__
    return f"error: {text}"


def finite_float(text: str) -> float:
    """The argparse `type` of a number flag: a float that is not NaN or infinite (argparse names the flag and exits
    with status 2 otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def cli_main(main: Main) -> Main:
    """Wrap a command's `main(argv=None)`: a user error prints `error_line` on stderr and exits with status 2; the
    return value and every other exception pass through unchanged."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None):
        try:
            return main(argv)
        except Exception as error:
            if not is_user_error(error):
                raise
            sys.stdout.flush()
            print(error_line(error), file=sys.stderr, flush=True)
            raise SystemExit(EXIT_USER) from None

    return run
