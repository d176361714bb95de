"""A run's training data: folds.csv checked against the data (the checks check-data prints), plus the photo caches.

train-all loads it once and hands it to every job, local or Ray.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.checks import FOLDS_HINT, require_clean, require_folds_match
from pipeline.config import Config
from pipeline.data.cache import build_cache
from pipeline.errors import DataError, Problem
from pipeline.faces.crop import crop_function, crop_key, face_share
from pipeline.layout import eval_digest, folds_csv, read_folds
from pipeline.storage import require_folder
from pipeline.tables.fields import image_file


@dataclass
class RunData:
    folds: pd.DataFrame  # folds.csv rows, in cache order
    evals: pd.DataFrame | None
    train_cache: Path
    eval_cache: Path | None
    digest: str  # content identity of folds.csv (pipeline.layout.folds_digest)
    eval_digest: str | None  # identity of the eval set the test predictions are for
    # held while this RunData lives, so that `maskfold cache --prune` leaves its caches alone (pipeline.data.lease)
    leases: list = field(default_factory=list, repr=False, compare=False)
    # a face member's photos embedded (pipeline.faces.embeddings.RunEmbeddings), by train-all once for all its jobs;
    # None: a face job embeds them itself (from the cache)
    embeddings: object = field(default=None, repr=False, compare=False)


def load_run_data(cfg: Config, log=print) -> RunData:
    """folds.csv checked against the data (the same checks as check-data), plus the photo caches."""
    contract, evals, _ = require_clean(cfg)
    path = folds_csv(cfg.run_dir)
    if not path.is_file():
        raise DataError([Problem(str(path), "folds.csv not found")], hint=FOLDS_HINT)
    folds, digest = read_folds(cfg.run_dir)
    require_folds_match(cfg, contract, folds, path)
    size = tuple(cfg.data.cache_size)
    cache = Path(cfg.cache_dir)
    files = [image_file(cfg.data_dir, p) for p in folds["path"]]
    eval_files = [image_file(cfg.data_dir, p) for p in evals["path"]] if evals is not None else []
    require_folder(cfg.cache_dir, "cache_dir")  # where the face boxes and the caches go (the commands ask first)
    crop = crop_function(cfg.data, files + eval_files, cache, cfg.run_dir, log)
    if crop is not None:
        log(face_share(crop, folds, files, eval_files, cfg.data.face_detector))
    key = crop_key(cfg.data, cfg.run_dir)
    leases = []
    try:  # the training photos' cache, then the eval photos' (where there are any)
        train_cache, eval_cache = [build_cache(group, size, cache, key, crop, log=log, leases=leases)
                                   if group else None for group in (files, eval_files)]
    except BaseException:
        for lease in leases:  # not left to the garbage collector: a traceback kept for a report would hold them
            lease.release()
        raise
    return RunData(folds, evals, train_cache, eval_cache, digest,
                   eval_digest(cfg.data_dir) if evals is not None else None, leases)
