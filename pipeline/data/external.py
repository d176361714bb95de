"""Reading the external pseudo-persons that the external_data stage writes under <run_dir>/external.

They use the competition layout (train/train.csv + train/images/<person>/), so the same contract reader and
checks apply; they are marked source=external and their paths are made absolute.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from pipeline.config.schema import DataConfig
from pipeline.errors import DataError, Problem
from pipeline.layout import external_dir
from pipeline.tables.train import read_train


def read_external(run_dir: str | Path, data_cfg: DataConfig) -> pd.DataFrame:
    root = external_dir(run_dir)
    if not (root / "train" / "train.csv").is_file():
        raise DataError([Problem(str(root / "train" / "train.csv"),
                                 "data.use_external is on but there is no external data; run `maskfold external` first")])
    df, report = read_train(root, dataclasses.replace(data_cfg, label_fixes=None))
    if report.problems:
        raise DataError(report.problems)
    if data_cfg.external_cap:
        keep = sorted(df["person_id"].unique())[: data_cfg.external_cap]
        df = df[df["person_id"].isin(keep)]
    df = df.assign(path=[str((root / p).resolve()) for p in df["path"]], source="external")
    return df.reset_index(drop=True)
