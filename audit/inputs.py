"""What the audit reads: a finished run's out-of-fold probabilities (the chosen blend's, or one member's) and the
labels they are judged against (the run's folds.csv, the data contract as the run trained on it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.errors import DataError, Problem
from pipeline.labels import MASKS, NUM_CLASSES
from pipeline.layout import blended_oof_npz, folds_csv, pair_oof_npz
from pipeline.tables.folds import train_only
from pipeline.train.state import unfinished_reason


@dataclass
class AuditInput:
    photos: pd.DataFrame  # the competition photos of folds.csv: image_id, path, person_id, gender, age, mask, photo...
    probs: np.ndarray  # (N, 18) OOF probabilities in photos' order, rows summing to 1
    cuts: tuple[int, int]
    data_dir: str
    source: str  # which predictions: "the chosen blend (...)" or "member NAME"


def _labels_run(cfg: Config) -> str:
    """The run whose folds.csv holds the labels: this run, or for a blend of other runs the first of them."""
    if folds_csv(cfg.run_dir).is_file() or not cfg.ensemble.runs:
        return cfg.run_dir
    return cfg.ensemble.runs[0]


def _photos(cfg: Config) -> pd.DataFrame:
    path = folds_csv(_labels_run(cfg))
    if not path.is_file():
        raise DataError([Problem(str(path), "folds.csv not found")],
                        hint="run `maskfold folds`, `train-all` and `ensemble` with this config first")
    folds = pd.read_csv(path, dtype={"person_id": str, "race": str})
    photos = folds[~train_only(folds)].reset_index(drop=True)
    photos["mask_code"] = photos["mask"].map(MASKS.index)
    return photos


def _align(photos: pd.DataFrame, ids, what: str, path: Path) -> np.ndarray:
    """Row of each photo in `ids`; refuses predictions that do not cover the photos exactly once."""
    where = pd.Series(np.arange(len(ids)), index=np.asarray(ids).astype(str))
    if where.index.duplicated().any() or len(where) != len(photos):
        raise DataError([Problem(str(path), f"{what} predict {len(where)} photos, folds.csv has {len(photos)}")],
                        hint="rerun `maskfold ensemble` (and `train-all`) after `maskfold folds`")
    rows = where.reindex(photos["image_id"].astype(str))
    if rows.isna().any():
        raise DataError([Problem(str(path), f"{what} lack photo {rows.index[rows.isna()][0]} of folds.csv")],
                        hint="rerun `maskfold ensemble` (and `train-all`) after `maskfold folds`")
    return rows.to_numpy().astype(int)


def _blend_probs(cfg: Config, photos: pd.DataFrame) -> np.ndarray:
    path = blended_oof_npz(cfg.run_dir)
    if not path.is_file():
        raise DataError([Problem(str(path), "the blend's OOF probabilities are not there")],
                        hint="run `maskfold ensemble` with this config first")
    z = np.load(path)
    rows = _align(photos, z["image_id"], "the blend's OOF probabilities", path)
    if not (z["labels"][rows] == photos["label"].to_numpy()).all():
        raise DataError([Problem(str(path), "made for other labels than folds.csv's")],
                        hint="rerun `maskfold train-all` and `maskfold ensemble` after `maskfold folds`")
    return z["probs"][rows].astype(np.float64)


def _member_probs(cfg: Config, photos: pd.DataFrame, member: str) -> np.ndarray:
    if member not in cfg.backbone_names():
        raise DataError([Problem("--member", f"{member!r} is not a backbone of this config; one of "
                                             f"{', '.join(cfg.backbone_names())}")], hint="name one of them")
    probs = np.full((len(photos), NUM_CLASSES), np.nan)
    where = pd.Series(np.arange(len(photos)), index=photos["image_id"].astype(str))
    for k in range(cfg.folds.n_splits):
        why = unfinished_reason(cfg, member, k)
        if why is not None:
            raise DataError([Problem(str(pair_oof_npz(cfg.run_dir, member, k)), f"{member} fold {k}: {why}")],
                            hint="run `maskfold train-all` with this config first")
        z = np.load(pair_oof_npz(cfg.run_dir, member, k))
        rows = where.reindex(z["image_id"].astype(str))
        if rows.isna().any():
            raise DataError([Problem(str(pair_oof_npz(cfg.run_dir, member, k)), "names photos not in folds.csv")],
                            hint="run `maskfold train-all` with this config after `maskfold folds`")
        logits = z["logits"] - z["logits"].max(1, keepdims=True)
        probs[rows.to_numpy().astype(int)] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if np.isnan(probs).any():
        raise DataError([Problem(str(folds_csv(cfg.run_dir)), f"{np.isnan(probs).any(1).sum()} photos have no OOF "
                                                              f"prediction from {member}")],
                        hint="run `maskfold train-all` with this config after `maskfold folds`")
    return probs


def read_input(cfg: Config, member: str | None = None) -> AuditInput:
    photos = _photos(cfg)
    if member:
        probs, source = _member_probs(cfg, photos, member), f"member {member}"
    else:
        probs, source = _blend_probs(cfg, photos), "the chosen blend"
    probs = np.clip(probs, 0, None)
    probs /= probs.sum(1, keepdims=True)  # a hard vote's scores become shares of the votes
    return AuditInput(photos, probs, tuple(cfg.data.age_cuts), cfg.data_dir, source)
