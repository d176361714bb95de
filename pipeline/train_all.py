"""train-all: every (backbone, fold) pair of a config, skipping finished ones, surviving failures.

Pairs are independent jobs. Locally they run through joblib (one process per job, one GPU each where there are
several); `--backend ray` hands them to a Ray cluster (pipeline.ray_backend).
"""
from __future__ import annotations

import os
import time
import traceback

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from pipeline.config import Config
from pipeline.metrics import scores
from pipeline.train import finished, load_run_data, pair_dir, train_pair


def pairs_of(cfg: Config) -> list[tuple[str, int]]:
    return [(b, k) for b in cfg.backbone_names() for k in range(cfg.folds.n_splits)]


def run_one(cfg: Config, backbone: str, fold: int, device: str | None, threads: int | None, progress: bool) -> dict:
    """One job: never raises, so one pair's failure cannot stop the others."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    start = time.time()
    try:
        info = train_pair(cfg, backbone, fold, device=device, progress=progress,
                          log=lambda m: print(m, flush=True))
    except Exception as e:  # noqa: BLE001 - reported in the summary
        traceback.print_exc()
        return {"backbone": backbone, "fold": fold, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "seconds": round(time.time() - start, 1)}
    return {"backbone": backbone, "fold": fold, "host": info.get("host"), "device": info.get("device"),
            "val_f1": info.get("val_f1"), "status": info["status"], "seconds": round(time.time() - start, 1)}


def devices_for(n_jobs: int, device: str) -> list[str | None]:
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(n_jobs)]
    return [None] * n_jobs


def train_all(cfg: Config, jobs: int = 1, log=print) -> pd.DataFrame:
    load_run_data(cfg, log=log)  # check data and build caches once, before any job starts
    todo, rows = [], []
    for b, k in pairs_of(cfg):
        done = finished(cfg, b, k)
        if done:
            rows.append({"backbone": b, "fold": k, "status": "skipped", "val_f1": done["val_f1"],
                         "host": done.get("host"), "device": done.get("device"), "seconds": 0.0})
        else:
            todo.append((b, k))
    log(f"{len(todo)} pair(s) to train, {len(rows)} already finished")
    jobs = max(1, min(jobs, len(todo) or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    devs = devices_for(jobs, cfg.train.device)
    results = Parallel(n_jobs=jobs, backend="loky" if jobs > 1 else "sequential")(
        delayed(run_one)(cfg, b, k, devs[i % jobs], threads, progress=jobs == 1) for i, (b, k) in enumerate(todo)
    )
    table = pd.DataFrame(rows + list(results)).sort_values(["backbone", "fold"]).reset_index(drop=True)
    return table


def oof_scores(cfg: Config) -> dict[str, dict]:
    """Each backbone's out-of-fold scores over the folds that have predictions."""
    out = {}
    for b in cfg.backbone_names():
        y, p = [], []
        for k in range(cfg.folds.n_splits):
            f = pair_dir(cfg.run_dir, b, k) / "oof.npz"
            if f.is_file():
                z = np.load(f)
                y.append(z["labels"])
                p.append(z["logits"].argmax(1))
        if y:
            out[b] = {**scores(np.concatenate(y), np.concatenate(p)), "folds": len(y)}
    return out
