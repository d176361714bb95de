"""No library warning reaches the user unasked: timm's note that a one-step cosine changes nothing, torch's and
scikit-learn's UserWarnings, say nothing a user can act on, and a line per pair buries maskfold's own. What the
user must know, maskfold says itself. `maskfold --debug` (or MASKFOLD_DEBUG=1) shows them again."""
from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager


def debugging_env() -> bool:
    """MASKFOLD_DEBUG is set (`maskfold --debug` sets it too, so that worker processes see it)."""
    return os.environ.get("MASKFOLD_DEBUG", "") not in ("", "0")


@contextmanager
def libraries_quiet():
    """In the block, Python warnings are ignored and a library's log record finds a handler that drops it (a logger
    with no handler of its own would print through logging's last resort, to stderr). Loggers that a library set up
    itself (an asked-for tracker's, Optuna's trial lines) still print."""
    if debugging_env():
        yield
        return
    root, drop = logging.getLogger(), logging.NullHandler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.addHandler(drop)
        try:
            yield
        finally:
            root.removeHandler(drop)
