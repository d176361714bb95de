"""The decoded-photo cache: every photo decoded and resized once into a uint8 memmap under `cache_dir`.

Keyed by the photos' content (a digest per file, read once and remembered by path, size and modification time),
the cache size and the crop mode, so every run, fold and backbone on the same photos shares one cache, wherever the
photos lie, and a change of data builds a new one. Decoding a 384x512 JPEG costs about 1 ms;
reading a cached row costs microseconds, which is what lets a GPU be fed.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from pipeline.data.images import DECODING, inspect_image, read_rgb
from pipeline.data.lease import CacheLease, unused
from pipeline.errors import DataError, Problem
from pipeline.io import atomic_path, atomic_write_text, file_lock, remove_stale_temporaries
from pipeline.progress import bar

DIGESTS = "digests.json"  # per-file content digests, keyed by (real path, size, mtime), so each file is read once


def content_digests(files: list[Path], cache_dir: Path) -> list[str]:
    """A content digest per photo. By content, so that the same photos written twice (each run's outside faces are
    generated into its own run directory) or reached by another path still find one cache."""
    memo_path = Path(cache_dir) / DIGESTS
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    out, unreadable, fresh = [], [], 0
    for f in files:
        try:
            st = os.stat(f)
            key = f"{os.path.realpath(f)}|{st.st_size}|{st.st_mtime_ns}"
            if key not in memo:
                memo[key] = hashlib.blake2b(Path(f).read_bytes(), digest_size=16).hexdigest()
                fresh += 1
            out.append(memo[key])
        except OSError as e:
            unreadable.append(Problem(str(f), f"cannot be read ({e.strerror}); restore the photo or fix the link"))
    if unreadable:
        raise DataError(unreadable)
    if fresh:
        atomic_write_text(memo_path, json.dumps(memo))
    return out


def cache_key(files: list[Path], size: tuple[int, int], crop: str = "none", cache_dir: str | Path = ".") -> str:
    """Identity of the photos (their content, in order), the cache size, the crop and how photos are decoded."""
    h = hashlib.sha256(f"{size[0]}x{size[1]}:{crop}:{DECODING}".encode())
    for d in content_digests(files, Path(cache_dir)):
        h.update(d.encode())
    return h.hexdigest()[:16]


def decode(file, size: tuple[int, int], crop_fn=None) -> tuple[np.ndarray, bool]:
    """One photo as the cache holds it: (uint8 H x W x 3 at `size`, whether a face was found when cropping)."""
    if crop_fn is None:
        return read_rgb(file, size), True
    return crop_fn(read_rgb(file), size, file)


def _fill(tmp: str, shape, start: int, files: list[str], size, crop_fn):
    arr = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=shape)
    failed, no_face = [], 0
    for i, f in enumerate(files):
        try:
            arr[start + i], found = decode(f, size, crop_fn)
            no_face += not found
        except Exception:  # noqa: BLE001 - every failure becomes a named problem below
            problem = inspect_image(f)[0]
            failed.append((f, problem or "could not be decoded; replace it with the original photo"))
    arr.flush()
    return failed, no_face, len(files)


def build_cache(files: list[Path], size: tuple[int, int], cache_dir: str | Path, crop: str = "none",
                crop_fn=None, n_jobs: int = 2, log=print, leases: list | None = None) -> Path:
    """Return the path of the (N, H, W, 3) uint8 cache for `files`, building it if needed. With `leases`, a lease on
    the cache is added to it (pipeline.data.lease): `maskfold cache --prune` leaves the cache alone while it is held."""
    files = [Path(f) for f in files]
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    key = cache_key(files, size, crop, cache_dir)
    path = Path(cache_dir) / f"{key}.u8"
    meta = path.with_suffix(".json")
    if leases is not None:
        leases.append(CacheLease(path))  # before looking for it: from here on no prune removes it
    remove_stale_temporaries(cache_dir)  # a build killed midway leaves a large temporary file
    if path.exists() and read_meta(meta)[0] is not None:
        os.utime(meta)  # last use, for `maskfold cache --prune --older-than`
        return path
    with file_lock(Path(cache_dir) / f".{key}.lock", wait=True):  # two runs needing it: one builds, one waits
        if not (path.exists() and read_meta(meta)[0] is not None):  # a broken meta is rebuilt with its cache
            _build(files, size, path, meta, crop, crop_fn, n_jobs, log)
    return path


def _build(files: list[Path], size, path: Path, meta: Path, crop: str, crop_fn, n_jobs: int, log) -> None:
    w, h = size
    shape = (len(files), h, w, 3)
    log(f"building photo cache: {len(files)} photos at {w}x{h} -> {path}")
    with atomic_path(path) as tmp:
        reserve(tmp, int(np.prod(shape)))
        step = max(64, len(files) // (n_jobs * 8) + 1)
        chunks = [(s, [str(f) for f in files[s : s + step]]) for s in range(0, len(files), step)]
        results = []
        with bar(total=len(files), desc="photo cache", unit="photo") as progress:
            for r in Parallel(n_jobs=n_jobs, return_as="generator")(
                    delayed(_fill)(str(tmp), shape, s, c, size, crop_fn) for s, c in chunks):
                results.append(r)
                progress.update(r[2])
        failed = [Problem(f, m) for r, _, _ in results for f, m in r]
        if failed:
            raise DataError(failed)
    no_face = sum(n for _, n, _ in results)
    log(f"photo cache ready: {path}")
    if crop != "none":
        log(f"face crop: no face found in {no_face} of {len(files)} photos; those were centre-cropped")
    atomic_write_text(meta, json.dumps({"shape": shape, "size": list(size), "crop": crop, "files": len(files),
                                        "no_face": no_face}))


def reserve(file: Path, size: int) -> None:
    """Give `file` its `size` bytes on disk now: pages of a sparse memmap that meet a full disk kill the writing
    process with SIGBUS, where a reservation fails at once with ENOSPC, which names the folder."""
    with open(file, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            f.truncate(size)  # a file system that cannot reserve: sparse, as before


def open_cache(path: str | Path) -> np.ndarray:
    meta, broken = read_meta(Path(path).with_suffix(".json"))
    if broken:
        raise DataError([Problem(str(path), f"photo cache is broken ({broken}); rerun to rebuild it, or remove it "
                                            f"with `maskfold cache --prune`")])
    return np.memmap(path, dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))


META_KEYS = ("shape", "size", "crop", "files")


def read_meta(meta: Path) -> tuple[dict | None, str | None]:
    """(a cache's meta, None), or (None, why it cannot be used): missing, truncated, or lacking a key."""
    try:
        info = json.loads(Path(meta).read_text())
    except FileNotFoundError:
        return None, "no meta file"
    except (OSError, ValueError) as e:
        return None, f"meta unreadable ({type(e).__name__})"
    if not isinstance(info, dict) or any(k not in info for k in META_KEYS):
        return None, f"meta lacks {', '.join(k for k in META_KEYS if not isinstance(info, dict) or k not in info)}"
    return info, None


def list_caches(cache_dir: str | Path) -> list[dict]:
    """Every cache under cache_dir: file, photos, size, crop, bytes, last use (newest first). A cache whose meta
    is broken is listed with `broken` saying why (a run rebuilds it; prune removes it)."""
    rows = []
    for meta in Path(cache_dir).glob("*.json"):
        data = Path(meta).with_suffix(".u8")
        if not data.is_file():
            continue
        info, broken = read_meta(meta)
        row = {"cache": data.name, "bytes": data.stat().st_size, "last_used": meta.stat().st_mtime, "broken": broken}
        if info:
            row.update(photos=info["files"], size="x".join(map(str, info["size"])), crop=info["crop"])
        rows.append(row)
    return sorted(rows, key=lambda r: -r["last_used"])


def prune_caches(cache_dir: str | Path, older_than_days: float = 0.0, log=print) -> list[dict]:
    """Remove caches not used for `older_than_days` (0: all) and broken ones, unless a running command uses them
    (each kept one is logged), and temporaries of killed builds; return the removed."""
    import time

    remove_stale_temporaries(cache_dir)
    cutoff = time.time() - older_than_days * 86400
    removed = []
    for r in [r for r in list_caches(cache_dir) if r["last_used"] <= cutoff or r["broken"]]:
        data = Path(cache_dir) / r["cache"]
        with unused(data) as free:
            if not free:
                log(f"in use by a running command, kept: {r['cache']}")
                continue
            data.with_suffix(".json").unlink(missing_ok=True)  # the meta first: a half-removed cache is never "ready"
            data.unlink(missing_ok=True)
            removed.append(r)
    return removed

