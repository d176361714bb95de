"""The data contract: the competition layout read into one table, one row per photo.

Columns: image_id, path (relative to data_dir, or absolute for external photos), person_id, gender, race, age,
age_band, mask, photo, label, source. Every problem found is collected with the file it concerns and the fix, so
`check-data` and training refuse bad data with the same words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from pipeline.config.schema import DataConfig
from pipeline.config.typed_yaml import where_relative
from pipeline.data.aliases import shared_files

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
PHOTOS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
MASKS = ("wear", "incorrect", "normal")
GENDERS = ("male", "female")
TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
CONTRACT_COLUMNS = [
    "image_id", "path", "person_id", "gender", "race", "age", "age_band", "mask", "photo", "label", "source",
]
NUM_CLASSES = 18
AGE_BANDS = 3
# The three tasks a label combines, in label order: label = mask*6 + gender*3 + age band, so a (N, 18) array
# reshaped to (N, 3, 2, 3) has one axis per task.
TASKS = (("mask", len(MASKS)), ("gender", len(GENDERS)), ("age", AGE_BANDS))
MAX_AGE = 120
FIX_COLUMNS = ["person_id", "field", "old", "new", "note"]  # the label-fix file (data.label_fixes)


def age_band_names(cuts=(30, 60)) -> tuple[str, str, str]:
    """Names of the three age bands for the given cuts: ('<30', '30-59', '60+') for the default ones."""
    return (f"<{cuts[0]}", f"{cuts[0]}-{cuts[1] - 1}", f"{cuts[1]}+")


def class_names(cuts=(30, 60)) -> list[str]:
    """The 18 class names in label order, e.g. 'wear/M/<30'."""
    return [f"{m}/{g[0].upper()}/{a}" for m in MASKS for g in GENDERS for a in age_band_names(cuts)]


def photo_mask(photo: str) -> str:
    return "wear" if photo.startswith("mask") else ("incorrect" if photo == "incorrect_mask" else "normal")


def mask_photo(mask: str) -> str:
    """The photo name that stands for a mask state (the inverse of photo_mask): mask1, incorrect_mask, normal."""
    return {"wear": "mask1", "incorrect": "incorrect_mask", "normal": "normal"}[mask]


def age_band(age, cuts=(30, 60)):
    """0: below the first cut, 1: between, 2: at or above the second. Works on scalars and arrays."""
    return np.searchsorted(np.asarray(cuts), np.asarray(age), side="right")


def band_age(band: int, cuts=(30, 60)) -> int:
    """An age well inside an age band (15, 45, 70 for the default cuts), for photos whose age is unknown and only
    the band was predicted: far from the cuts, so data.drop_near_cut never drops them."""
    return (cuts[0] // 2, (cuts[0] + cuts[1]) // 2, cuts[1] + 10)[band]


def encode_label(mask, gender, band):
    """mask*6 + gender*3 + age band, from names or integer codes."""
    m = MASKS.index(mask) if isinstance(mask, str) else mask
    g = GENDERS.index(gender) if isinstance(gender, str) else gender
    return m * 6 + g * 3 + band


def decode_label(label):
    """(mask, gender, age band) integer codes of one or many labels."""
    label = np.asarray(label)
    return label // 6, (label // 3) % 2, label % 3


@dataclass
class Problem:
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    converted: dict = field(default_factory=dict)  # image mode -> count (grayscale, CMYK, RGBA: converted)
    notes: list[str] = field(default_factory=list)

    def problem(self, file, message):
        self.problems.append(Problem(str(file), message))


class DataError(RuntimeError):
    """Raised by training when the data fails the checks that `maskfold check-data` prints."""

    def __init__(self, problems: list[Problem], hint: str = "run `maskfold check-data` for the full report"):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s); {hint}:\n{shown}{more}")


# ---------------------------------------------------------------- train layout


def read_table(path: Path, columns, report: Report) -> pd.DataFrame | None:
    """A CSV read as text, or None with a problem named when it is empty, unparsable or lacks `columns`."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        report.problem(path, f"empty file (no header); it must start with the header {','.join(columns)}")
        return None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        report.problem(path, f"not a readable CSV ({str(e).strip().splitlines()[0]}); re-export it as plain CSV")
        return None
    if not isinstance(table.index, pd.RangeIndex):  # pandas makes the first column the index of longer rows
        report.problem(path, "data rows have more fields than the header (a trailing comma on each row?); remove the "
                             f"extra commas so that each row has the header's {len(table.columns)} fields")
        return None
    absent = [c for c in columns if c not in table.columns]
    if absent:
        report.problem(path, f"missing column(s) {', '.join(absent)}; the header must be {','.join(columns)}")
        return None
    return table


