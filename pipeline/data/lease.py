"""Leases on photo caches: a command that uses a cache holds a shared flock on `.<key>.lease` beside it, and
`maskfold cache --prune` removes only caches it can lock exclusively, so a prune never pulls a cache from under a
running train-all (whose jobs open the cache file again in every loader worker).

The kernel drops a lease when its holder dies, however it dies. A lease travels to other processes (joblib, Ray)
as an inert copy: the process that loaded the run's data holds it for all of its jobs.
"""
from __future__ import annotations

import fcntl
import os
import weakref
from contextlib import contextmanager
from pathlib import Path


def lease_file(cache: Path) -> Path:
    return cache.parent / f".{cache.stem}.lease"


def _open_locked(path: Path, how: int) -> int:
    """An fd holding `how` on `path`, after checking that `path` still names the locked file (a prune removes it
    while holding it; a process that opened it before then locks a removed file and must open the new one)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, how)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


class CacheLease:
    """A shared hold on one cache, released when the lease is garbage-collected or released."""

    def __init__(self, cache: Path):
        self.path = lease_file(Path(cache))
        fd = _open_locked(self.path, fcntl.LOCK_SH)  # waits only while a prune removes this cache
        self._release = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        if self._release is not None:
            self._release()

    def __getstate__(self):
        return {"path": self.path, "_release": None}  # a copy in another process holds nothing


@contextmanager
def unused(cache: Path):
    """Hold `cache` exclusively when no command uses it (yield True; its lease file goes with it), else yield False."""
    path = lease_file(Path(cache))
    try:
        fd = _open_locked(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        yield False
        return
    try:
        yield True
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)
