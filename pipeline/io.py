"""Atomic writes and locks: a reader (or a resumed run after a kill) never sees half a checkpoint or submission,
and two processes never train the same pair.

A temporary file's name carries its owner (host and pid), so a later process can tell the leftovers of a killed
process from another live process's work in progress and remove only the former. Locks are flock()s, which the
kernel drops when their holder dies.
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HOST = socket.gethostname()
_OWNED_TMP = re.compile(r"^\..+\.@(?P<host>[^@]+)@(?P<pid>\d+)@.*\.tmp$")


def _owner_tag() -> str:
    return f"@{HOST}@{os.getpid()}@"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner_tag()}", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: str | Path, max_age_s: float = 24 * 3600) -> list[Path]:
    """Delete temporaries left in `folder` by killed processes; those of live processes stay.

    On this host a temporary is stale when its pid is gone; another host's is stale after `max_age_s` (we cannot
    ask that host). Unowned `.*.tmp` files (older versions) are removed once they are an hour old.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    now = time.time()
    for f in folder.glob(".*.tmp"):
        m = _OWNED_TMP.match(f.name)
        try:
            age = now - f.stat().st_mtime
        except OSError:
            continue
        if m:
            stale = not pid_alive(int(m["pid"])) if m["host"] == HOST else age > max_age_s
        else:
            stale = age > 3600
        if stale:
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_csv(df, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def atomic_save_npz(path: str | Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            import numpy as np

            np.savez(f, **arrays)


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# ---------------------------------------------------------------- locks


class Busy(RuntimeError):
    """The lock is held by another live process."""

    def __init__(self, path: Path, owner: str):
        self.owner = owner
        super().__init__(f"{path} is held by {owner or 'another process'}")


@contextmanager
def file_lock(path: str | Path, wait: bool = False):
    """Hold `path` as an exclusive lock; raise Busy when another live process holds it (or wait, with wait=True).

    flock is released by the kernel when its holder dies, however it dies, so a lock left by a killed process is
    free at once; on NFS the server does the same when a lost node's lease runs out. The file names its holder
    (host and pid) for messages, and is removed on release: after taking the lock we check that the path still
    names the file we locked, since a releasing holder may have unlinked it meanwhile.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            try:
                owner = path.read_text().strip()
            except OSError:
                owner = ""
            raise Busy(path, owner) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file that its holder just removed: try again on the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {HOST}".encode())
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # closing releases the flock