def person_folder(path: str) -> str:
    """One spelling per folder: `x/`, `./x` and `x//` are `x` ('..' is kept, to be refused)."""
    norm = PurePosixPath(path).as_posix() if path else ""
    return "" if norm == "." else norm


def _bad_folder_name(path: str) -> bool:
    """A person's `path` must be a folder under train/images/, never absolute or climbing out with `..`."""
    p = Path(path)
    return not path or p.is_absolute() or ".." in p.parts or path.startswith(("/", "\\"))


def parse_gender(value) -> str | None:
    """male/female from the spellings seen in face data sets (male, M, 0 / female, F, 1), else None."""
    g = str(value).strip().lower()
    return "male" if g in ("male", "m", "0") else ("female" if g in ("female", "f", "1") else None)


def _parse_gender(value, file, report) -> str | None:
    g = parse_gender(value)
    if g is None:
        report.problem(file, f"unknown gender {value!r}; write male or female")
    return g


def age_problem(value) -> tuple[int | None, str | None]:
    """(age, None) for a whole number of years in range, else (None, what is wrong): train.csv's rule and the label
    fixes' alike."""
    s = str(value).strip()
    if not re.fullmatch(r"\d+(\.0+)?", s):
        return None, f"age {value!r} is not a whole number; write the age in years"
    age = int(float(s))
    if not 0 < age < MAX_AGE:
        return None, f"age {age} is out of range (1-{MAX_AGE - 1}); correct the row"
    return age, None


def _parse_age(value, file, report) -> int | None:
    age, problem = age_problem(value)
    if problem:
        report.problem(file, problem)
    return age


def _person_photos(folder: Path, person: str, report: Report, whole: bool = True) -> dict[str, str]:
    """Map each of the 7 photo names to its file name; junk is counted, gaps and extras are problems.

    whole=False (pseudo-labelled photos: one photo per "person") asks for at least one photo instead of all 7.
    """
    found: dict[str, str] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        report.problem(folder, f"person {person}'s folder cannot be read ({e.strerror}); fix its permissions or links")
        return found
    for f in entries:
        name = f.name
        if not name.startswith(".") and f.is_dir() and f.stem in PHOTOS and f.suffix.lower() in IMAGE_EXTS:
            report.problem(f, f"a folder where photo {f.stem} belongs; replace it with the photo itself")
            continue
        if name.startswith(".") or f.is_dir() or f.suffix.lower() not in IMAGE_EXTS:
            report.junk.append(str(f))
            continue
        if not f.is_file():  # a dangling or looping link, a FIFO or a device: named, never silently dropped
            what = "not a regular file (a FIFO, socket or device)" if f.exists() else "a broken or looping link"
            report.problem(f, f"photo is {what}; replace it with the photo itself")
            continue
        stem = f.stem
        if stem not in PHOTOS:
            report.problem(f, f"extra photo in person {person}: expected only {', '.join(PHOTOS)}; remove or rename it")
        elif stem in found:
            report.problem(f, f"two files for photo '{stem}' ({found[stem]} and {name}); keep one")
        else:
            found[stem] = name
    missing = [p for p in PHOTOS if p not in found]
    if missing and (whole or not found):
        report.problem(folder, f"person {person} is missing photo(s) {', '.join(missing)}; restore them or drop the row")
    return found


