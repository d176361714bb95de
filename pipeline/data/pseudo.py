"""Reading the pseudo-labelled eval photos that the pseudo stage writes under <run_dir>/pseudo, and their soft labels.

The stage writes the competition layout (train/train.csv + train/images/<person>/<photo>) with one photo per
"person": an eval photo has no person grouping, so each is its own. The folder is named by the photo's eval
ImageID, the photo's file name by its predicted mask state (mask1, incorrect_mask, normal), and train.csv holds
the predicted gender and an age inside the predicted band, so the same contract reader turns them into labelled
rows. Each row keeps its eval ImageID as image_id and person_id (no photo can be listed twice) and is marked
source=pseudo; the folds stage gives it fold -1, so it is trained on in every fold and never validated.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.schema import Config
from pipeline.errors import DataError, Problem
from pipeline.labels import NUM_CLASSES
from pipeline.layout import blended_probs_npz, pseudo_dir
from pipeline.tables.fields import CONTRACT_COLUMNS
from pipeline.tables.train import read_train

PSEUDO_HINT = "run `maskfold pseudo` with this config (pseudo.from_run naming the run whose ensemble labels them)"


def read_summary(run_dir) -> dict | None:
    try:
        return json.loads((pseudo_dir(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def read_pseudo(cfg: Config) -> pd.DataFrame:
    """The pseudo-labelled photos as contract rows (plus soft_label: the probabilities, or '' for a hard label)."""
    root = pseudo_dir(cfg.run_dir)
    csv = root / "train" / "train.csv"
    summary = read_summary(cfg.run_dir)
    if not csv.is_file() or summary is None:
        raise DataError([Problem(str(csv), "data.use_pseudo is on but there are no pseudo-labelled photos")],
                        hint=PSEUDO_HINT)
    # The photos were chosen and labelled under the settings in summary.json: a changed setting needs a new stage run.
    wrote = {"pseudo.threshold": summary.get("threshold"), "pseudo.soft": summary.get("soft"),
             "data.age_cuts": summary.get("age_cuts")}
    wanted = {"pseudo.threshold": cfg.pseudo.threshold, "pseudo.soft": cfg.pseudo.soft,
              "data.age_cuts": list(cfg.data.age_cuts)}
    if cfg.pseudo.from_run:
        wrote["pseudo.from_run"] = summary.get("from_run")
        wanted["pseudo.from_run"] = str(Path(cfg.pseudo.from_run).resolve())
    stale = [f"{k} is {wanted[k]} but the photos were written with {wrote[k]}" for k in wanted if wrote[k] != wanted[k]]
    source = blended_probs_npz(cfg.pseudo.from_run) if cfg.pseudo.from_run else None
    if source is not None and source.is_file() and \
            hashlib.sha256(source.read_bytes()).hexdigest()[:16] != summary.get("source_digest"):
        stale.append(f"{source} changed (the run was ensembled again) since the photos were labelled")
    if stale:
        raise DataError([Problem(str(root / "summary.json"), "; ".join(stale))], hint=PSEUDO_HINT)
    if summary.get("photos") == 0:  # none was confident enough: nothing to add (the reader refuses an empty table)
        return pd.DataFrame(columns=[*CONTRACT_COLUMNS, "soft_label"])
    df, report = read_train(root, dataclasses.replace(cfg.data, label_fixes=None), whole_persons=False)
    if report.problems:
        raise DataError(report.problems, hint=PSEUDO_HINT)
    table = pd.read_csv(csv, dtype=str, keep_default_na=False).set_index("path")
    soft = table["soft_label"].reindex(df["person_id"]).fillna("").to_numpy() if "soft_label" in table else ""
    df = df.assign(image_id=df["person_id"], path=[str((root / p).resolve()) for p in df["path"]], source="pseudo",
                   soft_label=soft)
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
            raise ValueError(f"soft_label of {table['image_id'].iloc[i]} is not {NUM_CLASSES} probabilities: "
                             f"rerun `maskfold pseudo` and `maskfold folds`")
        targets[i] = p / p.sum()  # six printed digits: sums may be off by 1e-6
    return targets


def class_counts(folds_csv: Path) -> np.ndarray | None:
    """Pseudo-labelled photos per class in a folds.csv, or None when it has none."""
    if not Path(folds_csv).is_file():
        return None
    folds = pd.read_csv(folds_csv, usecols=["label", "source"])
    labels = folds.loc[folds["source"] == "pseudo", "label"].to_numpy()
    return np.bincount(labels, minlength=NUM_CLASSES) if len(labels) else None
