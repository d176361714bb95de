"""StratifiedGroupKFold over persons: every photo of a person lands in one fold.

Stratified on the person's gender x age class, because each person carries all three mask states; external
pseudo-persons get fold -1 (always trained on, never validated).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

EXTERNAL_FOLD = -1


def assign_folds(df: pd.DataFrame, n_splits: int, seed: int) -> pd.DataFrame:
    df = df.sort_values("image_id", kind="stable").reset_index(drop=True)  # order-independent output
    fold = np.full(len(df), EXTERNAL_FOLD, dtype=int)
    real = (df["source"] != "external").to_numpy()
    sub = df[real]
    persons = sub["person_id"].nunique()
    if persons < n_splits:
        raise ValueError(f"{persons} persons cannot fill {n_splits} folds; lower folds.n_splits")
    strat = (sub["gender"] == "female").astype(int) * 3 + sub["age_band"]
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    idx = np.flatnonzero(real)
    for k, (_, val) in enumerate(sgkf.split(np.zeros(len(sub)), strat, groups=sub["person_id"])):
        fold[idx[val]] = k
    out = df.assign(fold=fold)
    check_folds(out)
    return out


def check_folds(df: pd.DataFrame) -> None:
    """No person in two folds; external persons only in fold -1 and real ones never there."""
    per_person = df.groupby("person_id")["fold"].nunique()
    split = per_person[per_person > 1]
    if len(split):
        raise AssertionError(f"persons in more than one fold: {', '.join(split.index[:5])}")
    ext = df["source"] == "external"
    if (df.loc[ext, "fold"] != EXTERNAL_FOLD).any():
        raise AssertionError("an external person is in a validation fold; external data must have fold -1")
    if (df.loc[~ext, "fold"] == EXTERNAL_FOLD).any():
        raise AssertionError("a competition person has fold -1; rerun `maskfold folds`")


def fold_table(df: pd.DataFrame) -> pd.DataFrame:
    """Photos per class (columns) in each fold (rows)."""
    return pd.crosstab(df["fold"], df["label"]).reindex(columns=range(18), fill_value=0)
