"""One (backbone, fold) pair, or a backbone's refit, as a job: held by its lock, skipped when finished, else trained or
resumed."""
from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack

from pipeline.config import Config
from pipeline.io import Busy, file_lock
from pipeline.layout import (
    model_files,
    REFIT,
    pair_dir,
    pair_lock,
    pair_status,
    refit_dir,
    refit_epochs,
    refit_lock,
    refit_status,
)
from pipeline.train.refit import RefitTrainer
from pipeline.train.rundata import RunData, load_run_data
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
    if fold < 0 or fold >= cfg.folds.n_splits:
        raise ValueError(f"fold {fold} is out of range: folds.n_splits is {cfg.folds.n_splits}")
    # lock_wait_s: a retry after a lost node may meet its predecessor's lock for a moment
    return _held_job(f"{backbone} fold {fold}", backbone, fold, pair_lock(cfg.run_dir, backbone, fold),
                     pair_dir(cfg.run_dir, backbone, fold), lambda: pair_status(cfg, backbone, fold),
                     lambda done: f"val F1 {done.val_f1:.4f}",
                     lambda d: Trainer(cfg, backbone, fold, d, device=device, progress=progress, log=log),
                     cfg, data, force, lock_wait_s, log)


def train_refit(cfg: Config, backbone: str, data: RunData | None = None, device=None, progress=True, log=print,
                force: bool = False, lock_wait_s: float | None = None) -> dict:
    """Train a backbone's refit (or resume it, or redo its test predictions), holding its lock; as train_pair.

    Raises ValueError while a fold of the backbone is not finished, since the epoch count comes from the folds.
    """
    epochs, why = refit_epochs(cfg, backbone)
    if epochs is None:
        raise ValueError(f"{backbone} cannot be refitted yet: {why}; run `maskfold train-all` first")
    return _held_job(f"{backbone} refit", backbone, REFIT, refit_lock(cfg.run_dir, backbone),
                     refit_dir(cfg.run_dir, backbone), lambda: refit_status(cfg, backbone),
                     lambda done: f"{done.epochs} epochs",
                     lambda d: RefitTrainer(cfg, backbone, epochs, d, device=device, progress=progress, log=log),
                     cfg, data, force, lock_wait_s, log)


def _held_job(name: str, backbone: str, fold, lock, folder, status, finished_note, make_trainer, cfg: Config,
              data: RunData | None, force: bool, lock_wait_s: float | None, log) -> dict:
    """A fold pair's or a refit's job: take its lock (busy when another live process has it), start over with
    force, skip it when finished under this config, else train, resume or redo its predictions."""
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(lock, timeout=lock_wait_s))
        except Busy as e:
            log(f"{name}: being trained by {e.owner}; left to it")
            return {"backbone": backbone, "fold": fold, "status": "busy", "error": f"held by {e.owner}"}
        if force:
            for path in model_files(folder):
                path.unlink(missing_ok=True)
        else:
            done, why = status()
            if done is not None and why is None:
                log(f"{name}: already finished under this config ({finished_note(done)}); skipped")
                return {**dataclasses.asdict(done), "status": "skipped"}
            if done is not None:
                log(f"{name}: {why}")
        data = data or load_run_data(cfg, log=log)
        start = time.time()
        info = dataclasses.asdict(make_trainer(data).fit())
        return {**info, "status": "done", "seconds": round(time.time() - start, 1)}
