"""Atomic writes and locks: a reader (or a resumed run after a kill) never sees half a checkpoint or submission,
and two processes never train the same pair. An output the user names may also be a link, a device or a pipe.

A temporary file's name carries its owner (host and pid), so a later process can tell the leftovers of a killed
process from another live process's work in progress and remove only the former. Locks are flock()s, which the
kernel drops when their holder dies.
"""
from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import MaskfoldError
from pipeline.storage import full_disk_named

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


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask can only set it)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


@contextmanager
def atomic_path(path: str | Path, held: list | None = None):
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes. With `held` (the list of
    an output set, pipeline.switch.one_unit), the finished temporary stays and joins the list, to be switched in
    with the rest of its set. A full disk raises NoSpace naming the folder."""
    path = Path(path)
    with full_disk_named(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner_tag()}", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a shared run or cache must stay readable to the team
    os.close(fd)
    try:
        with full_disk_named(path.parent):
            yield Path(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        if held is not None:
            held.append((Path(tmp), path))
            tmp = None
        else:
            os.replace(tmp, path)
    finally:
        if tmp and os.path.exists(tmp):
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


def atomic_write_text(path: str | Path, text: str, held: list | None = None) -> None:
    with atomic_path(path, held) as tmp:
        tmp.write_text(text)


def atomic_write_csv(df, path: str | Path, float_format: str | None = None, held: list | None = None) -> None:
    with atomic_path(path, held) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format)


def atomic_save_npz(path: str | Path, held: list | None = None, **arrays) -> None:
    with atomic_path(path, held) as tmp:
        with open(tmp, "wb") as f:
            import numpy as np

            np.savez(f, **arrays)


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# ---------------------------------------------------------------- locks


class Busy(MaskfoldError, RuntimeError):
    """The lock is held by another live process (the message names it). Fix: wait for it to finish, or stop it
    first."""

    def __init__(self, path: Path, owner: str):
        self.owner = owner
        super().__init__(f"{path} is held by {owner or 'another process'}")


@contextmanager
def file_lock(path: str | Path, wait: bool = False, timeout: float | None = None):
    """Hold `path` as an exclusive lock; raise Busy when another live process holds it (or wait, with wait=True;
    with a timeout, wait that many seconds at most).

    flock is released by the kernel when its holder dies, however it dies, so a lock left by a killed process is
    free at once; on NFS the server does the same when a lost node's lease runs out. The file names its holder
    (host and pid) for messages, and is removed on release: after taking the lock we check that the path still
    names the file we locked, since a releasing holder may have unlinked it meanwhile.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.time() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait and deadline is None else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            if deadline is not None and time.time() < deadline:
                time.sleep(0.5)
                continue
            raise Busy(path, _holder_named(path)) from None
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


def lock_holder(path: str | Path) -> str | None:
    """Who holds the lock at `path` now ("pid N on HOST"), or None when nobody does. Asks with a shared lock
    that is let go at once, and never makes the file."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_named(Path(path)) or "another process"
    finally:
        os.close(fd)  # closing lets the shared lock go
    return None


def _holder_named(path: Path) -> str:
    """What a held lock file says of its holder ("pid N on HOST"), "" where it cannot be read."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- the run's log


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def append_log(path: str | Path, line: str) -> None:
    """One timestamped line appended to a run's log (O_APPEND: lines of parallel jobs never interleave mid-line)."""
    with open(path, "a") as f:
        f.write(f"{_now()} {line}\n")


class _Tee:
    """A text stream that also appends each finished line, timestamped, to a log file.

    Progress bars redraw one line with carriage returns; only the last frame of such a line reaches the log.
    """

    def __init__(self, stream, log):
        self.stream, self.log, self.partial = stream, log, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        *lines, partial = (self.partial + text).split("\n")
        self.partial = partial.rsplit("\r", 1)[-1]  # a redrawn bar keeps only its last frame
        for line in lines:
            line = line.rsplit("\r", 1)[-1]
            if line.strip() and "\x1b[" not in line:  # cursor moves of stacked bars are not log lines
                self._to_log(f"{_now()} {line}\n")
        return len(text)

    def _to_log(self, text: str) -> None:
        if self.log is None:
            return
        try:
            self.log.write(text)
        except OSError:  # a full disk: the command goes on printing (and says what failed); the log stops here
            self.log = None

    def flush(self) -> None:
        self.stream.flush()
        if self.log is not None:
            try:
                self.log.flush()
            except OSError:
                self.log = None

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextmanager
def run_log(path: str | Path, command_line: str):
    """While the block runs, everything printed also goes to `path`, after a line with the command itself."""
    import sys

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", buffering=1)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
    sys.stdout._to_log(f"{_now()} $ {command_line}\n")
    try:
        yield path
    finally:
        sys.stdout, sys.stderr = out, err
        try:
            log.close()
        except OSError:  # the last lines met a full disk
            pass


# ---------------------------------------------------------------- an output named by the user


@contextmanager
def output_file(path):
    """Yield where to write an output the user named (`predict --out`).

    A plain file (or a new one) is replaced atomically; a link is written through, its target replaced atomically
    when that is a plain file, so the link stays a link; a device or pipe (/dev/stdout, `>(...)`, which is a link
    to a pipe under /dev/fd) is written to directly: it cannot be replaced, and a temporary beside it cannot exist.
    """
    path = Path(path)
    target = Path(os.path.realpath(path))
    if path.exists() and not stat.S_ISREG(path.stat().st_mode) and not path.is_dir():
        with full_disk_named(path):
            yield path
        return
    with full_disk_named(target.parent), atomic_path(target) as tmp:
        yield tmp
