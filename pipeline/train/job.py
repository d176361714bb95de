"""What one training job is: a backbone's fold pair, or its full-data refit, described by value so that every
backend (in this process, a local worker process, a Ray node) runs the same thing."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import BadInput
from pipeline.layout import pair_dir, refit_dir
from pipeline.records import Done


@dataclass(frozen=True)
class Job:
    backbone: str
    fold: int | None  # the validation fold; None for a refit, which validates nothing
    epochs: int
    # The job's random stream: fold k draws stream k; a refit the one after the last fold's, so it shares none
    # with a fold. Its init, sampler and mix seeds derive from it and the config's seed (pipeline.train.trainer).
    seed: int
    identity: str  # the hash its done.json, best.pt and last.pt carry when they are this job's
    folder: Path  # where it writes (pipeline.layout's job files)

    @property
    def name(self) -> str:
        """How messages name it."""
        return job_name(self.backbone, self.fold)


def job_name(backbone: str, fold: int | None) -> str:
    return f"{backbone} refit" if fold is None else f"{backbone} fold {fold}"


@dataclass
class JobResult:
    """What a job's run hands back, from whatever process (a worker, a Ray node): a row of train-all's summary."""
    backbone: str
    fold: int | None  # None for a refit
    status: str  # done, skipped, failed, busy (another process holds it) or waiting (a refit's folds are not done)
    seconds: float = 0.0
    error: str | None = None
    done: Done | None = None  # the job's done record, where it is done or skipped
    host: str | None = None  # where it ran (done.host, or the Ray node's host name)
    node: str | None = None  # Ray: the node it ran on, how many attempts it took and what went wrong where
    attempts: int | None = None
    notes: str | None = None

    @classmethod
    def of(cls, job: Job, status: str, **fields) -> JobResult:
        return cls(job.backbone, job.fold, status, **fields)

    @property
    def name(self) -> str:
        return job_name(self.backbone, self.fold)

    def row(self) -> dict:
        """Its row of the summary table: where and how it ran, a pair's val_f1, Ray's node, attempts and notes."""
        row = {"host": self.host or (self.done and self.done.host), "device": self.done and self.done.device,
               "status": self.status, "seconds": self.seconds, "error": self.error,
               "val_f1": getattr(self.done, "val_f1", None), "node": self.node, "attempts": self.attempts,
               "notes": self.notes}
        return {"backbone": self.backbone, "fold": self.fold,
                **{k: v for k, v in row.items() if v is not None or k in ("host", "device", "status", "seconds")}}


def fold_job(cfg, backbone: str, fold: int) -> Job:
    if fold < 0 or fold >= cfg.folds.n_splits:
        raise BadInput(f"fold {fold} is out of range: folds.n_splits is {cfg.folds.n_splits}")
    return Job(backbone, fold, cfg.resolved(cfg.backbone(backbone))["epochs"], fold, cfg.pair_hash(backbone),
               pair_dir(cfg.run_dir, backbone, fold))


def refit_identity(cfg, backbone: str, epochs: int) -> str:
    """The refit's hash: its backbone's settings and how many epochs it trains."""
    return f"{cfg.pair_hash(backbone)}-refit{epochs}"


def refit_job(cfg, backbone: str, epochs: int) -> Job:
    return Job(backbone, None, epochs, cfg.folds.n_splits, refit_identity(cfg, backbone, epochs),
               refit_dir(cfg.run_dir, backbone))


@dataclass(frozen=True)
class RunOptions:
    """How a runner runs a job on its machine (not what the job is: that never changes its result)."""
    device: str | None = None  # None: train.device (or a claimed GPU, where jobs share several)
    threads: int | None = None  # torch's CPU threads in a worker process
    progress: bool = True  # progress bars (off where jobs run side by side)
    n_gpus: int = 0  # GPUs the local jobs share, each claiming one (pipeline.train.worker.claim_gpu)
    lines_file: str | None = None  # a worker process's lines go there, for the parent to relay
    lock_wait_s: float | None = None  # a retry after a lost node may meet its predecessor's lock for a moment
    # the tracking warnings given by this process's jobs: a store that is down gives one line, not one per job
    warned: set = field(default_factory=set, compare=False)
