"""Data checks: `check-data` (the whole data set scanned, summarised, every problem named with its file and fix),
and the same checks as training runs them (require_clean, and require_folds_match for folds.csv)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed

from pipeline.config import Config
from pipeline.data.images import inspect_photos, shape_notes
from pipeline.errors import DataError, Problem
from pipeline.labels import NUM_CLASSES, class_names
from pipeline.tables.eval import read_eval
from pipeline.tables.fields import image_file
from pipeline.tables.folds import fold_problems, pseudo_labels, train_only
from pipeline.tables.report import Report
from pipeline.tables.train import read_train

SIZE_WARNINGS_SHOWN = 20


def scan_images(files: list[Path], report: Report, n_jobs: int = 2, size: tuple[int, int] | None = None) -> None:
    """Decode every photo once; broken ones become problems, converted modes are counted, and so (with the cache
    size) are photos turned upright or not at the cache's aspect ratio."""
    files = [str(f) for f in files]
    chunks = [files[i : i + 256] for i in range(0, len(files), 256)]
    results = Parallel(n_jobs=n_jobs)(delayed(inspect_photos)(c) for c in chunks) if chunks else []
    modes, odd, shapes = Counter(), [], []
    for chunk, res in zip(chunks, results):
        for f, (problem, mode, warning, shape) in zip(chunk, res):
            if problem:
                report.problem(f, problem)
            if mode:
                modes[mode] += 1
            if warning:
                odd.append(f"{f}: {warning}")
            shapes.append((f, None if problem else shape))
    report.converted = dict(modes)
    report.warnings += odd[:SIZE_WARNINGS_SHOWN]
    if len(odd) > SIZE_WARNINGS_SHOWN:
        report.warnings.append(f"... and {len(odd) - SIZE_WARNINGS_SHOWN} more photos of a questionable size")
    if size is not None:
        report.notes += shape_notes(shapes, size)


def load_data(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame | None, Report]:
    """Contract tables for train and eval plus the report (the photos are decoded by scan_data, check-data's part)."""
    report = Report()
    train, report = read_train(cfg.data_dir, cfg.data, report)
    evals, report = read_eval(cfg.data_dir, report)
    if len(train):
        counts = train["label"].value_counts()
        empty = [name for c, name in enumerate(class_names(cfg.data.age_cuts)) if counts.get(c, 0) == 0]
        if empty:
            report.warnings.append(f"no photos of {len(empty)} class(es): {', '.join(empty)}; the models cannot learn "
                                   f"them: add persons of those groups (for 60+, see data.use_external)")
    return train, evals, report


def scan_data(data_dir, cache_size, train: pd.DataFrame, evals: pd.DataFrame | None, report: Report) -> None:
    """Every photo of the tables decoded once (scan_images), eval photos that exist too: what check-data adds."""
    files = [image_file(data_dir, p) for p in train["path"]]
    if evals is not None:
        files += [f for f in (image_file(data_dir, p) for p in evals["path"]) if f.exists()]
    scan_images(files, report, size=tuple(cache_size))


def require_clean(cfg: Config):
    """What training calls: the same checks as check-data (but the photos' decoding), raising DataError on any
    problem."""
    train, evals, report = load_data(cfg)
    if report.problems:
        raise DataError(report.problems)
    return train, evals, report


FOLDS_HINT = ("run `maskfold folds` with this config (after `maskfold external` when data.use_external is on, and "
              "`maskfold pseudo` when data.use_pseudo is on)")


def require_folds_match(cfg: Config, contract: pd.DataFrame, folds: pd.DataFrame, path: Path) -> None:
    """What training checks of folds.csv: valid folds, the same photos and labels as the data, the same external
    persons as <run_dir>/external, the same pseudo-labelled photos and labels as <run_dir>/pseudo. Raises DataError
    naming folds.csv and the stage that fixes it."""
    from pipeline.data.extra import extra_rows

    extra = extra_rows(cfg)  # first: a stage folder the config asks for and lacks is the fault to name
    problems = fold_problems(folds)
    if problems:
        raise DataError([Problem(str(path), p) for p in problems], hint=FOLDS_HINT)
    ext = folds["source"] == "external"
    a = contract.set_index("image_id")[["path", "label"]].sort_index()
    b = folds[~train_only(folds)].set_index("image_id")[["path", "label"]].sort_index()
    if not a.index.equals(b.index) or not (a.values == b.values).all():
        raise DataError([Problem(str(path), "folds.csv does not match the data (photos or labels changed)")],
                        hint=FOLDS_HINT)
    external = extra["external"]["image_id"] if "external" in extra else pd.Series([], dtype=str)
    if set(folds.loc[ext, "image_id"]) != set(external):
        raise DataError([Problem(str(path), "folds.csv's external photos differ from <run_dir>/external or from "
                                            "data.use_external")], hint=FOLDS_HINT)
    pseudo = extra.get("pseudo", folds.iloc[:0])
    if pseudo_labels(folds[folds["source"] == "pseudo"]) != pseudo_labels(pseudo):
        raise DataError([Problem(str(path), "folds.csv's pseudo-labelled photos or their labels differ from "
                                            "<run_dir>/pseudo or from data.use_pseudo")], hint=FOLDS_HINT)


def summary(train: pd.DataFrame, evals: pd.DataFrame | None, report: Report) -> str:
    lines = [
        f"persons: {train['person_id'].nunique()}   photos: {len(train)}   "
        f"eval photos: {'none (train-only data)' if evals is None else len(evals)}",
        f"junk files skipped: {len(report.junk)}",
    ]
    counts = train["label"].value_counts().reindex(range(NUM_CLASSES), fill_value=0)
    lines.append("photos per class: " + " ".join(f"{c}:{n}" for c, n in counts.items()))
    if report.converted:
        lines.append("converted to RGB: " + ", ".join(f"{m} {n}" for m, n in sorted(report.converted.items())))
    lines.append(f"label fixes applied: {len(report.fixes)}")
    lines += [f"  {f}" for f in report.fixes]
    lines += [f"note: {n}" for n in report.notes if "not in this data" not in n]
    unused = sum("not in this data" in n for n in report.notes)
    if unused:
        lines.append(f"note: {unused} label fix(es) name persons not in this data (left unused)")
    lines += [f"warning: {w}" for w in report.warnings]
    lines.append(f"problems: {len(report.problems)}")
    lines += [f"  {p}" for p in report.problems]
    return "\n".join(lines)
