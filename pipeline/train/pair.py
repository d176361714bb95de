"""One job under its lock: skipped when finished, else trained, resumed or only predicted again, as its state says."""
from __future__ import annotations

import time
from contextlib import ExitStack

from pipeline.config import Config
from pipeline.errors import BadInput
from pipeline.io import Busy, file_lock
from pipeline.layout import folds_csv, job_lock, model_files, run_digest
from pipeline.records import RefitDone
from pipeline.train.job import Job, JobResult, RunOptions, fold_job
from pipeline.train.rundata import RunData, load_run_data
from pipeline.train.state import FINISHED, job_state
from pipeline.train.trainer import Trainer


def train_pair(cfg: Config, backbone: str, fold: int, data: RunData | None = None, device=None, progress=True,
               log=print, force: bool = False) -> JobResult:
    """Train one (backbone, fold) pair (`maskfold train`); as run_job."""
    return run_job(cfg, fold_job(cfg, backbone, fold), data, RunOptions(device=device, progress=progress), log, force)


def run_job(cfg: Config, job: Job, data: RunData | None = None, opts: RunOptions | None = None, log=print,
            force: bool = False) -> JobResult:
    """Take the job's lock (busy when another live process has it), start over with force, skip it when finished
    under this config, else train, resume or redo its predictions.

    The result's status is done, skipped or busy (nothing was touched); done and skipped carry the done record.
    """
    opts = opts or RunOptions()
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(job_lock(job.folder), timeout=opts.lock_wait_s))
        except Busy as e:
            log(f"{job.name}: being trained by {e.owner}; left to it")
            return JobResult.of(job, "busy", error=f"held by {e.owner}")
        if force:
            for path in model_files(job.folder):
                path.unlink(missing_ok=True)
        if data is not None and data.digest != run_digest(cfg.run_dir):
            # the photos, labels or folds this run loaded are no longer folds.csv's: whatever it trained now would
            # be stale on arrival, and the job's state judged against the new file could remove a resumable model
            raise BadInput(f"{folds_csv(cfg.run_dir)} changed while train-all ran; rerun train-all to train on it")
        state = job_state(cfg, job)  # under the lock: no other process changes the files now
        if state.status == FINISHED:
            log(f"{job.name}: already finished under this config ({finished_note(state.done)}); skipped")
            return JobResult.of(job, "skipped", done=state.done)
        data = data or load_run_data(cfg, log=log)
        start = time.time()
        if cfg.backbone(job.backbone).kind == "timm":
            trainer = Trainer(cfg, job, data, device=opts.device, progress=opts.progress, log=log, warned=opts.warned)
        else:  # a face member: embeddings and a head per task (pipeline.train.face_job)
            from pipeline.train.face_job import FaceJob

            trainer = FaceJob(cfg, job, data, log=log, warned=opts.warned)
        done = trainer.fit(state)
        return JobResult.of(job, "done", done=done, seconds=round(time.time() - start, 1))


def finished_note(done) -> str:
    return f"{done.epochs} epochs" if isinstance(done, RefitDone) else f"val F1 {done.val_f1:.4f}"
