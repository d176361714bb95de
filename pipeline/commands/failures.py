"""How a command reports a failure. An error the user can fix (MaskfoldError) is its message alone. Anything else
is a bug: one line and how to see its traceback, which `maskfold --debug` (or MASKFOLD_DEBUG=1) prints, since a
message alone ("operands could not be broadcast") does not say where it came from."""
from __future__ import annotations

import errno
import functools
import os
import traceback
from pathlib import Path

import click

from pipeline.errors import MaskfoldError
from pipeline.outcome import first_line
from pipeline.quiet import libraries_quiet
from pipeline.storage import NoSpace

DEBUG_HINT = "run with --debug (or MASKFOLD_DEBUG=1) for the traceback"
_FULL = (errno.ENOSPC, errno.EDQUOT)


def debugging() -> bool:
    ctx = click.get_current_context(silent=True)
    flag = ctx is not None and ctx.find_root().params.get("debug")
    return bool(flag) or os.environ.get("MASKFOLD_DEBUG", "") not in ("", "0")


def _passes(e: BaseException) -> bool:
    """click's own exits and messages, and what is not an error (Ctrl-C, SIGTERM), go through unchanged."""
    return not isinstance(e, Exception) or isinstance(e, (click.ClickException, click.exceptions.Exit, click.Abort))


def as_message(e: Exception) -> click.ClickException:
    """The exit message for `e`; with --debug the traceback is printed first (to stderr)."""
    debug = debugging()
    if debug:
        click.echo("".join(traceback.format_exception(e)).rstrip("\n"), err=True)
    if isinstance(e, OSError) and e.errno in _FULL and not isinstance(e, NoSpace):
        e = NoSpace(Path(e.filename).parent if e.filename else "the disk")
    if isinstance(e, MaskfoldError):
        return click.ClickException(str(e))
    first = f"{type(e).__name__}: {first_line(e)}"
    return click.ClickException(first) if debug else _Bug(first)


class _Bug(click.ClickException):
    """Its message is one line (the run's log records it); the hint follows it on the screen only."""

    def show(self, file=None) -> None:
        super().show(file)
        click.echo(DEBUG_HINT, file=file, err=file is None)


def friendly(f):
    """A command's failures as their exit messages (inside the run's log entry, which records the message). A full
    disk goes through: the log entry turns it into the folder's NoSpace line."""

    @functools.wraps(f)
    def wrapper(*a, **kw):
        try:
            return f(*a, **kw)
        except Exception as e:
            if _passes(e) or (isinstance(e, OSError) and e.errno in _FULL and not isinstance(e, NoSpace)):
                raise
            raise as_message(e) from None

    return wrapper


class Commands(click.Group):
    """The command group: whatever a command lets escape (its config's preflight, a command without a run log)
    is reported by the same rule."""

    def invoke(self, ctx):
        before = os.environ.get("MASKFOLD_DEBUG")
        if ctx.params.get("debug"):
            os.environ["MASKFOLD_DEBUG"] = "1"  # worker processes, and libraries_quiet, read it
        try:
            with libraries_quiet():
                return super().invoke(ctx)
        except Exception as e:
            if _passes(e):
                raise
            raise as_message(e) from None
        finally:
            if before is None:
                os.environ.pop("MASKFOLD_DEBUG", None)
            else:
                os.environ["MASKFOLD_DEBUG"] = before
