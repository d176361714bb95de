"""train-all: every job of plan(cfg) (each backbone's fold pairs; with train.refit, its full-data refit once its folds
are finished), finished ones skipped, failures survived, through one scheduling loop (pipeline.train.schedule).

Locally, jobs run in this process (--jobs 1) or in worker processes, --jobs at a time (one GPU each where there are
several); `--backend ray` hands the same jobs to a Ray cluster (pipeline.train.ray_jobs). Both go through the one
preflight below first.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
from contextlib import ExitStack

import pandas as pd

from pipeline.config import Config, save_config
from pipeline.layout import config_yaml, job_lines
from pipeline.model.metrics import backbone_oof
from pipeline.outcome import told
from pipeline.progress import relay
from pipeline.tracking import open_tracking
from pipeline.train.face_job import warm_embeddings, without_unavailable
from pipeline.train.job import Job, JobResult, RunOptions, job_name
from pipeline.train.ray_jobs import RayBackend, RayOptions, absolute_paths
from pipeline.train.rundata import RunData, load_run_data
from pipeline.train.schedule import run_plan
from pipeline.train.worker import gpus_to_share, run_one


def preflight(cfg: Config, log=print, warned: set | None = None) -> RunData:
    """What every backend prepares once, before any job: the data (checked, and its photo caches built), the
    tracked run and the saved config. (The extras and the weights are the command's to check, before this.)"""
    data = load_run_data(cfg, log=log)
    data.embeddings = warm_embeddings(cfg, data, log)  # a face member's photos once here, not raced for by its jobs
    open_tracking(cfg, log, warned)  # the run's tracked run, made here before the jobs log their children to it
    save_config(cfg, config_yaml(cfg.run_dir))  # what compare, a blend of runs and predict read back; once accepted
    return data


def train_all(cfg: Config, jobs: int = 1, ray: RayOptions | None = None, log=print,
              warned: set | None = None) -> pd.DataFrame:
    """Every job of the config, skipping finished ones; a summary row each (pairs by backbone and fold, then the
    refits in the config's order). With `ray`, on a Ray cluster; else here, `jobs` at a time (warned: RunOptions').
    The extras, the cache folder and the weights are the caller's to check first (train-all's command does:
    pipeline.preflight.require_training_ready)."""
    warned = set() if warned is None else warned
    cfg = without_unavailable(cfg, log)  # a face member without the `faces` extra: skipped, saying so
    cfg = absolute_paths(cfg) if ray is not None else cfg  # a Ray worker's directory is not this one
    data = preflight(cfg, log, warned)
    backend = RayBackend(cfg, data, ray, log) if ray is not None else LocalBackend(cfg, data, jobs, log, warned)
    with backend:
        rows = run_plan(cfg, backend, log)
    return summary(cfg, rows)


def summary(cfg: Config, results: list[JobResult]) -> pd.DataFrame:
    """A row per job: pairs by backbone and fold, then the refits (fold <NA>) in the config's order."""
    pairs = sorted((r for r in results if r.fold is not None), key=lambda r: (r.backbone, r.fold))
    order = {b: i for i, b in enumerate(cfg.backbone_names())}
    refits = sorted((r for r in results if r.fold is None), key=lambda r: order[r.backbone])
    table = pd.DataFrame([r.row() for r in pairs + refits]).reset_index(drop=True)
    if len(table):
        table["fold"] = table["fold"].astype("Int64")
    if "attempts" in table:  # Ray: a skipped job made no attempt
        table["attempts"] = table["attempts"].fillna(0).astype(int)
    return table


def row_name(row) -> str:
    """How messages name the job of a summary row."""
    return job_name(row.backbone, None if pd.isna(row.fold) else int(row.fold))


class LocalBackend:
    """Jobs on this machine: in this process, one at a time, with progress bars (jobs=1); else in `jobs` worker
    processes, their lines relayed to the log and the CPU threads (or GPUs) shared out among them."""

    def __init__(self, cfg: Config, data: RunData, jobs: int, log=print, warned: set | None = None):
        self.cfg, self.data, self.jobs, self.log = cfg, data, max(1, jobs), log
        self.running_jobs: dict = {}  # future (or, in this process, the job itself) -> job
        self.stack = ExitStack()
        self.warned = set() if warned is None else warned
        if self.jobs == 1:
            self.opts = RunOptions(warned=self.warned)
            return
        self.opts = RunOptions(threads=max(1, (os.cpu_count() or 1) // self.jobs), progress=False,
                               n_gpus=gpus_to_share(cfg.train.device), lines_file=str(job_lines(cfg.run_dir)))

    def __enter__(self):
        if self.jobs > 1:
            from joblib.externals.loky import ProcessPoolExecutor

            # a warning given already is not repeated: each worker tells once of a store that went down
            self.stack.enter_context(relay(job_lines(self.cfg.run_dir), self.log, warned=self.warned))
            # The run's own pool, not loky's process-wide reusable one: joblib's Parallel (the photo cache) reuses
            # that one when the worker counts match and fails on it, as it lacks joblib's memmapping set-up.
            self.pool = ProcessPoolExecutor(max_workers=self.jobs)
        return self

    def _submit(self, job: Job):
        """The job's future; where a worker's death broke the pool (its jobs are reported failed), in a fresh one."""
        try:
            return self.pool.submit(run_one, self.cfg, job, self.data, self.opts)
        except cf.BrokenExecutor:
            self.pool.shutdown(wait=False, kill_workers=True)
            self.pool = type(self.pool)(max_workers=self.jobs)
            return self.pool.submit(run_one, self.cfg, job, self.data, self.opts)

    def __exit__(self, exc_type, *exc):
        if self.jobs > 1:  # after an interrupt or error, do not wait for jobs nobody will collect
            self.pool.shutdown(wait=exc_type is None, kill_workers=exc_type is not None)
        self.stack.close()

    def room(self) -> bool:
        return len(self.running_jobs) < self.jobs

    def running(self) -> list[str]:
        return [job.name for job in self.running_jobs.values()]

    def start(self, job: Job) -> None:
        if self.jobs == 1:
            self.running_jobs[job] = job  # run when its result is asked for, here
        else:
            self.running_jobs[self._submit(job)] = job

    def next_result(self) -> JobResult:
        if self.jobs == 1:
            job = self.running_jobs.popitem()[1]
            return run_one(self.cfg, job, self.data, self.opts)
        done, _ = cf.wait(list(self.running_jobs), return_when=cf.FIRST_COMPLETED)
        future = next(iter(done))
        job = self.running_jobs.pop(future)
        try:
            return future.result()
        except Exception as e:  # noqa: BLE001 - a worker process that died (killed, out of memory)
            # a death takes down every job of the pool; each resumes from its last epoch on the next train-all
            error = (f"a worker process died (killed, or out of memory: {type(e).__name__}); rerun train-all to "
                     f"resume it from its last finished epoch") if isinstance(e, cf.BrokenExecutor) else \
                told(e, self.cfg.run_dir)[0]
            return JobResult.of(job, "failed", error=error)


def oof_scores(cfg: Config) -> dict[str, dict]:
    """Each backbone's out-of-fold scores over the folds that have predictions."""
    out = {}
    for b in cfg.backbone_names():
        oof = backbone_oof(cfg.run_dir, b, cfg.folds.n_splits)
        if oof:
            out[b] = {**oof["scores"], "folds": oof["folds"]}
    return out
