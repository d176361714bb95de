"""Progress bars that suit where the output goes.

In a terminal, a bar per long step (photo cache, epochs, predictions, outside faces, train-all's pairs with an ETA).
Into a file or a pipe, no bars at all (a bar there is a stream of carriage-return frames): the log gets one line
per epoch and per stage step instead. MASKFOLD_BARS=0 or 1 overrides the guess.
"""
from __future__ import annotations

import os
import sys

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
