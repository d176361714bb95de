"""eval/info.csv read into a table in submission order (or None for a train-only data set)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.tables.fields import read_table
from pipeline.tables.report import Report


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
