"""Progress bars that suit where the output goes.

In a terminal, a bar per long step (photo cache, epochs, predictions, outside faces, train-all's pairs with an ETA).
Into a file or a pipe, no bars at all (a bar there is a stream of carriage-return frames): the log gets one line
per epoch and per stage step instead. MASKFOLD_BARS=0 or 1 overrides the guess.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm


def interactive() -> bool:
    forced = os.environ.get("MASKFOLD_BARS")
    if forced in ("0", "1"):
        return forced == "1"
    stream = sys.__stderr__
    return bool(stream and stream.isatty())


def bar(iterable=None, total=None, desc: str = "", unit: str = "it", leave: bool = False, disable: bool = False,
        **kw):
    """A tqdm bar, switched off when the output is not a terminal (or by `disable`)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable or not interactive(),
                dynamic_ncols=True, mininterval=0.5, **kw)


def say(message: str, log=print) -> None:
    """A log line that does not tear a bar in the terminal."""
    if interactive():
        tqdm.write(message, file=sys.stdout)
    else:
        log(message)


@contextmanager
def relay(path: Path, log=print, every: float = 0.3, warned: set | None = None):
    """While the block runs, print each line that other processes append to `path`, through `say`.

    Parallel jobs write their lines to a file instead of the terminal, where they would tear the outer bar; the
    parent prints them above its bar (and so into the run's log, once). `warned`: the warnings given already, which
    are not printed again (several processes may each give the same one)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    path.touch()
    stop = threading.Event()

    def follow():
        with open(path) as f:
            partial = ""
            while True:
                partial += f.read()
                *lines, partial = partial.split("\n")
                for line in lines:
                    if warned is not None and line.startswith("warning: "):
                        if line in warned:
                            continue
                        warned.add(line)
                    say(line, log)
                if stop.is_set():
                    return
                time.sleep(every)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=5)
        path.unlink(missing_ok=True)

