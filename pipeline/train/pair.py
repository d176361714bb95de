"""One (backbone, fold) pair as a job: held by its lock, skipped when finished, else trained or resumed."""
from __future__ import annotations

import time
from contextlib import ExitStack

from pipeline.config import Config
from pipeline.io import Busy, file_lock
from pipeline.layout import PAIR_FILES, REFIT, pair_dir, pair_lock, pair_status
from pipeline.train.refit import train_refit
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
    with ExitStack() as held:
        try:
            # lock_wait_s: a retry after a lost node may meet its predecessor's lock for a moment
            held.enter_context(file_lock(pair_lock(cfg.run_dir, backbone, fold), timeout=lock_wait_s))
        except Busy as e:
            log(f"{backbone} fold {fold}: being trained by {e.owner}; left to it")
            return {"backbone": backbone, "fold": fold, "status": "busy", "error": f"held by {e.owner}"}
        if force:
            for name in PAIR_FILES:
                (pair_dir(cfg.run_dir, backbone, fold) / name).unlink(missing_ok=True)
        else:
            done, why = pair_status(cfg, backbone, fold)
            if done is not None and why is None:
                log(f"{backbone} fold {fold}: already finished under this config (val F1 {done['val_f1']:.4f}); skipped")
                return {**done, "status": "skipped"}
            if why is not None:
                log(f"{backbone} fold {fold}: {why}")
        data = data or load_run_data(cfg, log=log)
        start = time.time()
        info = Trainer(cfg, backbone, fold, data, device=device, progress=progress, log=log).fit()
        return {**info, "status": "done", "seconds": round(time.time() - start, 1)}
