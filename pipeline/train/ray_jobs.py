"""train-all on a Ray cluster: each pending (backbone, fold) pair is a Ray task asking for its GPUs and CPUs.

The run directory must be on storage every node sees (NFS, a shared volume): jobs read the photo cache and
write checkpoints there. Each job checks that at start and fails with a clear message when it cannot see it.
A job whose worker process dies is retried by Ray (max_retries) and resumes from its last.pt, because
train_pair always resumes; finished pairs are skipped before anything is submitted.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import uuid
from pathlib import Path

import pandas as pd

from pipeline.config import Config, save_config
from pipeline.layout import config_yaml, pair_dir
from pipeline.model.models import require_weights
from pipeline.train.jobs import pending_pairs, run_one
from pipeline.train.rundata import load_run_data
from pipeline.train.trainer import require_tensorboard

PROBE_PREFIX = ".storage-probe-"


def _job(cfg: Config, backbone: str, fold: int, probe: str, threads: int, data) -> dict:
    host = socket.gethostname()
    if not Path(probe).is_file():
        return {"backbone": backbone, "fold": fold, "status": "failed", "host": host, "seconds": 0.0,
                "error": f"run_dir {cfg.run_dir} is not visible from node {host}: put it on storage every node "
                         f"mounts at the same path (NFS, a shared volume)"}
    d = pair_dir(cfg.run_dir, backbone, fold)
    d.mkdir(parents=True, exist_ok=True)
    # One line per attempt: where it ran, which process (so a retry after a crash is visible in the summary).
    with open(d / "attempts.jsonl", "a") as f:
        f.write(json.dumps({"host": host, "pid": os.getpid(), "start": time.time()}) + "\n")
    result = run_one(cfg, backbone, fold, device=None, threads=threads, progress=False, data=data)
    return {**result, "host": host}


def train_all_ray(cfg: Config, address: str | None = None, gpus_per_job: float | None = None,
                  cpus_per_job: float = 1, retries: int = 2, log=print) -> pd.DataFrame:
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray backend needs the `ray` extra: pip install 'maskfold[ray]'") from None
    run_dir = Path(cfg.run_dir).resolve()
    # Nodes may start in other working directories: every path they read is made absolute here.
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir), data_dir=str(Path(cfg.data_dir).resolve()),
                              cache_dir=str(Path(cfg.cache_dir).resolve()))
    require_tensorboard(cfg)
    require_weights(cfg.backbones, log)
    save_config(cfg, config_yaml(cfg.run_dir))
    data = load_run_data(cfg, log=log)  # data checks and the photo cache, once, on the driver
    todo, rows = pending_pairs(cfg)
    rows = [{**r, "attempts": 0} for r in rows]
    log(f"{len(todo)} pair(s) to train on Ray, {len(rows)} already finished")
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True)
            started = True
    probe = run_dir / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    probe.write_text("maskfold: every node must see this file\n")
    try:
        gpus = gpus_per_job if gpus_per_job is not None else (1 if ray.cluster_resources().get("GPU", 0) else 0)
        remote = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus, max_retries=retries)(_job)
        shared = ray.put(data)  # one copy in the object store, not one per task
        refs = {remote.remote(cfg, b, k, str(probe), max(1, int(cpus_per_job)), shared): (b, k) for b, k in todo}
        for ref, (b, k) in refs.items():
            try:
                res = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the worker died more often than retries allow
                res = {"backbone": b, "fold": k, "status": "failed", "error": f"{type(e).__name__}: {e}"[:300]}
            attempts = pair_dir(cfg.run_dir, b, k) / "attempts.jsonl"
            res["attempts"] = len(attempts.read_text().splitlines()) if attempts.is_file() else 0
            rows.append(res)
    finally:
        probe.unlink(missing_ok=True)
        if started:
            ray.shutdown()
    return pd.DataFrame(rows).sort_values(["backbone", "fold"]).reset_index(drop=True)
