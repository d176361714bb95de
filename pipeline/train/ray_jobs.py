"""train-all on a Ray cluster: each pending (backbone, fold) pair is a Ray task asking for its GPUs and CPUs.

The run directory, the data and the photo cache must be on storage every node sees (NFS, a shared volume). A node
that mounts it elsewhere says so with MASKFOLD_PATH_MAP=/head/path=/node/path (several joined by ':'). Each job
first checks that its node sees what it needs; a job on a node that does not fails at once with one line naming
the node and the path, and the pair is sent to another node. A job whose node or worker dies is retried by Ray
and resumes from its last.pt, because train_pair always resumes; finished pairs are skipped before anything is
submitted, and the pair lock keeps two jobs from ever writing one pair, across nodes too. With train.refit the
backbones' full-data refits follow the folds on the driver itself (locally, one after another), not on the cluster.
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
from pipeline.layout import attempts_jsonl, config_yaml, folds_csv, pair_dir
from pipeline.model.models import require_weights
from pipeline.train.jobs import pending_pairs, run_one, train_refits
from pipeline.train.rundata import RunData, load_run_data
from pipeline.tracking import open_tracking
from pipeline.train.trainer import require_tensorboard

PROBE_PREFIX = ".storage-probe-"
LOCK_WAIT_S = 90  # a retry may find its lost predecessor's lock until the storage lets it go


class StorageUnavailable(RuntimeError):
    """The node a job landed on does not see the shared storage."""


def path_map() -> list[tuple[str, str]]:
    """This node's MASKFOLD_PATH_MAP: where it mounts what the head (the driver) calls the prefix on the left."""
    pairs = [p.split("=", 1) for p in os.environ.get("MASKFOLD_PATH_MAP", "").split(":") if "=" in p]
    return sorted(((a.rstrip("/"), b.rstrip("/")) for a, b in pairs), key=lambda ab: -len(ab[0]))


def on_this_node(path: str | Path | None) -> str | None:
    """A driver path as this node sees it."""
    if path is None:
        return None
    text = str(path)
    for head, here in path_map():
        if text == head or text.startswith(head + "/"):
            return here + text[len(head):]
    return text


def storage_problem(cfg: Config, data: RunData, probe: str) -> str | None:
    """What this node cannot see of the run, in a few words, or None."""
    needed = [("the run directory", probe), ("folds.csv", folds_csv(cfg.run_dir)), ("the photo cache", data.train_cache)]
    if data.eval_cache is not None:
        needed.append(("the eval photo cache", data.eval_cache))
    for what, path in needed:
        seen = on_this_node(path)
        if not Path(seen).exists():
            mapped = f" (mapped from {path} by MASKFOLD_PATH_MAP)" if seen != str(path) else ""
            return f"cannot see {what}: {seen}{mapped}"
    return None


def _job(cfg: Config, backbone: str, fold: int, probe: str, threads: int, data: RunData) -> dict:
    import ray

    node, host = ray.get_runtime_context().get_node_id()[:12], socket.gethostname()
    problem = storage_problem(cfg, data, probe)
    if problem:
        raise StorageUnavailable(f"node {node} ({host}) {problem}; mount the shared storage there at the same path "
                                 f"or set MASKFOLD_PATH_MAP on that node")
    cfg = dataclasses.replace(cfg, run_dir=on_this_node(cfg.run_dir), data_dir=on_this_node(cfg.data_dir),
                              cache_dir=on_this_node(cfg.cache_dir))
    data = dataclasses.replace(data, train_cache=Path(on_this_node(data.train_cache)),
                               eval_cache=data.eval_cache and Path(on_this_node(data.eval_cache)))
    d = pair_dir(cfg.run_dir, backbone, fold)
    d.mkdir(parents=True, exist_ok=True)
    # One line per attempt and one when it ends: where it ran and which process, so a retry after a lost node and
    # the jobs that shared a node are visible.
    attempts = attempts_jsonl(d)
    with open(attempts, "a") as f:
        f.write(json.dumps({"node": node, "host": host, "pid": os.getpid(), "start": time.time()}) + "\n")
    result = run_one(cfg, backbone, fold, device=None, threads=threads, progress=False, data=data,
                     lock_wait_s=LOCK_WAIT_S)
    with open(attempts, "a") as f:
        f.write(json.dumps({"node": node, "pid": os.getpid(), "end": time.time(), "status": result["status"]}) + "\n")
    return {**result, "host": host, "node": node}


