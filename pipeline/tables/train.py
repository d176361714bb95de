"""train/train.csv and the photo folders read into one table, one row per photo.

Columns: image_id, path (relative to data_dir, or absolute for external photos), person_id, gender, race, age,
age_band, mask, photo, label, source. Every problem found is collected with the file it concerns and the fix, so
`check-data` and training refuse bad data with the same words.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config.schema import DataConfig
from pipeline.config.typed_yaml import where_relative
from pipeline.labels import PHOTOS, age_band, encode_label, photo_mask
from pipeline.tables.aliases import shared_files
from pipeline.tables.fields import CONTRACT_COLUMNS, TRAIN_COLUMNS, person_folder, read_table
from pipeline.tables.label_fixes import apply_label_fixes
from pipeline.tables.persons import Person, read_persons, unlisted_folders
from pipeline.tables.report import Report


def read_train(data_dir: str | Path, data_cfg: DataConfig, report: Report | None = None,
               whole_persons: bool = True) -> tuple[pd.DataFrame, Report]:
    """Read train/train.csv and the photo folders into the contract table.

    whole_persons=False accepts a person folder holding only some of the 7 photos (the pseudo-labelled layout).
    """
    data_dir = Path(data_dir)
    report = report or Report()
    csv = data_dir / "train" / "train.csv"
    table = _train_csv(csv, data_dir, report)
    if table is None:
        return pd.DataFrame(columns=CONTRACT_COLUMNS), report
    twice = _folders_listed_twice(table, csv, report)
    images = data_dir / "train" / "images"
    persons = read_persons(table, csv, images, report, twice, whole_persons)
    unlisted_folders(images, table, csv, report)
    df = _photo_rows(persons, data_cfg, report)
    for person, why in shared_files(data_dir, df):
        report.problem(images / person, why)
    return df, report


def _train_csv(csv: Path, data_dir: Path, report: Report) -> pd.DataFrame | None:
    if csv.is_dir():
        report.problem(csv, "a folder where the file train.csv belongs; data_dir must hold train/train.csv and "
                            "train/images/")
        return None
    if not csv.is_file():
        report.problem(csv, f"train.csv not found; data_dir must hold train/train.csv and train/images/"
                            f"{where_relative(data_dir)}")
        return None
    table = read_table(csv, TRAIN_COLUMNS, report)
    if table is not None and table.empty:
        report.problem(csv, "train.csv has a header but no rows; it must list one person per row")
        return None
    return table


def _folders_listed_twice(table: pd.DataFrame, csv: Path, report: Report) -> set[str]:
    """Normalise the path column in place (`x`, `x/` and `./x` are one person: never in two folds) and report the
    folders listed more than once, which are left out."""
    spelt = table["path"]
    table["path"] = spelt.map(person_folder)
    twice = set(table["path"][table["path"].duplicated()])
    for p in sorted(twice):
        spellings = ", ".join(map(repr, spelt[table["path"] == p]))
        report.problem(csv, f"path '{p}' appears in more than one row (as {spellings}); each person folder must be "
                            f"listed once")
    for i in table["id"][table["id"].duplicated()].unique():
        report.warnings.append(f"{csv}: id '{i}' is repeated; persons are keyed by their folder name (path)")
    return twice


def _photo_rows(persons: list[Person], data_cfg: DataConfig, report: Report) -> pd.DataFrame:
    fixed = apply_label_fixes(persons, data_cfg, report)
    rows = []
    for person in fixed.persons:
        band = int(age_band(person.age, data_cfg.age_cuts))
        relabel = {}
        for folder, a, b in fixed.swaps:
            if folder == person.folder:
                relabel[a], relabel[b] = photo_mask(b), photo_mask(a)
        for photo in PHOTOS:
            if photo not in person.photos:
                continue
            mask = fixed.masks.get((person.folder, photo), relabel.get(photo, photo_mask(photo)))
            rows.append({
                "image_id": f"{person.folder}/{photo}",
                "path": f"train/images/{person.folder}/{person.photos[photo]}",
                "person_id": person.folder,
                "gender": person.gender,
                "race": person.race,
                "age": person.age,
                "age_band": band,
                "mask": mask,
                "photo": photo,
                "label": encode_label(mask, person.gender, band),
                "source": "train",
            })
    df = pd.DataFrame(rows, columns=CONTRACT_COLUMNS)
    return df.astype({"age": int, "age_band": int, "label": int})
