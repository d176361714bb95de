"""The rules a table's `fold` column keeps: one fold per person, train-only photos in every training fold."""
from __future__ import annotations

import numpy as np
import pandas as pd

EXTERNAL_FOLD = -1  # train-only photos (external pseudo-persons, pseudo-labelled eval photos): in every training fold
TRAIN_ONLY_SOURCES = ("external", "pseudo")  # never validated, never in the OOF predictions


def train_only(df: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows that are trained on in every fold and never validated (fold -1)."""
    return df["source"].isin(TRAIN_ONLY_SOURCES).to_numpy()


def fold_problems(df: pd.DataFrame) -> list[str]:
    """What is wrong with a table's `fold` column: a person split across folds, train-only rows out of place, or
    a photo listed twice (it would be trained on twice, or trained on and validated)."""
    problems = []
    per_person = df.groupby("person_id")["fold"].nunique()
    split = per_person[per_person > 1]
    if len(split):
        problems.append(f"persons in more than one fold: {', '.join(split.index[:5])}")
    only = train_only(df)
    fold = df["fold"].to_numpy()
    if (fold[only] != EXTERNAL_FOLD).any() or (fold[~only] == EXTERNAL_FOLD).any():
        problems.append("external photos must have fold -1 (pseudo-labelled ones too), and only they")
    twice = df["image_id"][df["image_id"].duplicated()].unique()
    if len(twice):
        problems.append(f"photos listed more than once: {', '.join(map(str, twice[:5]))}")
    return problems


def pseudo_labels(rows: pd.DataFrame) -> set[tuple]:
    """(image_id, label, soft label) of each pseudo-labelled photo: what training takes from them."""
    soft = rows["soft_label"].fillna("").astype(str) if "soft_label" in rows else [""] * len(rows)
    return set(zip(rows["image_id"].astype(str), rows["label"].astype(int), soft))