def read_train(data_dir: str | Path, data_cfg: DataConfig, report: Report | None = None,
               whole_persons: bool = True) -> tuple[pd.DataFrame, Report]:
    """Read train/train.csv and the photo folders into the contract table.

    whole_persons=False accepts a person folder holding only some of the 7 photos (the pseudo-labelled layout).
    """
    data_dir = Path(data_dir)
    report = report or Report()
    csv = data_dir / "train" / "train.csv"
    if csv.is_dir():
        report.problem(csv, "a folder where the file train.csv belongs; data_dir must hold train/train.csv and "
                            "train/images/")
        return pd.DataFrame(columns=CONTRACT_COLUMNS), report
    if not csv.is_file():
        report.problem(csv, f"train.csv not found; data_dir must hold train/train.csv and train/images/"
                            f"{where_relative(data_dir)}")
        return pd.DataFrame(columns=CONTRACT_COLUMNS), report
    table = read_table(csv, TRAIN_COLUMNS, report)
    if table is None:
        return pd.DataFrame(columns=CONTRACT_COLUMNS), report
    if table.empty:
        report.problem(csv, "train.csv has a header but no rows; it must list one person per row")
        return pd.DataFrame(columns=CONTRACT_COLUMNS), report

    spelt = table["path"]
    table["path"] = spelt.map(person_folder)  # `x`, `x/` and `./x` are one person: never in two folds
    dup_path = set(table["path"][table["path"].duplicated()])
    for p in sorted(dup_path):
        spellings = ", ".join(map(repr, spelt[table["path"] == p]))
        report.problem(csv, f"path '{p}' appears in more than one row (as {spellings}); each person folder must be "
                            f"listed once")
    dup_id = table["id"][table["id"].duplicated()].unique()
    for i in dup_id:
        report.warnings.append(f"{csv}: id '{i}' is repeated; persons are keyed by their folder name (path)")

    images = data_dir / "train" / "images"
    people = []
    for line, row in enumerate(table.itertuples(index=False), start=2):
        where = f"{csv} line {line}"
        gender = _parse_gender(row.gender, where, report)
        age = _parse_age(row.age, where, report)
        if row.path in dup_path:
            continue
        if _bad_folder_name(row.path):
            report.problem(where, f"path {row.path!r} must be a person folder name under train/images/ (not absolute, "
                                  f"no '..'); correct line {line} of train.csv")
            continue
        folder = images / row.path
        if not row.path or not folder.is_dir():
            report.problem(folder, f"person folder for '{row.id}' not found; restore it or drop line {line} of train.csv")
            continue
        photos = _person_photos(folder, row.path, report, whole_persons)
        if gender is None or age is None:
            continue
        people.append((row.id, row.path, gender, row.race, age, photos))

    _unlisted_folders(images, table, csv, report)
    df = _person_rows(people, data_cfg, report)
    for person, why in shared_files(data_dir, df):
        report.problem(images / person, why)
    return df, report


def _unlisted_folders(images: Path, table: pd.DataFrame, csv: Path, report: Report) -> None:
    """Person folders that train.csv does not list are never trained on: a warning, since a lost row looks alike."""
    listed = {Path(p).parts[0] for p in table["path"] if p and Path(p).parts}
    try:
        unlisted = sorted(f.name for f in images.iterdir() if f.is_dir() and not f.name.startswith(".")
                          and f.name not in listed)
    except OSError:
        return  # an unreadable images/ folder is reported with the persons it holds
    if unlisted:
        report.warnings.append(f"{images}: {len(unlisted)} person folder(s) not listed in {csv}, so not used "
                               f"({', '.join(unlisted[:5])}{', ...' if len(unlisted) > 5 else ''}); add their rows "
                               f"or remove the folders")


