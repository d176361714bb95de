"""One job as every backend runs it, in whatever process: its CPU threads, its GPU, its lines, its failure kept to
a result row."""
from __future__ import annotations

import dataclasses
import os
import time
import traceback
from contextlib import ExitStack, contextmanager

from pipeline.config import Config
from pipeline.io import Busy, file_lock
from pipeline.layout import gpu_lock
from pipeline.outcome import told
from pipeline.quiet import libraries_quiet
from pipeline.train.job import Job, JobResult, RunOptions
from pipeline.train.pair import run_job
from pipeline.train.rundata import RunData


@contextmanager
def claim_gpu(run_dir, n_gpus: int):
    """Hold one free GPU for this job: a lock per GPU under the run dir.

    Jobs finish at different times, so a fixed round-robin could put two running jobs on one GPU; a claim
    cannot. The locks are flock()s, so a killed job's claim is free at once.
    """
    with ExitStack() as held:
        for i in range(n_gpus):
            try:
                held.enter_context(file_lock(gpu_lock(run_dir, i)))
            except Busy:
                continue
            yield f"cuda:{i}"
            return
        yield f"cuda:{os.getpid() % n_gpus}"  # more jobs than GPUs: share


def run_one(cfg: Config, job: Job, data: RunData | None, opts: RunOptions) -> JobResult:
    """One job, as any backend runs it: never raises, so one job's failure cannot stop the others.

    `data` is the checked folds table and caches that train-all loaded once before starting its jobs. A job in a
    process of its own appends its lines to opts.lines_file, which the parent prints (progress.relay).
    """
    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.n_gpus > 1 and opts.device is None:
        with claim_gpu(cfg.run_dir, opts.n_gpus) as gpu:
            return run_one(cfg, job, data, dataclasses.replace(opts, device=gpu, n_gpus=0))
    start = time.time()

    def log(message: str) -> None:
        if opts.lines_file:
            with open(opts.lines_file, "a") as f:  # O_APPEND: parallel jobs' lines never interleave mid-line
                f.write(message + "\n")
        else:
            print(message, flush=True)

    try:
        with libraries_quiet():  # in a worker process too
            result = run_job(cfg, job, data, opts, log)
    except Exception as e:  # noqa: BLE001 - reported in the summary, in the words a command would use
        error, bug = told(e, cfg.run_dir)
        if bug:  # a bug's traceback belongs in the job's own lines, where it happened
            traceback.print_exc()
        return JobResult.of(job, "failed", error=error, seconds=round(time.time() - start, 1))
    return dataclasses.replace(result, seconds=round(time.time() - start, 1))


def gpus_to_share(device: str) -> int:
    """How many GPUs the local jobs spread over: all of them when the config says auto or cuda."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 0
