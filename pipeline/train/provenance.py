"""What produced a run: when, where, on which device, with which code and library versions.

Written into every pair's done.json and, for a whole train-all, into <run_dir>/run.json, so a figure found weeks
later can be traced to the code that made it.
"""
from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "timm", "albumentations", "numpy", "scikit-learn")


def version() -> str:
    try:
        return metadata.version("maskfold")
    except metadata.PackageNotFoundError:
        return "unknown"


def git_state() -> dict:
    """The commit of the code that runs and whether its tree had uncommitted changes (None outside a checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode:
            return {"git_commit": None, "git_dirty": None}
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def stamp(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds")


def provenance(start: float, device="cpu") -> dict:
    """Everything above for a piece of work that started at `start` (time.time()) and ends now."""
    end = time.time()
    libs = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            libs[lib] = None
    return {"started": stamp(start), "ended": stamp(end), "wall_seconds": round(end - start, 1),
            "host": socket.gethostname(), "device": device_name(device), "maskfold": version(), **git_state(),
            "python": platform.python_version(), "libraries": libs}


def run_hash(cfg) -> str:
    """One hash for a run's training settings: its pairs' hashes together."""
    joined = ",".join(cfg.pair_hash(b) for b in cfg.backbone_names())
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def write_run_json(cfg, start: float, table) -> dict:
    """<run_dir>/run.json for a train-all that started at `start`: provenance, config hash, what each pair did."""
    from pipeline.io import atomic_write_text
    from pipeline.layout import run_json
    from pipeline.model.inference import resolve_device

    info = {**provenance(start, resolve_device(cfg.train.device)), "config_hash": run_hash(cfg),
            "pairs": {str(k): int(v) for k, v in table["status"].value_counts().items()}}
    atomic_write_text(run_json(cfg.run_dir), json.dumps(info, indent=1))
    return info

