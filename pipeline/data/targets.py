"""What training fits to: which rows may be trained on, and their (N, 18) targets (one-hot, or softened near an
age cut). Validation never uses these: it scores the hard labels of every row."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.config.schema import DataConfig
from pipeline.errors import BadInput
from pipeline.labels import NUM_CLASSES


def training_rows(df: pd.DataFrame, data_cfg: DataConfig) -> np.ndarray:
    """Boolean mask of rows that may be trained on: drop ages just below a cut (never from validation)."""
    keep = np.ones(len(df), dtype=bool)
    if data_cfg.drop_near_cut > 0:
        age = df["age"].to_numpy()
        for cut in data_cfg.age_cuts:
            keep &= ~((age >= cut - data_cfg.drop_near_cut) & (age < cut))
    return keep | _invented_ages(df)


def job_rows(folds: pd.DataFrame, fold: int | None, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of a job. A fold is validated and train-only rows (fold -1) are always
    trained on; a refit (fold None) trains on every photo a training fold may use (data.drop_near_cut still
    applies) and validates nothing."""
    if fold is None:
        return np.flatnonzero(training_rows(folds, cfg.data)), np.array([], dtype=np.int64)
    in_val = (folds["fold"] == fold).to_numpy()
    if not in_val.any():
        raise BadInput(f"fold {fold} is empty; folds.n_splits is {cfg.folds.n_splits}")
    return np.flatnonzero(~in_val & training_rows(folds, cfg.data)), np.flatnonzero(in_val)


def _invented_ages(df: pd.DataFrame) -> np.ndarray:
    """Pseudo-labelled photos carry an age made up inside their predicted band: never near a cut, whatever N is."""
    return (df["source"] == "pseudo").to_numpy() if "source" in df else np.zeros(len(df), dtype=bool)


def training_targets(df: pd.DataFrame, data_cfg: DataConfig) -> np.ndarray:
    """(N, 18) training targets: one-hot labels, softened just below an age cut when data.soften_near_cut is N > 0.

    Ages near a cut are the least certain labels (a person of 29 may look 31). A person d years below a cut
    (d = 1..N) puts share (N + 1 - d) / (2 (N + 1)) on the band above and the rest on its own band: linear in the
    distance, largest just below the cut (N / (2 (N + 1)) at d = 1) and always under one half, so the labelled
    band stays the most likely one. With N = 3 and a cut at 30: age 29 gives 0.375 to 30-59, age 28 0.25, age 27
    0.125. For training rows only; validation scores hard labels.
    """
    labels = df["label"].to_numpy()
    t = np.zeros((len(df), NUM_CLASSES), np.float32)
    t[np.arange(len(df)), labels] = 1.0
    n = data_cfg.soften_near_cut
    if n > 0:
        age = df["age"].to_numpy()
        for cut in data_cfg.age_cuts:
            d = cut - age
            near = np.flatnonzero((d >= 1) & (d <= n) & ~_invented_ages(df))
            up = (n + 1 - d[near]) / (2 * (n + 1))
            t[near, labels[near]] = 1 - up
            t[near, labels[near] + 1] = up  # the band above: same mask and gender, band + 1
    return t
