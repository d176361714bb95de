"""Where everything lives under a run directory, and whether a (backbone, fold) pair is finished.

    <run_dir>/config.yaml            the resolved config of the last command
    <run_dir>/folds.csv              folds stage
    <run_dir>/external/              external-data stage (pseudo-persons in the competition layout)
    <run_dir>/cache/                 decoded photos (uint8 memmaps), shared by every fold and backbone
    <run_dir>/models/<backbone>/fold<k>/{best.pt, last.pt, metrics.csv, oof.npz, test.npz, done.json}
    <run_dir>/ensemble/              ensemble stage: report, blend, weights
    <run_dir>/submission.csv

A pair is finished when its done.json was written under the same training settings (the config hash, which
leaves out paths and settings that do not change the weights) on the same photos, labels and folds (a digest of
folds.csv's content), with the same TTA, and its predictions are all on disk. Paths are never part of that
identity, so a run trained through Ray, moved, or reached through a link is still recognised.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import pandas as pd

PAIR_FILES = ("best.pt", "last.pt", "metrics.csv", "oof.npz", "test.npz", "done.json")
# What identifies a photo set, its labels and its folds; paths are left out (external photos' are absolute).
DIGEST_COLUMNS = ["image_id", "person_id", "gender", "age", "mask", "label", "source", "fold"]


def folds_csv(run_dir) -> Path:
    return Path(run_dir) / "folds.csv"


def config_yaml(run_dir) -> Path:
    return Path(run_dir) / "config.yaml"


def cache_dir(run_dir) -> Path:
    return Path(run_dir) / "cache"


def external_dir(run_dir) -> Path:
    return Path(run_dir) / "external"


def ensemble_dir(run_dir) -> Path:
    return Path(run_dir) / "ensemble"


def submission_csv(run_dir) -> Path:
    return Path(run_dir) / "submission.csv"


def pair_dir(run_dir, backbone: str, fold: int) -> Path:
    return Path(run_dir) / "models" / backbone / f"fold{fold}"


def pair_lock(run_dir, backbone: str, fold: int) -> Path:
    return pair_dir(run_dir, backbone, fold) / ".lock"


def folds_digest(folds: pd.DataFrame) -> str:
    """Content identity of a fold table: its photos, labels and fold assignment, whatever the paths."""
    cols = [c for c in DIGEST_COLUMNS if c in folds.columns]
    table = folds[cols].astype(str).sort_values("image_id", kind="stable")
    return hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _digest_of_file(path: str, mtime_ns: int, size: int) -> str:
    return folds_digest(pd.read_csv(path, dtype=str, keep_default_na=False))


def run_digest(run_dir) -> str | None:
    """folds_digest of <run_dir>/folds.csv, or None when there is none."""
    path = folds_csv(run_dir)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _digest_of_file(str(path), st.st_mtime_ns, st.st_size)


def read_done(run_dir, backbone: str, fold: int) -> dict | None:
    try:
        return json.loads((pair_dir(run_dir, backbone, fold) / "done.json").read_text())
    except (OSError, ValueError):
        return None


def unfinished_reason(cfg, backbone: str, fold: int) -> str | None:
    """None when the pair is finished under this config; else why not, in a few words."""
    d = pair_dir(cfg.run_dir, backbone, fold)
    done = read_done(cfg.run_dir, backbone, fold)
    if done is None:
        return "not trained"
    if done.get("hash") != cfg.pair_hash(backbone):
        return "trained under other settings"
    if done.get("data") != run_digest(cfg.run_dir):
        return "trained on other photos, labels or folds"
    if done.get("tta") != list(cfg.tta):
        return "predicted with another TTA"
    needed = ["best.pt", "oof.npz"] + (["test.npz"] if done.get("test") else [])
    what = {"best.pt": "weights", "oof.npz": "OOF predictions", "test.npz": "test predictions"}
    lost = [f"no {d / n}: {what[n]}" for n in needed if not (d / n).is_file()]
    if lost:
        return "; ".join(lost)
    return None


def finished(cfg, backbone: str, fold: int) -> dict | None:
    """The done.json of a pair finished under this config (see the module docstring), else None."""
    return read_done(cfg.run_dir, backbone, fold) if unfinished_reason(cfg, backbone, fold) is None else None
