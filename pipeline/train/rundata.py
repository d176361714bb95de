"""A run's training data: folds.csv checked against the data (the checks check-data prints), plus the photo caches.

train-all loads it once and hands it to every job, local or Ray.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.checks import FOLDS_HINT, require_clean, require_folds_match
from pipeline.config import Config
from pipeline.contract import DataError, Problem, image_file
from pipeline.data.cache import build_cache
from pipeline.faces.crop import crop_function
from pipeline.layout import eval_digest, folds_csv, read_folds


@dataclass
class RunData:
    folds: pd.DataFrame  # folds.csv rows, in cache order
    evals: pd.DataFrame | None
    train_cache: Path
    eval_cache: Path | None
    digest: str  # content identity of folds.csv (pipeline.layout.folds_digest)
    eval_digest: str | None  # identity of the eval set the test predictions are for


def load_run_data(cfg: Config, log=print) -> RunData:
    """folds.csv checked against the data (the same checks as check-data), plus the photo caches."""
    contract, evals, _ = require_clean(cfg)
    path = folds_csv(cfg.run_dir)
    if not path.is_file():
        raise DataError([Problem(str(path), "folds.csv not found")], hint=FOLDS_HINT)
    folds, digest = read_folds(cfg.run_dir)
    require_folds_match(cfg, contract, folds, path)
    size = tuple(cfg.data.cache_size)
    crop = crop_function(cfg.data)
    crop_key = cfg.data.crop if cfg.data.crop == "none" else f"{cfg.data.crop}:{cfg.data.crop_margin}"
    cache = Path(cfg.cache_dir)
    files = [image_file(cfg.data_dir, p) for p in folds["path"]]
    train_cache = build_cache(files, size, cache, crop_key, crop, log=log)
    eval_cache = None
    if evals is not None and len(evals):
        eval_cache = build_cache([image_file(cfg.data_dir, p) for p in evals["path"]], size, cache,
                                 crop_key, crop, log=log)
    return RunData(folds, evals, train_cache, eval_cache, digest, eval_digest(cfg.data_dir) if evals is not None else None)
