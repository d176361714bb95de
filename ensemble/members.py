"""The ensemble's members and their predictions, read from disk: every backbone of one run, or of several runs.

A member is one backbone of one finished run. Runs blended together must have assigned the same persons to the same
folds on the same photos and labels, or their out-of-fold predictions would not be out of fold for one another.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ensemble import blend
from pipeline.config import Config, config_from_dict
from pipeline.errors import DataError, Problem
from pipeline.labels import NUM_CLASSES
from pipeline.layout import (
    config_yaml,
    folds_csv,
    folds_digest,
    models_dir,
    pair_file,
    read_fold_table,
    refit_file,
)
from pipeline.model.metrics import scores
from pipeline.tables.eval import read_eval
from pipeline.tables.folds import train_only
from pipeline.train.plan import refit_status
from pipeline.train.state import unfinished_reason

TRAIN_ALL = "run `maskfold train-all` with this config: it trains or re-predicts exactly these pairs"


@dataclass
class Member:
    name: str  # the backbone, or run/backbone when several runs are blended
    run: str
    backbone: str
    cfg: Config  # the member run's own config (its TTA, folds, data settings)


@dataclass
class Predictions:
    image_ids: np.ndarray  # OOF ids, in folds.csv order of the competition photos
    labels: np.ndarray
    persons: np.ndarray
    folds: np.ndarray  # each photo's validation fold
    ages: np.ndarray  # each photo's person's age (for F1 around the age cuts)
    paths: np.ndarray  # each photo's path, as in folds.csv (for the gallery of mistakes)
    members: list[Member]
    oof: dict[str, np.ndarray]  # member -> (N, 18) probabilities
    per_fold: list[dict]  # member, fold, f1, acc on its own fold
    test: dict[str, list[np.ndarray]] | None  # member -> its folds' (M, 18) test probabilities
    test_ids: np.ndarray | None
    refit: dict[str, np.ndarray] | None = None  # member -> its refit's (M, 18) test probabilities (ensemble.test_from)
    test_from: str = "folds"  # ensemble.test_from as used: auto resolved to folds or both


def run_config(run: str | Path) -> Config:
    """A finished run's own config (as its last command saved it), pointed at where the run is now."""
    path = config_yaml(run)
    if not path.is_file():
        raise DataError([Problem(str(path), "not found: not a maskfold run directory")],
                        hint="name run directories that `maskfold train-all` has written")
    return dataclasses.replace(config_from_dict(yaml.safe_load(path.read_text()), str(path)), run_dir=str(run))


def _competition_folds(run: str | Path) -> pd.DataFrame:
    path = folds_csv(run)
    if not path.is_file():
        raise DataError([Problem(str(path), "folds.csv not found")],
                        hint="run `maskfold folds` and `maskfold train-all` with this config first")
    folds = read_fold_table(path)
    # train-only photos (external, pseudo-labelled) are never predicted out of fold; their soft labels go with them
    return folds[~train_only(folds)].drop(columns="soft_label", errors="ignore").reset_index(drop=True)


def run_labels(runs: list[str]) -> list[str]:
    """The shortest path endings that tell the runs apart: runs/a, runs/b -> a, b."""
    parts = [Path(r).resolve().parts for r in runs]
    for depth in range(1, max(map(len, parts)) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(r) for r in runs]


def members_of(cfg: Config) -> list[Member]:
    """The config's own backbones, or every backbone of each run in ensemble.runs."""
    if not cfg.ensemble.runs:
        return [Member(b, cfg.run_dir, b, cfg) for b in cfg.backbone_names()]
    resolved = [Path(r).resolve() for r in cfg.ensemble.runs]
    twice = [r for r, p in zip(cfg.ensemble.runs, resolved) if resolved.count(p) > 1]
    if twice:
        raise DataError([Problem(str(r), "named more than once in ensemble.runs") for r in twice],
                        hint="name each run once")
    out = []
    for run, label in zip(cfg.ensemble.runs, run_labels(cfg.ensemble.runs)):
        member_cfg = run_config(run)
        out += [Member(f"{label}/{b}", run, b, member_cfg) for b in member_cfg.backbone_names()]
    return out


def resolve_test_from(cfg: Config, members: list[Member]) -> str:
    """ensemble.test_from as used. auto follows the run: both (folds and refits) where a member's run trains refits
    (its train.refit is on, so a missing refit is reported) or every member's refit is finished; else the folds."""
    if cfg.ensemble.test_from != "auto":
        return cfg.ensemble.test_from
    if any(m.cfg.train.refit for m in members):
        return "both"
    return "both" if all(refit_status(m.cfg, m.backbone)[1] is None for m in members) else "folds"