def _connect(ray, address: str | None) -> bool:
    """Join the cluster at `address`, or start a local Ray; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
        return False
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True)
    return True


def train_all_ray(cfg: Config, address: str | None = None, gpus_per_job: float | None = None,
                  cpus_per_job: float = 1, retries: int = 2, log=print) -> pd.DataFrame:
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    except ImportError:
        raise RuntimeError("the ray backend needs the `ray` extra: pip install 'maskfold[ray]'") from None
    run_dir = Path(cfg.run_dir).resolve()
    # Nodes may start in other working directories: every path they read is made absolute here.
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir), data_dir=str(Path(cfg.data_dir).resolve()),
                              cache_dir=str(Path(cfg.cache_dir).resolve()))
    require_tensorboard(cfg)
    require_weights(cfg.backbones, log)
    data = load_run_data(cfg, log=log)  # data checks and the photo cache, once, on the driver
    save_config(cfg, config_yaml(cfg.run_dir))
    open_tracking(cfg, log)  # made by the driver: workers log their pairs' children to it (tracking.json)
    todo, rows = pending_pairs(cfg)
    rows = [{**r, "attempts": 0} for r in rows]
    log(f"{len(todo)} pair(s) to train on Ray, {len(rows)} already finished")
    started = _connect(ray, address)
    probe = run_dir / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    probe.write_text("maskfold: every node must see this file\n")
    try:
        gpus = gpus_per_job if gpus_per_job is not None else (1 if ray.cluster_resources().get("GPU", 0) else 0)
        remote = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus, max_retries=retries)(_job)
        shared = ray.put(data)  # one copy in the object store, not one per task
        args = (str(probe), max(1, int(cpus_per_job)), shared)
        pending = {remote.options(scheduling_strategy="SPREAD").remote(cfg, b, k, *args): (b, k) for b, k in todo}
        blind, notes = set(), {}  # nodes that cannot see the storage; per pair, what went wrong where
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            b, k = pending.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a node without the storage, or a job that died too often
                cause = getattr(e, "cause", e)
                if isinstance(cause, StorageUnavailable):
                    log(f"{b} fold {k}: {cause}")
                    blind.add(str(cause).split()[1])
                    notes.setdefault((b, k), []).append(str(cause).split(";")[0])
                    elsewhere = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"][:12] not in blind
                                 and n["Resources"].get("CPU", 0) >= cpus_per_job
                                 and n["Resources"].get("GPU", 0) >= gpus]
                    if elsewhere and len(notes[(b, k)]) <= retries:
                        target = elsewhere[(k + len(notes[(b, k)])) % len(elsewhere)]
                        strategy = NodeAffinitySchedulingStrategy(node_id=target, soft=True)
                        pending[remote.options(scheduling_strategy=strategy).remote(cfg, b, k, *args)] = (b, k)
                        continue
                res = {"backbone": b, "fold": k, "status": "failed", "error": f"{type(e).__name__}: {cause}"[:300]}
            attempts = attempts_jsonl(pair_dir(cfg.run_dir, b, k))
            starts = [x for x in attempts.read_text().splitlines() if '"start"' in x] if attempts.is_file() else []
            res["attempts"] = len(starts) + len(notes.get((b, k), []))
            if notes.get((b, k)):
                res["notes"] = "; ".join(notes[(b, k)])
            rows.append(res)
    finally:
        probe.unlink(missing_ok=True)
        if started:
            ray.shutdown()
    table = pd.DataFrame(rows).sort_values(["backbone", "fold"]).reset_index(drop=True)
    if cfg.train.refit:
        # One refit per backbone, after every fold: run here, on the driver, one after another.
        table = pd.concat([table, pd.DataFrame(train_refits(cfg, data, 1, log))], ignore_index=True)
    return table
