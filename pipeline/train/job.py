"""What one training job is: a backbone's fold pair, or its full-data refit, described by value so that every
backend (in this process, a local worker process, a Ray node) runs the same thing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInput
from pipeline.layout import pair_dir, refit_dir

FOLD, REFIT_JOB = "fold", "refit"


@dataclass(frozen=True)
class Job:
    kind: str  # FOLD or REFIT_JOB
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
        return f"{self.backbone} fold {self.fold}" if self.kind == FOLD else f"{self.backbone} refit"

    @property
    def predicts_oof(self) -> bool:
        return self.kind == FOLD


def fold_job(cfg, backbone: str, fold: int) -> Job:
    if fold < 0 or fold >= cfg.folds.n_splits:
        raise BadInput(f"fold {fold} is out of range: folds.n_splits is {cfg.folds.n_splits}")
    return Job(FOLD, backbone, fold, cfg.resolved(cfg.backbone(backbone))["epochs"], fold, cfg.pair_hash(backbone),
               pair_dir(cfg.run_dir, backbone, fold))


def refit_identity(cfg, backbone: str, epochs: int) -> str:
    """The refit's hash: its backbone's settings and how many epochs it trains."""
    return f"{cfg.pair_hash(backbone)}-refit{epochs}"


def refit_job(cfg, backbone: str, epochs: int) -> Job:
    return Job(REFIT_JOB, backbone, None, epochs, cfg.folds.n_splits, refit_identity(cfg, backbone, epochs),
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
