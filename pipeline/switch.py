"""A set of outputs that lands as one unit: the previous complete set or the new complete set, never a mixture.

The writes of a command are held back as temporaries beside their files (one_unit, below); a failure, a
full disk or an interrupt while they are written removes them and leaves the previous set untouched. Once every
file is written, a journal listing the renames (and the previous set's files the new one does not have) is written
atomically; then, with Ctrl-C and SIGTERM held off, the old files are removed and the temporaries renamed over
their files, the `last` ones (the submission) at the very end, and the journal is deleted. Only a hard kill (or a
power cut) can stop that sequence midway, and then the journal is still there: finish_switch, run by the next
command that writes the set, completes it before anything else.
"""
from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

from pipeline.io import atomic_write_text
from pipeline.layout import switch_journal

_HELD_OFF = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def signals_held_off():
    """Ctrl-C, SIGTERM and SIGHUP wait until the block ends (then they act as usual)."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_OFF)
    except (AttributeError, ValueError, OSError):  # no signal masks here (another thread, another OS)
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _apply(run_dir: Path, plan: dict) -> None:
    for name in plan["remove"]:
        (run_dir / name).unlink(missing_ok=True)
    for tmp, name in plan["replace"]:
        if (run_dir / tmp).exists():  # already renamed when a switch cut short is being finished
            os.replace(run_dir / tmp, run_dir / name)


def finish_switch(run_dir) -> bool:
    """Complete a switch that a hard kill stopped midway (see the module docstring); True when there was one."""
    journal = switch_journal(run_dir)
    try:
        plan = json.loads(journal.read_text())
    except (OSError, ValueError):
        return False
    with signals_held_off():
        _apply(Path(run_dir), plan)
        journal.unlink(missing_ok=True)
    return True


@contextmanager
def one_unit(run_dir, previous, last=()):
    """The atomic writes the block hands the list it is given (their `held`) are one set of outputs under `run_dir`,
    switched in when the block ends; `previous()` lists the files of the set now in place (those the new set lacks
    are removed with the switch); files in `last` are put in place after all the others."""
    run_dir = Path(run_dir)
    finish_switch(run_dir)
    writes = []  # (temporary, file) of each write of the set
    try:
        yield writes
        written = {final.resolve() for _, final in writes}
        last = [Path(p).resolve() for p in last]
        writes.sort(key=lambda w: w[1].resolve() in last)
        plan = {"remove": [os.path.relpath(p, run_dir) for p in previous() if Path(p).resolve() not in written],
                "replace": [[os.path.relpath(t, run_dir), os.path.relpath(f, run_dir)] for t, f in writes]}
        atomic_write_text(switch_journal(run_dir), json.dumps(plan, indent=1))
    except BaseException:  # not switched: the previous set stays, the new one's temporaries go
        for tmp, _ in writes:
            tmp.unlink(missing_ok=True)
        raise
    finish_switch(run_dir)
