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


def assign_folds(df: pd.DataFrame, n_splits: int, seed: int, groups: dict | None = None) -> pd.DataFrame:
    """groups: person -> its group, where ids of one face must share a fold (pipeline.faces.identity); else each
    person is its own group."""
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
    person = sub["person_id"].astype(str)
    group = person.map(groups).fillna(person) if groups else person
    for k, (_, val) in enumerate(sgkf.split(np.zeros(len(sub)), strat, groups=group)):
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


MAX_GROUP = 4  # a person listed more than a few times under other ids is not what the check can vouch for


def same_face_groups(cfg: Config, train: pd.DataFrame, log=print) -> dict | None:
    """person -> group for folds.same_face: group (ids of one face kept in one fold); None otherwise."""
    from pipeline.faces.identity import person_groups, same_face_check

    found = same_face_check(cfg, train, log=log)
    if found is None or not len(found[0]):
        return None
    pairs, faces = found
    if cfg.folds.same_face == "warn":
        log("folds.same_face is warn: these ids may land in different folds, each flattering the other's OOF figures")
        return None
    groups = person_groups(faces.persons, pairs)
    sizes = pd.Series(groups).value_counts()
    many = sizes[sizes > 1]
    if many.max() > MAX_GROUP:  # a chain of "one face" through many ids: faces the network cannot tell apart
        log(f"folds.same_face: {int(many.sum())} of {len(groups)} persons chain into groups of up to {many.max()} ids "
            f"(more than {MAX_GROUP}): these faces are not told apart by the embeddings (drawn faces?); ids not "
            f"grouped. Lower folds.same_face_threshold, or set folds.same_face: \"off\"")
        return None
    log(f"folds.same_face is group: {int(many.sum())} ids in {len(many)} group(s) of one face, each kept in one fold")
    return groups


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
    df = assign_folds(train, cfg.folds.n_splits, cfg.seed, same_face_groups(cfg, train, log))
    out = folds_csv(cfg.run_dir)
    remove_stale_temporaries(cfg.run_dir)
    atomic_write_csv(df, out)
    log(f"photos per class in each fold (fold -1: external and pseudo-labelled, train only):\n"
        f"{fold_table(df).to_string()}")
    log(f"wrote {out}: {df['person_id'].nunique()} persons, {len(df)} photos, {cfg.folds.n_splits} folds")
    # Decoding every photo takes a while at competition size, so it is check-data's job, not this stage's.
    log("photos were listed here, not decoded: `maskfold check-data` decodes every one and names any broken photo")
    return df
