"""How a command reports a failure: the one place where an exception becomes what the user sees. An error the user
can fix (MaskfoldError, raised where the fault is found) is its message alone. Anything else is a bug: one line and
how to see its traceback, which `maskfold --debug` (or MASKFOLD_DEBUG=1) prints, since a message alone ("operands
could not be broadcast") does not say where it came from."""
from __future__ import annotations

import os
import traceback

import click

from pipeline.outcome import told
from pipeline.quiet import debugging_env, libraries_quiet

DEBUG_HINT = "run with --debug (or MASKFOLD_DEBUG=1) for the traceback"


class _Bug(click.ClickException):
    """Its message is one line (the run's log records it); the hint follows it on the screen only."""

    def show(self, file=None) -> None:
        super().show(file)
        click.echo(DEBUG_HINT, file=file, err=file is None)


class Commands(click.Group):
    """The command group, which runs every command: whatever a command lets escape is reported here, by one rule.
    click's own exits and messages, and what is not an error (Ctrl-C, SIGTERM), go through unchanged."""

    def invoke(self, ctx):
        before = os.environ.get("MASKFOLD_DEBUG")
        if ctx.params.get("debug"):
            os.environ["MASKFOLD_DEBUG"] = "1"  # worker processes, and libraries_quiet, read it
        try:
            with libraries_quiet():
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            debug = debugging_env()
            if debug:  # the traceback first, to stderr
                click.echo("".join(traceback.format_exception(e)).rstrip("\n"), err=True)
            words, bug = told(e, "the disk")  # "the disk": a command without a run directory met a full disk
            raise (_Bug if bug and not debug else click.ClickException)(words) from None
        finally:
            if before is None:
                os.environ.pop("MASKFOLD_DEBUG", None)
            else:
                os.environ["MASKFOLD_DEBUG"] = before
