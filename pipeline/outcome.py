"""How a command ended, as the last line of its entry in <run_dir>/log.txt: finished, failed: why, or aborted.

SIGTERM is turned into an exception while a command runs, so that a terminated command removes its temporaries and
releases its locks as Ctrl-C does, and its log entry says so.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

import click

from pipeline.errors import MaskfoldError
from pipeline.io import append_log
from pipeline.storage import disk_error


class Terminated(BaseException):
    """The command received SIGTERM (a BaseException, like KeyboardInterrupt: no `except Exception` swallows it)."""


def _terminate(signum, frame):
    raise Terminated()


@contextmanager
def _sigterm_raises():
    try:
        old = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: SIGTERM keeps its default action
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _note(log: Path, outcome: str) -> None:
    try:
        append_log(log, outcome)
    except OSError:  # a full disk: the outcome is printed, only the log misses it
        pass


def first_line(text: str) -> str:
    """The first non-blank line of `text`, with " ..." when more follow: an error as one line."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else "(no message)"


def one_line(e: BaseException) -> str:
    """An error in one line: the user's own (MaskfoldError) is its message; a bug is led by its type."""
    return first_line(e) if isinstance(e, MaskfoldError) else f"{type(e).__name__}: {first_line(e)}"


def told(e: BaseException, folder) -> tuple[str, bool]:
    """What the user is told of an error, and whether it is a bug: the one rule, for a command (the command runner,
    pipeline.commands.failures) and for a job whose failure is kept in its result row (pipeline.train.worker). A
    full disk met anywhere is NoSpace naming the folder of its file (else `folder`); the user's own error
    (MaskfoldError, raised where the fault is found) is its message; anything else is a bug, one line led by its
    type."""
    e = disk_error(e, folder)
    if isinstance(e, MaskfoldError):
        return str(e), False
    return one_line(e), True


@contextmanager
def logged_outcome(log: Path, run_dir):
    """Run a command's body; append how it ended to `log`. A full disk met anywhere becomes NoSpace, naming the
    folder, whichever library raised it; the command runner (pipeline.commands.failures) tells the user."""
    try:
        with _sigterm_raises():
            yield
    except click.ClickException as e:  # click's own: a usage error
        _note(log, f"failed: {first_line(e.format_message())}")
        raise
    except KeyboardInterrupt:
        _note(log, "aborted (Ctrl-C)")
        raise
    except Terminated:
        _note(log, "aborted (SIGTERM)")
        raise SystemExit(128 + signal.SIGTERM) from None
    except SystemExit as e:
        _note(log, "finished" if e.code in (0, None) else f"failed (exit code {e.code})")
        raise
    except Exception as e:
        named = disk_error(e, run_dir)
        _note(log, f"failed: {one_line(named)}")
        if named is e:
            raise
        raise named from e
    _note(log, "finished")
