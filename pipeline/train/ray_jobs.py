"""train-all on a Ray cluster: each pending job (a fold pair or a refit) is a Ray task asking for its GPUs and CPUs.

The run directory, the data and the photo cache must be on storage every node sees (NFS, a shared volume). A node
that mounts it elsewhere says so with MASKFOLD_PATH_MAP=/head/path=/node/path (several joined by ':'). Each job
first checks that its node sees what it needs; a job on a node that does not fails at once with one line naming
the node and the path, and the pair is sent to another node. A job whose node or worker dies is retried by Ray
and resumes from its last.pt, as every job does (pipeline.train.state); finished pairs are skipped before anything
is submitted, and the job's lock keeps two tasks from ever writing one job, across nodes too. A refit is a task like
any other, submitted as soon as its backbone's folds are finished (pipeline.train.schedule).
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import MissingExtra
from pipeline.layout import attempts_jsonl, folds_csv, storage_probe
from pipeline.outcome import told
from pipeline.train.job import Job, JobResult, RunOptions
from pipeline.train.rundata import RunData
from pipeline.train.worker import run_one

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


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # HOST:PORT or auto; None starts a local Ray for this command
    gpus_per_job: float | None = None  # None: 1 where the cluster has GPUs
    cpus_per_job: float = 1
    retries: int = 2  # of a task whose worker died


def absolute_paths(cfg: Config) -> Config:
    """Nodes may start in other working directories: every path they read is made absolute here."""
    return dataclasses.replace(cfg, run_dir=str(Path(cfg.run_dir).resolve()),
                               data_dir=str(Path(cfg.data_dir).resolve()), cache_dir=str(Path(cfg.cache_dir).resolve()))


def _on_node(cfg: Config, job: Job, data: RunData) -> tuple[Config, Job, RunData]:
    """The driver's config, job and data with their paths as this node mounts them."""
    cfg = dataclasses.replace(cfg, run_dir=on_this_node(cfg.run_dir), data_dir=on_this_node(cfg.data_dir),
                              cache_dir=on_this_node(cfg.cache_dir))
    data = dataclasses.replace(data, train_cache=Path(on_this_node(data.train_cache)),
                               eval_cache=data.eval_cache and Path(on_this_node(data.eval_cache)))
    return cfg, dataclasses.replace(job, folder=Path(on_this_node(job.folder))), data


def _job(cfg: Config, job: Job, probe: str, threads: int, data: RunData) -> JobResult:
    import ray

    node, host = ray.get_runtime_context().get_node_id()[:12], socket.gethostname()
    problem = storage_problem(cfg, data, probe)
    if problem:
        raise StorageUnavailable(f"node {node} ({host}) {problem}; mount the shared storage there at the same path "
                                 f"or set MASKFOLD_PATH_MAP on that node")
    cfg, job, data = _on_node(cfg, job, data)
    job.folder.mkdir(parents=True, exist_ok=True)
    # One line per attempt and one when it ends: where it ran and which process, so a retry after a lost node and
    # the jobs that shared a node are visible.
    attempts = attempts_jsonl(job.folder)
    with open(attempts, "a") as f:
        f.write(json.dumps({"node": node, "host": host, "pid": os.getpid(), "start": time.time()}) + "\n")
    result = run_one(cfg, job, data, RunOptions(threads=threads, progress=False, lock_wait_s=LOCK_WAIT_S))
    with open(attempts, "a") as f:
        f.write(json.dumps({"node": node, "pid": os.getpid(), "end": time.time(), "status": result.status}) + "\n")
    return dataclasses.replace(result, host=host, node=node)


def _connect(ray, address: str | None) -> bool:
    """Join the cluster at `address`, or start a local Ray; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
        return False
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True)
    return True


def _import_ray():
    try:
        import ray
    except ImportError:
        raise MissingExtra("the ray backend needs the `ray` extra: pip install 'maskfold[ray]'") from None
    return ray


class RayBackend:
    """Jobs as Ray tasks: as many at once as the cluster's resources allow (Ray queues the rest). A task on a node
    that cannot see the storage is sent to another node, up to `retries` times."""

    def __init__(self, cfg: Config, data: RunData, opts: RayOptions, log=print):
        self.ray, self.cfg, self.data, self.opts, self.log = _import_ray(), cfg, data, opts, log
        self.pending: dict = {}  # task ref -> job
        self.blind, self.notes = set(), {}  # nodes that cannot see the storage; per job, what went wrong where

    def __enter__(self):
        self.started = _connect(self.ray, self.opts.address)
        self.probe = storage_probe(self.cfg.run_dir, uuid.uuid4().hex)
        self.probe.write_text("maskfold: every node must see this file\n")
        gpus = self.opts.gpus_per_job
        self.gpus = gpus if gpus is not None else (1 if self.ray.cluster_resources().get("GPU", 0) else 0)
        self.remote = self.ray.remote(num_cpus=self.opts.cpus_per_job, num_gpus=self.gpus,
                                      max_retries=self.opts.retries)(_job)
        self.args = (str(self.probe), max(1, int(self.opts.cpus_per_job)), self.ray.put(self.data))  # one copy
        return self

    def __exit__(self, *exc):
        self.probe.unlink(missing_ok=True)
        if self.started:
            self.ray.shutdown()

    def room(self) -> bool:
        return True  # Ray holds tasks until a node has the resources

    def running(self) -> list[str]:
        return [job.name for job in self.pending.values()]

    def start(self, job: Job, strategy="SPREAD") -> None:
        self.pending[self.remote.options(scheduling_strategy=strategy).remote(self.cfg, job, *self.args)] = job

    def next_result(self) -> JobResult:
        while True:
            (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
            job = self.pending.pop(ref)
            try:
                res = self.ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a node without the storage, or a job that died too often
                cause = getattr(e, "cause", e)
                if isinstance(cause, StorageUnavailable) and self._elsewhere(job, cause):
                    continue
                res = JobResult.of(job, "failed", error=told(cause, self.cfg.run_dir)[0][:300])
            return self._with_attempts(job, res)

    def _elsewhere(self, job: Job, cause: Exception) -> bool:
        """Send the job to a node not known to be blind; False when there is none left to try."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.log(f"{job.name}: {cause}")
        self.blind.add(str(cause).split()[1])
        tries = self.notes.setdefault(job.name, [])
        tries.append(str(cause).split(";")[0])
        nodes = [n["NodeID"] for n in self.ray.nodes() if n["Alive"] and n["NodeID"][:12] not in self.blind
                 and n["Resources"].get("CPU", 0) >= self.opts.cpus_per_job
                 and n["Resources"].get("GPU", 0) >= self.gpus]
        if not nodes or len(tries) > self.opts.retries:
            return False
        target = nodes[(job.seed + len(tries)) % len(nodes)]
        self.start(job, NodeAffinitySchedulingStrategy(node_id=target, soft=True))
        return True

    def _with_attempts(self, job: Job, res: JobResult) -> JobResult:
        attempts = attempts_jsonl(job.folder)
        starts = [x for x in attempts.read_text().splitlines() if '"start"' in x] if attempts.is_file() else []
        return dataclasses.replace(res, attempts=len(starts) + len(self.notes.get(job.name, [])),
                                   notes="; ".join(self.notes.get(job.name, [])) or None)
