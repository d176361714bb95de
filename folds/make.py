"""StratifiedGroupKFold over persons: every photo of a person lands in one fold.

Stratified on the person's gender x age class, because each person carries all three mask states; external
pseudo-persons and pseudo-labelled eval photos get fold -1 (always trained on, never validated).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.checks import require_clean
from pipeline.config import Config
from pipeline.data.extra import extra_rows
from pipeline.errors import BadInput
from pipeline.io import atomic_write_csv, remove_stale_temporaries
from pipeline.labels import NUM_CLASSES
from pipeline.layout import folds_csv
from pipeline.tables.folds import EXTERNAL_FOLD, fold_problems, train_only


def assign_folds(df: pd.DataFrame, n_splits: int, seed: int) -> pd.DataFrame:
    df = df.sort_values("image_id", kind="stable").reset_index(drop=True)  # order-independent output
    fold = np.full(len(df), EXTERNAL_FOLD, dtype=int)
    real = ~train_only(df)
    sub = df[real]
    persons = sub["person_id"].nunique()
    if persons < n_splits:
        raise BadInput(f"{persons} persons cannot fill {n_splits} folds; lower folds.n_splits")
    strat = (sub["gender"] == "female").astype(int) * 3 + sub["age_band"]
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    idx = np.flatnonzero(real)
    for k, (_, val) in enumerate(sgkf.split(np.zeros(len(sub)), strat, groups=sub["person_id"])):
        fold[idx[val]] = k
    out = df.assign(fold=fold)
    check_folds(out)
    return out


def check_folds(df: pd.DataFrame) -> None:
    """No person in two folds, no photo twice; train-only photos only in fold -1 and competition ones never there."""
    problems = fold_problems(df)
    if problems:
        raise AssertionError("; ".join(problems))


def fold_table(df: pd.DataFrame) -> pd.DataFrame:
    """Photos per class (columns) in each fold (rows)."""
    return pd.crosstab(df["fold"], df["label"]).reindex(columns=range(NUM_CLASSES), fill_value=0)


def write_folds(cfg: Config, log=print) -> pd.DataFrame:
    """The stage: the checked contract (plus the extra training photos the config asks for) -> <run_dir>/folds.csv.

    The stages that made the extra photos judge whether they are current; the command asks them first."""
    train, _, _ = require_clean(cfg)
    extra = extra_rows(cfg)
    if "external" in extra:
        ext = extra["external"]
        log(f"external persons added to every training fold: {ext['person_id'].nunique()}")
        train = pd.concat([train, ext], ignore_index=True)
    if "pseudo" in extra:
        pseudo = extra["pseudo"]
        counts = pseudo["label"].value_counts().sort_index()
        log(f"pseudo-labelled eval photos added to every training fold: {len(pseudo)} "
            f"({'soft' if cfg.pseudo.soft else 'hard'} labels; per class: "
            f"{' '.join(f'{c}:{n}' for c, n in counts.items())})")
        train = pd.concat([train, pseudo], ignore_index=True)
        if not (train["soft_label"].fillna("") != "").any():
            train = train.drop(columns="soft_label")  # hard labels: folds.csv as without pseudo labels, plus rows
    df = assign_folds(train, cfg.folds.n_splits, cfg.seed)
    out = folds_csv(cfg.run_dir)
    remove_stale_temporaries(cfg.run_dir)
    atomic_write_csv(df, out)
    log(f"photos per class in each fold (fold -1: external and pseudo-labelled, train only):\n"
        f"{fold_table(df).to_string()}")
    log(f"wrote {out}: {df['person_id'].nunique()} persons, {len(df)} photos, {cfg.folds.n_splits} folds")
    # Decoding every photo takes a while at competition size, so it is check-data's job, not this stage's.
    log("photos were listed here, not decoded: `maskfold check-data` decodes every one and names any broken photo")
    return df
