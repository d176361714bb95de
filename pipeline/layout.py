"""Where everything lives under a run directory, and whether a (backbone, fold) pair is finished.

    <run_dir>/config.yaml            the resolved config of the last command
    <run_dir>/folds.csv              folds stage
    <run_dir>/external/              external-data stage (pseudo-persons in the competition layout)
    <run_dir>/models/<backbone>/fold<k>/{best.pt, last.pt, metrics.csv, oof.npz, test.npz, done.json}
    <run_dir>/ensemble/              ensemble stage: report, blend, weights.json (what predict replays)
    <run_dir>/gpu-locks/, tensorboard/  claims of local GPUs; TensorBoard logs when train.tensorboard is on
    <run_dir>/submission.csv
    <run_dir>/log.txt                what every command printed, timestamped, each entry led by its command line
    <run_dir>/run.json               provenance of the last train-all: times, host, device, code and library versions

The decoded-photo cache is the project's, not a run's: `cache_dir` (default runs/.cache/), shared by every run.

A pair is finished when its done.json was written under the same training settings (the config hash, which
leaves out paths and settings that do not change the weights) on the same photos, labels and folds (a digest of
folds.csv's content), with the same TTA, and its predictions are all on disk. Paths are never part of that
identity, so a run trained through Ray, moved, or reached through a link is still recognised.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
from pathlib import Path

import pandas as pd

PAIR_FILES = ("best.pt", "last.pt", "metrics.csv", "oof.npz", "test.npz", "done.json")
# What identifies a photo set, its labels and its folds; paths are left out (external photos' are absolute).
DIGEST_COLUMNS = ["image_id", "person_id", "gender", "age", "mask", "label", "source", "fold"]


def _under_run(name: str):
    def path(run_dir) -> Path:
        return Path(run_dir) / name
    return path


folds_csv = _under_run("folds.csv")
config_yaml = _under_run("config.yaml")
external_dir = _under_run("external")
ensemble_dir = _under_run("ensemble")
submission_csv = _under_run("submission.csv")
log_txt = _under_run("log.txt")
job_lines = _under_run(".job-lines.txt")  # parallel jobs' lines on their way to the terminal and log.txt
run_json = _under_run("run.json")


def pair_dir(run_dir, backbone: str, fold: int) -> Path:
    return Path(run_dir) / "models" / backbone / f"fold{fold}"


def gpu_lock(run_dir, index: int) -> Path:
    return Path(run_dir) / "gpu-locks" / f"cuda{index}.lock"


def tensorboard_dir(run_dir, backbone: str, fold: int) -> Path:
    return Path(run_dir) / "tensorboard" / backbone / f"fold{fold}"


def weights_json(run_dir) -> Path:
    return ensemble_dir(run_dir) / "weights.json"


def pair_lock(run_dir, backbone: str, fold: int) -> Path:
    return pair_dir(run_dir, backbone, fold) / ".lock"


def folds_digest(folds: pd.DataFrame) -> str:
    """Content identity of a fold table: its photos, labels and fold assignment, whatever the paths."""
    cols = [c for c in DIGEST_COLUMNS if c in folds.columns]
    table = folds[cols].astype(str).sort_values("image_id", kind="stable")
    return hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()[:16]


def _digest_of_bytes(raw: bytes) -> str:
    return folds_digest(pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False))


def read_folds(run_dir) -> tuple[pd.DataFrame, str]:
    """folds.csv as training uses it, and its digest, both from one read (a rerun of `folds` cannot slip between)."""
    raw = folds_csv(run_dir).read_bytes()
    return pd.read_csv(io.BytesIO(raw), dtype={"person_id": str, "race": str}), _digest_of_bytes(raw)


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, mtime_ns: int, size: int, kind: str) -> str:
    raw = Path(path).read_bytes()
    if kind == "folds":
        return _digest_of_bytes(raw)
    ids = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)["ImageID"]
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _digest(path: Path, kind: str) -> str | None:
    try:
        st = path.stat()
        return _file_digest(str(path), st.st_mtime_ns, st.st_size, kind)
    except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def run_digest(run_dir) -> str | None:
    """folds_digest of <run_dir>/folds.csv, or None when there is none."""
    return _digest(folds_csv(run_dir), "folds")


def eval_digest(data_dir) -> str | None:
    """Identity of the eval set (eval/info.csv's ImageIDs in order), or None for a train-only data set."""
    return _digest(Path(data_dir) / "eval" / "info.csv", "eval")


def read_done(run_dir, backbone: str, fold: int) -> dict | None:
    try:
        return json.loads((pair_dir(run_dir, backbone, fold) / "done.json").read_text())
    except (OSError, ValueError):
        return None


def pair_status(cfg, backbone: str, fold: int) -> tuple[dict | None, str | None]:
    """(done.json, None) when the pair is finished under this config; else (done.json or None, why not)."""
    done = read_done(cfg.run_dir, backbone, fold)
    return done, None if done is None else _unfinished(cfg, backbone, fold, done)


def _unfinished(cfg, backbone: str, fold: int, done: dict) -> str | None:
    d = pair_dir(cfg.run_dir, backbone, fold)
    if done.get("hash") != cfg.pair_hash(backbone):
        return "trained under other settings"
    if done.get("data") != run_digest(cfg.run_dir):
        return "trained on other photos, labels or folds"
    if done.get("tta") != list(cfg.tta):
        return "predicted with another TTA"
    if done.get("eval") != eval_digest(cfg.data_dir):
        return "test predictions are for another eval set"
    needed = ["best.pt", "oof.npz"] + (["test.npz"] if done.get("test") else [])
    what = {"best.pt": "weights", "oof.npz": "OOF predictions", "test.npz": "test predictions"}
    lost = [f"no {d / n}: {what[n]}" for n in needed if not (d / n).is_file()]
    if lost:
        return "; ".join(lost)
    return None


def unfinished_reason(cfg, backbone: str, fold: int) -> str | None:
    """None when the pair is finished under this config; else why not, in a few words."""
    done, why = pair_status(cfg, backbone, fold)
    return "not trained" if done is None else why


def finished(cfg, backbone: str, fold: int) -> dict | None:
    """The done.json of a pair finished under this config (see the module docstring), else None."""
    done, why = pair_status(cfg, backbone, fold)
    return done if done is not None and why is None else None