def load_predictions(cfg: Config) -> Predictions:
    members = members_of(cfg)
    test_from = resolve_test_from(cfg, members)
    runs = list(dict.fromkeys(m.run for m in members))
    folds = _competition_folds(runs[0])
    # blended runs must share the competition photos, labels and persons-to-folds (outside faces may differ)
    first = folds_digest(folds)
    differ = [r for r in runs[1:] if folds_digest(_competition_folds(r)) != first]
    if differ:
        raise DataError([Problem(r, f"its folds.csv holds other photos, labels or persons-to-folds than {runs[0]}'s")
                         for r in differ],
                        hint="blend only runs made on the same data with the same seed and folds.n_splits")
    ids = folds["image_id"].to_numpy().astype(str)
    index = pd.Series(np.arange(len(ids)), index=ids)
    evals, _ = read_eval(cfg.data_dir)
    missing, oof, test, refit, per_fold = [], {}, {}, {}, []  # missing: (run, what is wrong)
    for m in members:
        probs = np.full((len(ids), NUM_CLASSES), np.nan)
        test_folds = []
        for k in range(m.cfg.folds.n_splits):
            why = unfinished_reason(m.cfg, m.backbone, k)
            if why is not None:
                missing.append((m.run, f"{m.name} fold {k} ({why})"))
                continue
            z = np.load(pair_file(m.run, m.backbone, k, "oof"))
            rows = index.reindex(z["image_id"].astype(str))
            if rows.isna().any():
                missing.append((m.run, f"{m.name} fold {k}: oof.npz names photos not in folds.csv; retrain this pair"))
                continue
            rows = rows.to_numpy().astype(int)
            if not np.isnan(probs[rows]).all():
                missing.append((m.run, f"{m.name} fold {k}: oof.npz repeats photos already predicted by another fold"))
            probs[rows] = blend.softmax(z["logits"])
            s = scores(z["labels"], z["logits"].argmax(1))
            per_fold.append({"backbone": m.name, "fold": k, "f1": s["f1"], "acc": s["acc"], "photos": len(rows)})
            if evals is not None:
                zt = np.load(pair_file(m.run, m.backbone, k, "test"))
                if list(zt["image_id"].astype(str)) != list(evals["image_id"]):
                    missing.append((m.run, f"{m.name} fold {k}: test.npz photos are not {cfg.data_dir}/eval/info.csv's"))
                    continue
                test_folds.append(blend.softmax(zt["logits"]))
        uncovered = np.isnan(probs).any(1)
        if uncovered.any() and not any(x.startswith(f"{m.name} ") for _, x in missing):
            missing.append((m.run, f"{m.name}: {uncovered.sum()} training photos have no OOF prediction "
                                   f"(e.g. {ids[uncovered][0]})"))
        oof[m.name] = probs
        if test_folds:
            test[m.name] = test_folds
        if evals is not None and test_from != "folds":
            refit[m.name] = _refit_test(m, evals, cfg, missing)
    if missing:
        raise DataError([Problem(str(models_dir(run)), "missing or inconsistent predictions: " + x)
                         for run, x in missing], hint=TRAIN_ALL)
    return Predictions(ids, folds["label"].to_numpy(), folds["person_id"].to_numpy().astype(str),
                       folds["fold"].to_numpy(), folds["age"].to_numpy(), folds["path"].to_numpy().astype(str),
                       members, oof, per_fold, test if evals is not None else None,
                       evals["image_id"].to_numpy().astype(str) if evals is not None else None, refit or None,
                       test_from)


def _refit_test(m: Member, evals: pd.DataFrame, cfg: Config, missing: list) -> np.ndarray | None:
    """A member's refit test probabilities, or None with what is wrong added to `missing`."""
    done, why = refit_status(m.cfg, m.backbone)
    if done is None or why is not None:
        missing.append((m.run, f"{m.name} refit ({why}; ensemble.test_from is {cfg.ensemble.test_from}: run "
                               f"`maskfold train-all --refit`)"))
        return None
    z = np.load(refit_file(m.run, m.backbone, "test"))
    if list(z["image_id"].astype(str)) != list(evals["image_id"]):
        missing.append((m.run, f"{m.name} refit: test.npz photos are not {cfg.data_dir}/eval/info.csv's"))
        return None
    return blend.softmax(z["logits"])