def _person_rows(people, data_cfg: DataConfig, report: Report) -> pd.DataFrame:
    from pipeline.label_fixes import apply_label_fixes  # here: that module reads this one's rules

    people, swaps, masks = apply_label_fixes(people, data_cfg, report)
    rows = []
    for _id, path, gender, race, age, photos in people:
        band = int(age_band(age, data_cfg.age_cuts))
        relabel = {}
        for folder, a, b in swaps:
            if folder == path:
                relabel[a], relabel[b] = photo_mask(b), photo_mask(a)
        for photo in PHOTOS:
            if photo not in photos:
                continue
            mask = masks.get((path, photo), relabel.get(photo, photo_mask(photo)))
            rows.append({
                "image_id": f"{path}/{photo}",
                "path": f"train/images/{path}/{photos[photo]}",
                "person_id": path,
                "gender": gender,
                "race": race,
                "age": age,
                "age_band": band,
                "mask": mask,
                "photo": photo,
                "label": encode_label(mask, gender, band),
                "source": "train",
            })
    df = pd.DataFrame(rows, columns=CONTRACT_COLUMNS)
    return df.astype({"age": int, "age_band": int, "label": int})


def training_rows(df: pd.DataFrame, data_cfg: DataConfig) -> np.ndarray:
    """Boolean mask of rows that may be trained on: drop ages just below a cut (never from validation)."""
    keep = np.ones(len(df), dtype=bool)
    if data_cfg.drop_near_cut > 0:
        age = df["age"].to_numpy()
        for cut in data_cfg.age_cuts:
            keep &= ~((age >= cut - data_cfg.drop_near_cut) & (age < cut))
    return keep | _invented_ages(df)


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


# ---------------------------------------------------------------- eval layout


def read_eval(data_dir: str | Path, report: Report | None = None) -> tuple[pd.DataFrame | None, Report]:
    """eval/info.csv in submission order, or None for a train-only data set."""
    data_dir = Path(data_dir)
    report = report or Report()
    eval_dir = data_dir / "eval"
    info = eval_dir / "info.csv"
    if not eval_dir.exists():
        report.notes.append(f"{eval_dir} absent: train-only data, there will be nothing to submit")
        return None, report
    if not eval_dir.is_dir():
        report.problem(eval_dir, "a file where the eval folder belongs; remove it (train-only data) or put "
                                 "eval/info.csv and eval/images/ there")
        return None, report
    if info.is_dir():
        report.problem(info, "a folder where the file info.csv belongs; restore the file or remove eval/")
        return None, report
    if not info.is_file():
        report.problem(info, "eval/ exists but info.csv is missing; restore it or remove eval/")
        return None, report
    table = read_table(info, ("ImageID",), report)
    if table is None:
        return None, report
    for line, i in enumerate(table["ImageID"], start=2):
        if not i.strip():
            report.problem(f"{info} line {line}", "empty ImageID; write the photo's file name or drop the row")
    table = table[table["ImageID"].str.strip() != ""].reset_index(drop=True)
    for i in table["ImageID"][table["ImageID"].duplicated()].unique():
        report.problem(info, f"ImageID '{i}' is listed twice; each eval photo must appear once")
    images = eval_dir / "images"
    try:
        on_disk = {f.name for f in images.iterdir()} if images.is_dir() else set()
    except OSError as e:
        report.problem(images, f"cannot be read ({e.strerror}); fix its permissions")
        return None, report
    listed = set(table["ImageID"])
    for name in sorted(on_disk):
        if name.startswith("."):
            report.junk.append(str(images / name))
        elif name not in listed:
            report.problem(images / name, "eval photo not listed in info.csv; remove it or add a row")
    missing = [i for i in table["ImageID"] if i not in on_disk]
    for i in missing:
        report.problem(images / i, "eval photo listed in info.csv is missing; restore it")
    for i in sorted(listed & on_disk):  # a dangling or looping link would pass unscanned (it does not exist)
        if not (images / i).exists():
            report.problem(images / i, "eval photo is a broken or looping link; replace it with the photo itself")
    df = pd.DataFrame({"image_id": table["ImageID"], "path": "eval/images/" + table["ImageID"]})
    return df, report


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


def image_file(data_dir: str | Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(data_dir) / p
