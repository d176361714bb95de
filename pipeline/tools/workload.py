"""The workload of `maskfold bench --stages`: a generated data set of a chosen size, and finished runs whose member
predictions are synthetic but in the real on-disk format, built once under a folder the user names.

    <workload>/data/                 `maskfold demo-data` photos (train and eval, with eval/labels.csv)
    <workload>/config.yaml           the bench's config, pointed at data/ and at base-run/ (its folds.csv)
    <workload>/members/r<i>/         finished runs: config.yaml, folds.csv, and per backbone and fold oof.npz,
                                     test.npz, done.json and an empty best.pt (the ensemble checks it exists, never
                                     loads it); a full/ refit per backbone when ensemble.test_from uses refits
    <workload>/predict-run/          one small real model (random weights) per fold, and its ensemble, for `predict`

Synthetic predictions: each photo's logits are the true class lifted by a member's strength, plus noise shared by
every member (the photos that are hard for all) and noise of its own, so members agree and err together as real
ones do. They are drawn from the data's labels, so blends, offsets and pseudo-labels see realistic confidences.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config, save_config
from pipeline.io import atomic_save_npz, atomic_write_text
from pipeline.labels import NUM_CLASSES
from pipeline.layout import (
    config_yaml,
    eval_digest,
    folds_csv,
    job_file,
    pair_dir,
    pair_file,
    refit_dir,
    run_digest,
)
from pipeline.records import BestMeta, PairDone, RefitDone
from pipeline.tables.eval import read_eval
from pipeline.tables.folds import train_only
from pipeline.train.job import refit_identity

BUILT = ".built.json"  # written last: the workload is whole and was built with these sizes


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`maskfold <args>` in a child process of this interpreter (the workload's own steps, untimed)."""
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"`maskfold {' '.join(args)}` failed: {(out.stdout + out.stderr)[-2000:]}")
    return out


def member_logits(labels: np.ndarray, strengths: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """One (N, C) logit array per member: true class * strength + shared noise + the member's own noise."""
    n = len(labels)
    truth = np.zeros((n, NUM_CLASSES), np.float32)
    truth[np.arange(n), labels] = 1
    shared = rng.normal(0, 1.0, (n, NUM_CLASSES)).astype(np.float32)
    return [(s * truth + shared + rng.normal(0, 1.0, (n, NUM_CLASSES))).astype(np.float32) for s in strengths]


def workload_config(cfg: Config, root: Path) -> Config:
    """The bench's config: the user's, pointed at the workload's data, its cache and a run under it."""
    return dataclasses.replace(cfg, data_dir=str(root / "data"), run_dir=str(root / "base-run"),
                               cache_dir=str(root / "cache"),
                               data=dataclasses.replace(cfg.data, use_external=False, use_pseudo=False),
                               train=dataclasses.replace(cfg.train, refit=cfg.ensemble.test_from != "folds"))


def member_run(cfg: Config, run: Path, backbones: list[str], folds: pd.DataFrame, evals: pd.DataFrame | None,
               truth: np.ndarray | None, seed: int) -> None:
    """A finished run of `backbones` with synthetic OOF, test and refit predictions (see the module docstring)."""
    member_cfg = dataclasses.replace(cfg, run_dir=str(run), backbones=[
        dataclasses.replace(cfg.backbones[0], name=b) for b in backbones])
    save_config(member_cfg, config_yaml(run))
    folds.to_csv(folds_csv(run), index=False)
    rng = np.random.default_rng(seed)
    scored = folds[~train_only(folds)]
    strengths = list(rng.uniform(2.5, 3.5, len(backbones)))
    oof = member_logits(scored["label"].to_numpy(), strengths, rng)
    done = {"data": run_digest(run), "tta": list(cfg.tta), "eval": eval_digest(cfg.data_dir), "test": evals is not None,
            "epochs_run": 1}
    for b, logits in zip(backbones, oof):
        for k in range(cfg.folds.n_splits):
            rows = (scored["fold"] == k).to_numpy()
            d = pair_dir(run, b, k)
            d.mkdir(parents=True, exist_ok=True)
            atomic_save_npz(job_file(d, "oof"), image_id=scored["image_id"].to_numpy()[rows].astype(str),
                            logits=logits[rows], labels=scored["label"].to_numpy()[rows])
            if evals is not None:
                _test_npz(d, evals, truth, strengths, b, backbones, rng)
            job_file(d, "best").touch()
            pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, 1.2, 0.9], "val_loss": [1.5, 1.0, 0.95],
                          "val_f1": [0.5, 0.7, 0.75]}).to_csv(job_file(d, "metrics"), index=False)
            atomic_write_text(job_file(d, "done"), PairDone(**done, hash=member_cfg.pair_hash(b), backbone=b, fold=k,
                                                        best_epoch=1, val_f1=0.0, oof_f1_tta=0.0).to_json())
        if evals is not None and cfg.train.refit:
            d = refit_dir(run, b)
            d.mkdir(parents=True, exist_ok=True)
            _test_npz(d, evals, truth, strengths, b, backbones, rng)
            job_file(d, "best").touch()
            atomic_write_text(job_file(d, "done"), RefitDone(**done, hash=refit_identity(member_cfg, b, 1), backbone=b,
                                                         epochs=1, photos=len(folds)).to_json())


