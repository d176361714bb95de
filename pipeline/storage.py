"""Where outputs go: folders that must be writable, and full disks named.

Each failure becomes one line naming the folder (or file) and the fix, instead of an OSError from deep inside numpy,
pandas or torch.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import BadInput, MaskfoldError

_FULL = (errno.ENOSPC, errno.EDQUOT)
# torch's zip writer reports a failed write in its own words, without the errno
_TORCH_WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "file write failed")
_NEARLY_FULL = 64 * 2**20


class NoSpace(MaskfoldError, OSError):
    """A write failed because the disk (or quota) holding `folder` is full. Fix: free space there, or point the
    run (run_dir, cache_dir) at a disk with room; a rerun goes on where it stopped."""

    def __init__(self, folder, *_):
        super().__init__(errno.ENOSPC, f"no space left on {folder}; free some space there (or point the run at a "
                                       f"larger disk) and rerun", str(folder))
        self.folder = str(folder)

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):  # crosses process boundaries (joblib, Ray) with its folder
        return NoSpace, (self.folder,)


class Unreadable(MaskfoldError, OSError):
    """A file the run needs could not be read for a reason of the disk (an I/O error, a lost mount, permissions),
    not of its content: nothing is removed or trained again on that account. Fix: check the disk, the mount or the
    permissions of the named file, then rerun."""

    def __init__(self, path, reason):
        super().__init__(errno.EIO, f"cannot read {path} ({reason}); nothing was removed: check the disk or mount "
                                    f"(and the file's permissions) and rerun", str(path))
        self.path, self.reason = str(path), reason

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        return Unreadable, (self.path, self.reason)


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_full(error: BaseException, folder) -> bool:
    """Whether `error`, raised while writing into `folder`, means that its disk is full."""
    if isinstance(error, OSError) and error.errno in _FULL:
        return True
    if isinstance(error, RuntimeError) and any(w in str(error) for w in _TORCH_WRITE_FAILED):
        free = _free_bytes(Path(folder))
        return free is not None and free < _NEARLY_FULL
    return False


def disk_error(error: BaseException, folder) -> BaseException:
    """`error` as the user is told it: a write that met a full disk is NoSpace naming the folder of its file (else
    `folder`), whoever meets it; anything else comes back as it is."""
    if isinstance(error, NoSpace) or not is_full(error, folder):
        return error
    name = getattr(error, "filename", None)
    return NoSpace(Path(name).parent if name else folder)


@contextmanager
def full_disk_named(folder):
    """A write in the block that fails on a full disk raises NoSpace instead."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        named = disk_error(e, folder)
        if named is e:
            raise
        raise named from e


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    for test, name in ((stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a pipe"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "not a folder"


class FolderProblem(MaskfoldError, ValueError):
    """A configured folder (run_dir, cache_dir) that maskfold cannot use: a file, a device, under a file or
    read-only. Fix: the message names the key, the folder and what to change."""


def _nearest(path: Path) -> Path:
    """The nearest part of `path` that exists (or is a link)."""
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    return probe


def require_output(path, option: str) -> None:
    """An output file the user named (`predict --out`) can be made where it is named; else BadInput, before any
    work. A device, pipe or link (written through) is left to the writer."""
    path = Path(path)
    probe = _nearest(path.parent)
    fix = f"name a CSV file in a folder you can write, e.g. {option} predictions.csv"
    if probe.is_symlink() and not probe.exists():
        raise BadInput(f"{option} {path}: {probe} is a broken link; {fix}")
    if not probe.is_dir():
        raise BadInput(f"{option} {path}: {probe} is {_kind(probe)}, not a folder; {fix}")
    if not os.access(probe, os.W_OK | os.X_OK):
        why = "read-only file system" if os.statvfs(probe).f_flag & os.ST_RDONLY else "permission denied"
        raise BadInput(f"{option} {path}: {probe} cannot be written ({why}); {fix}")


def require_folder(path, key: str) -> Path:
    """Make `path` (a config key's folder) if needed and check that it can be written; else FolderProblem."""
    path = Path(path)
    fix = f"set {key} to a folder maskfold can write (e.g. --set {key}=runs/NAME)"
    probe = _nearest(path)
    if probe.is_symlink() and not probe.exists():
        raise FolderProblem(f"{key} {path}: {probe} is a broken link; fix the link or {fix}")
    if not probe.is_dir():
        where = f"{path} is {_kind(probe)}" if probe == path else f"{path} lies under {probe}, which is {_kind(probe)}"
        raise FolderProblem(f"{key} {where}, not a folder; {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        if is_full(e, path):
            raise NoSpace(path) from None
        raise FolderProblem(f"{key} {path} cannot be written ({e.strerror}); {fix}, or make it writable") from None
    return path
