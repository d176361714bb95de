"""A set of outputs that lands as one unit: the previous complete set or the new complete set, never a mixture.

The writes of a command are held back as temporaries beside their files (one_unit, below); a failure, a
full disk or an interrupt while they are written removes them and leaves the previous set untouched. Once every
file is written, a journal listing the renames (and the previous set's files the new one does not have) is written
atomically; then, with Ctrl-C and SIGTERM held off, the old files are removed and the temporaries renamed over
their files, the `last` ones (the submission) at the very end, and the journal is deleted. Only a hard kill (or a
power cut) can stop that sequence midway, and then the journal is still there: finish_switch, run by the next
command that writes the set, completes it before anything else. A signal that came during the renames is taken, not
acted on: the new set is in place, so the command has done its work, and says so (Switch.interrupted).
"""
from __future__ import annotations

import json
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.io import atomic_write_text
from pipeline.layout import switch_journal

_HELD_OFF = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@dataclass
class Switch:
    """What a command learns of its switch: `done` once the new set is in place, and `interrupted` naming the signal
    (Ctrl-C is SIGINT) that came while the renames held it off. Such a signal is taken, not acted on: the new set is
    in place, so the command has done its work and says so."""
    done: bool = False
    interrupted: str | None = None
    held: list = field(default_factory=list)  # (temporary, file) of each write of the set: atomic_path's `held`


@contextmanager
def signals_held_off():
    """Ctrl-C, SIGTERM and SIGHUP neither stop nor interrupt the block; yields the list of those that came, filled
    when it ends. They are blocked in this thread, and taken (not acted on) before the block ends; since the kernel
    may hand a process's signal to another thread (torch's), whose handler then asks the main thread to act, Python's
    handlers only note them meanwhile."""
    came: list[signal.Signals] = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():  # Python sets handlers in the main thread only
        for sig in _HELD_OFF:
            handlers[sig] = signal.signal(sig, lambda number, frame: came.append(signal.Signals(number)))
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_OFF)
    except (AttributeError, ValueError, OSError):  # no signal masks here (another OS)
        old = None
    try:
        yield came
    finally:
        came += _take_pending()
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _take_pending() -> list[signal.Signals]:
    """While they are blocked: take the held-off signals that came, so they never act."""
    try:
        pending = sorted(signal.sigpending() & set(_HELD_OFF))
        for sig in pending:
            signal.sigtimedwait([sig], 0)
    except (AttributeError, OSError):
        return []
    return pending


def _apply(run_dir: Path, plan: dict) -> None:
    for name in plan["remove"]:
        (run_dir / name).unlink(missing_ok=True)
    for tmp, name in plan["replace"]:
        if (run_dir / tmp).exists():  # already renamed when a switch cut short is being finished
            os.replace(run_dir / tmp, run_dir / name)


def _switch(run_dir: Path, plan: dict, journal: Path) -> list[signal.Signals]:
    """The renames, to the end whatever signal comes; the signals that came meanwhile."""
    with signals_held_off() as came:
        _apply(run_dir, plan)
        journal.unlink(missing_ok=True)
    return came


def finish_switch(run_dir) -> bool:
    """Complete a switch that a hard kill stopped midway (see the module docstring); True when there was one. An
    interrupt that came meanwhile acts once it is complete."""
    journal = switch_journal(run_dir)
    try:
        plan = json.loads(journal.read_text())
    except (OSError, ValueError):
        return False
    for sig in _switch(Path(run_dir), plan, journal):
        signal.raise_signal(sig)  # the command is interrupted as it would have been without the hold
    return True


@contextmanager
def one_unit(run_dir, previous, last=()):
    """The atomic writes the block hands the Switch's `held` list are one set of outputs under `run_dir`, switched in
    when the block ends; `previous()` lists the files of the set now in place (those the new set lacks are removed
    with the switch); files in `last` are put in place after all the others. The Switch says when it is done."""
    run_dir = Path(run_dir)
    finish_switch(run_dir)
    switch = Switch()
    writes = switch.held
    try:
        yield switch
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
    switch.interrupted = ", ".join(s.name for s in _switch(run_dir, plan, switch_journal(run_dir))) or None
    switch.done = True
