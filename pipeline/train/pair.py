"""One (backbone, fold) pair, or a backbone's refit, as a job: held by its lock, skipped when finished, else trained or
resumed."""
from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack

from pipeline.config import Config
from pipeline.io import Busy, file_lock
from pipeline.layout import REFIT, job_lock, model_files
from pipeline.records import RefitDone
from pipeline.train.job import Job, fold_job, refit_job
from pipeline.train.refit import RefitTrainer
from pipeline.train.rundata import RunData, load_run_data
from pipeline.train.state import FINISHED, job_state, refit_epochs
from pipeline.train.trainer import Trainer


def train_pair(cfg: Config, backbone: str, fold: int | str, data: RunData | None = None, device=None, progress=True,
               log=print, force: bool = False, lock_wait_s: float | None = None) -> dict:
    """Train one pair (or resume it, or redo only its predictions), holding the pair's lock.

    Returns done.json's fields plus status: done, skipped (finished under this config) or busy (another live
    process holds the pair; nothing is touched). fold=REFIT trains the backbone's full-data refit instead
    (pipeline.train.refit), so every job runner runs refits as it runs pairs.
    """
    if fold == REFIT:
        return train_refit(cfg, backbone, data=data, device=device, progress=progress, log=log, force=force,
                           lock_wait_s=lock_wait_s)
    job = fold_job(cfg, backbone, fold)
    # lock_wait_s: a retry after a lost node may meet its predecessor's lock for a moment
    return _held_job(cfg, job, lambda d: Trainer(cfg, backbone, fold, d, device=device, progress=progress, log=log),
                     data, force, lock_wait_s, log)


def train_refit(cfg: Config, backbone: str, data: RunData | None = None, device=None, progress=True, log=print,
                force: bool = False, lock_wait_s: float | None = None) -> dict:
    """Train a backbone's refit (or resume it, or redo its test predictions), holding its lock; as train_pair.

    Raises ValueError while a fold of the backbone is not finished, since the epoch count comes from the folds.
    """
    epochs, why = refit_epochs(cfg, backbone)
    if epochs is None:
        raise ValueError(f"{backbone} cannot be refitted yet: {why}; run `maskfold train-all` first")
    job = refit_job(cfg, backbone, epochs)
    return _held_job(cfg, job, lambda d: RefitTrainer(cfg, backbone, epochs, d, device=device, progress=progress,
                                                      log=log), data, force, lock_wait_s, log)


def _held_job(cfg: Config, job: Job, make_trainer, data: RunData | None, force: bool, lock_wait_s: float | None,
              log) -> dict:
    """A fold pair's or a refit's job: take its lock (busy when another live process has it), start over with
    force, skip it when finished under this config, else train, resume or redo its predictions."""
    fold = job.fold if job.predicts_oof else REFIT
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(job_lock(job.folder), timeout=lock_wait_s))
        except Busy as e:
            log(f"{job.name}: being trained by {e.owner}; left to it")
            return {"backbone": job.backbone, "fold": fold, "status": "busy", "error": f"held by {e.owner}"}
        if force:
            for path in model_files(job.folder):
                path.unlink(missing_ok=True)
        state = job_state(cfg, job)  # after force, and under the lock: nobody else changes the files now
        if state.status == FINISHED:
            log(f"{job.name}: already finished under this config ({finished_note(state.done)}); skipped")
            return {**dataclasses.asdict(state.done), "status": "skipped"}
        data = data or load_run_data(cfg, log=log)
        start = time.time()
        info = dataclasses.asdict(make_trainer(data).fit(state))
        return {**info, "status": "done", "seconds": round(time.time() - start, 1)}


def finished_note(done) -> str:
    return f"{done.epochs} epochs" if isinstance(done, RefitDone) else f"val F1 {done.val_f1:.4f}"