def _test_npz(d: Path, evals: pd.DataFrame, truth: np.ndarray, strengths, b: str, backbones: list[str], rng) -> None:
    logits = member_logits(truth, [strengths[backbones.index(b)]], rng)[0]
    atomic_save_npz(job_file(d, "test"), image_id=evals["image_id"].to_numpy().astype(str), logits=logits)


def eval_truth(data_dir: Path, evals: pd.DataFrame | None) -> np.ndarray | None:
    """The eval photos' classes from the generated set's eval/labels.csv (random where a set ships none)."""
    if evals is None:
        return None
    truth = data_dir / "eval" / "labels.csv"
    if truth.is_file():
        return pd.read_csv(truth).set_index("ImageID").loc[evals["image_id"], "ans"].to_numpy()
    return np.random.default_rng(0).integers(0, NUM_CLASSES, len(evals))


def predict_run(cfg: Config, root: Path, backbone: str) -> Path:
    """A run of one small real model per fold (random weights: predict's cost does not depend on them) whose
    predictions are synthetic, ensembled with equal weights, so that `maskfold predict` has something to replay."""
    import torch

    from pipeline.model.models import create, norm_stats

    run = root / "predict-run"
    bb = dataclasses.replace(cfg.backbones[0], name=backbone, pretrained=False, weights=None)
    pcfg = dataclasses.replace(cfg, run_dir=str(run), backbones=[bb],
                               ensemble=dataclasses.replace(cfg.ensemble, runs=[], test_from="folds"))
    folds = pd.read_csv(folds_csv(cfg.run_dir), dtype={"person_id": str})
    evals, _ = read_eval(cfg.data_dir)
    member_run(pcfg, run, [backbone], folds, evals, eval_truth(Path(cfg.data_dir), evals), seed=99)
    torch.manual_seed(0)
    model = create(bb, allow_pretrained=False, head=cfg.train.head)
    mean, std = norm_stats(model)
    meta = BestMeta(backbone=dataclasses.asdict(bb), config=pcfg.to_dict(), mean=mean, std=std,
                    img_size=pcfg.resolved(bb)["img_size"], epoch=1, f1=0.0, hash=pcfg.pair_hash(backbone),
                    data=run_digest(run), fold=None)
    for k in range(cfg.folds.n_splits):
        meta.fold = k
        torch.save(meta.to_checkpoint(model.state_dict()), pair_file(run, backbone, k, "best"))
    cli("ensemble", "--config", str(config_yaml(run)), "--set", "ensemble.search_weights=false",
        "--set", "ensemble.selection=false", "--set", "ensemble.stacking=false", "--set", "ensemble.task_weights=false",
        "--set", "ensemble.tune_offsets=false")
    return run


def build_workload(cfg: Config, root: str | Path, persons: int, eval_images: int, members: int,
                   backbones_per_run: int, predict_backbone: str = "resnet10t", log=print) -> Config:
    """The workload under `root`, built unless a whole one of these sizes is there; returns the bench's config."""
    root = Path(root)
    sizes = {"format": 1, "persons": persons, "eval_images": eval_images, "members": members,
             "backbones_per_run": backbones_per_run, "n_splits": cfg.folds.n_splits, "test_from": cfg.ensemble.test_from}
    wcfg = workload_config(cfg, root)
    built = root / BUILT
    if built.is_file() and json.loads(built.read_text()) == sizes:
        return wcfg
    from pipeline.tools.demo_data import make_demo_data

    log(f"building the workload under {root}: {persons} persons, {eval_images} eval photos, {members} members")
    built.unlink(missing_ok=True)
    if _photo_counts(root / "data") != (persons, eval_images):
        shutil.rmtree(root / "data", ignore_errors=True)  # no photo of another size's set may stay behind
        make_demo_data(root / "data", persons=persons, eval_images=eval_images, seed=0, elder_pool=0,
                       n_jobs=os.cpu_count() or 2)
    save_config(wcfg, root / "config.yaml")
    cli("folds", "--config", str(root / "config.yaml"))
    folds = pd.read_csv(folds_csv(wcfg.run_dir), dtype={"person_id": str})
    evals, _ = read_eval(wcfg.data_dir)
    truth = eval_truth(Path(wcfg.data_dir), evals)
    names = [b.name for b in cfg.backbones] or ["member"]
    for r in range(-(-members // backbones_per_run)):
        take = min(backbones_per_run, members - r * backbones_per_run)
        bbs = [f"{names[i % len(names)]}" + (f"-{i}" if i >= len(names) else "") for i in range(take)]
        member_run(wcfg, root / "members" / f"r{r}", bbs, folds, evals, truth, seed=r)
    predict_run(wcfg, root, predict_backbone)
    atomic_write_text(built, json.dumps(sizes))
    return wcfg


def _photo_counts(data: Path) -> tuple[int, int] | None:
    """(persons, eval photos) of a generated set already there, or None."""
    try:
        return len(pd.read_csv(data / "train" / "train.csv")), len(pd.read_csv(data / "eval" / "labels.csv"))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def member_runs(root: str | Path) -> list[Path]:
    return sorted((Path(root) / "members").glob("r*"), key=lambda p: int(p.name[1:]))
