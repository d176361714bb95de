"""Extra training photos: photos a stage adds to every training fold (fold -1: trained on, never validated).

A stage that makes them (`maskfold external`: outside pseudo-persons; `maskfold pseudo`: eval photos labelled by
another run's ensemble) writes its folder in the competition layout (train/train.csv and train/images/<person>/,
optionally with a soft_label column: a person's blended probabilities, format_probs) and, once that is whole, an
ExtraRecord saying how to read it. The folds stage adds these rows and training checks folds.csv against them
through this module alone, so the core reads every such folder the same way and imports no stage. Whether a
stage's folder is still current for the config (the settings it was made under) is the stage's own question,
asked by the commands before they read it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.schema import Config, DataConfig
from pipeline.errors import BadInput, DataError, Problem
from pipeline.io import atomic_write_text
from pipeline.labels import NUM_CLASSES
from pipeline.layout import external_dir, extra_record, extra_train_csv, pseudo_dir
from pipeline.records import Record
from pipeline.tables.fields import CONTRACT_COLUMNS
from pipeline.tables.train import read_train

RECORD_VERSION = 1


@dataclasses.dataclass(kw_only=True)
class ExtraRecord(Record):
    """How to read a stage's extra photos. source: their `source` column (external, pseudo); whole_persons: each
    person folder holds all seven photos; photo_ids: each person is one photo whose image_id is its folder name
    (an eval ImageID); photos: how many (0: none, and no table to read); hint: the command that remakes them."""

    source: str
    whole_persons: bool
    photo_ids: bool
    photos: int
    hint: str | None = None
    version: int = RECORD_VERSION


def write_record(stage_dir, record: ExtraRecord) -> None:
    """Written last, so a folder with a record is whole."""
    atomic_write_text(extra_record(stage_dir), record.to_json())


def read_record(stage_dir) -> ExtraRecord | None:
    return ExtraRecord.read_current(extra_record(stage_dir), RECORD_VERSION)


# What to say when a folder the config asks for has no photos to add: the problem, and the hint naming the command.
MISSING = {
    "external": ("there is no external data", "run `maskfold external` with this config first"),
    "pseudo": ("there are no pseudo-labelled photos",
               "run `maskfold pseudo` with this config (pseudo.from_run naming the run whose ensemble labels them)"),
}


def extra_rows(cfg: Config) -> dict[str, pd.DataFrame]:
    """The extra photos the config asks for (data.use_external, data.use_pseudo), by source."""
    wanted = {"external": cfg.data.use_external, "pseudo": cfg.data.use_pseudo}
    return {source: source_rows(cfg, source) for source, on in wanted.items() if on}


def source_rows(cfg: Config, source: str) -> pd.DataFrame:
    """One source's extra photos (external: only the first data.external_cap persons), read as read_extra reads."""
    external = source == "external"
    folder = external_dir(cfg.run_dir) if external else pseudo_dir(cfg.run_dir)
    return read_extra(folder, cfg.data, f"data.use_{source}", *MISSING[source],
                      cap=cfg.data.external_cap if external else None)


def read_extra(stage_dir, data_cfg: DataConfig, key: str, missing: str, hint: str | None = None,
               cap: int | None = None) -> pd.DataFrame:
    """A stage's extra photos as contract rows with absolute paths (plus soft_label where the stage wrote one);
    `cap`: only the first that many persons (by id)."""
    root = Path(stage_dir)
    record = read_record(root)
    csv = extra_train_csv(root)
    if record is None and csv.is_file():  # photos written by an older version, or their record damaged
        raise DataError([Problem(str(extra_record(root)), f"{key} is on but this folder's record of its photos is "
                                                          f"missing or unreadable")], hint=hint)
    if record is None or (record.photos and not csv.is_file()):
        raise DataError([Problem(str(csv), f"{key} is on but {missing}")], hint=hint)
    if record.photos == 0:  # none to add (the contract reader refuses an empty table)
        return pd.DataFrame(columns=[*CONTRACT_COLUMNS, "soft_label"])
    df, report = read_train(root, dataclasses.replace(data_cfg, label_fixes=None),
                            whole_persons=record.whole_persons)
    if report.problems:
        raise DataError(report.problems, hint=record.hint)
    if cap:
        df = df[df["person_id"].isin(sorted(df["person_id"].unique())[:cap])]
    df = df.assign(path=[str((root / p).resolve()) for p in df["path"]], source=record.source)
    if record.photo_ids:
        df = df.assign(image_id=df["person_id"])
    table = pd.read_csv(csv, dtype=str, keep_default_na=False).set_index("path")
    if "soft_label" in table:
        df = df.assign(soft_label=table["soft_label"].reindex(df["person_id"]).fillna("").to_numpy())
    return df.reset_index(drop=True)


def format_probs(probs: np.ndarray) -> list[str]:
    """Each row of probabilities as one text cell (six significant digits), as train.csv and folds.csv hold them."""
    return [" ".join(f"{v:.6g}" for v in row) for row in np.asarray(probs)]


def with_soft_labels(table: pd.DataFrame, targets: np.ndarray) -> np.ndarray:
    """`targets` (N, 18) with each row that has a soft_label (a soft pseudo-labelled photo) replaced by it."""
    if "soft_label" not in table:
        return targets
    cells = table["soft_label"].fillna("").astype(str).to_numpy()
    targets = targets.copy()
    for i in np.flatnonzero([c.strip() != "" for c in cells]):
        p = np.array(cells[i].split(), dtype=np.float32)
        if p.shape != (NUM_CLASSES,) or (p < 0).any() or p.sum() <= 0:
            raise BadInput(f"folds.csv: the soft_label of {table['image_id'].iloc[i]} is not {NUM_CLASSES} "
                           f"probabilities; rerun `maskfold pseudo` and `maskfold folds`")
        targets[i] = p / p.sum()  # six printed digits: sums may be off by 1e-6
    return targets


def class_counts(folds_csv: Path, source: str = "pseudo") -> np.ndarray | None:
    """Photos per class of one extra source in a folds.csv, or None when it has none."""
    if not Path(folds_csv).is_file():
        return None
    folds = pd.read_csv(folds_csv, usecols=["label", "source"])
    labels = folds.loc[folds["source"] == source, "label"].to_numpy()
    return np.bincount(labels, minlength=NUM_CLASSES) if len(labels) else None
