"""Pseudo-labels (`maskfold pseudo`, data.use_pseudo) and the full-data refit (train.refit, ensemble.test_from),
end to end on CPU with tiny models on the generated set."""
import dataclasses
import json
import os
import shutil
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ensemble.predict import predict_folder
from ensemble.report import techniques_used
from ensemble.run import run_ensemble
from folds.make import write_folds
from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.data.extra import source_rows, with_soft_labels
from pipeline.errors import DataError
from pipeline.labels import NUM_CLASSES
from pipeline.layout import (
    blended_probs_npz,
    extra_record,
    folds_csv,
    pair_dir,
    pseudo_dir,
    refit_dir,
)
from pipeline.train.job import fold_job
from pipeline.train.jobs import train_all
from pipeline.train.rundata import load_run_data
from pipeline.train.state import job_state, unfinished_reason
from pipeline.train.trainer import Trainer
from pseudo_labels.current import require_current
from pseudo_labels.run import run_pseudo
from tests.conftest import ROOT, TINY, cli_args, make_config, tiny_config

QUIET = dict(log=lambda m: None)
# Top probability of each of the 12 eval photos in a stand-in ensemble output; 0.9 exactly must pass a 0.9 threshold.
TOPS = [0.99, 0.9, 0.8999, 0.5, 0.95, 0.3, 0.92, 0.1, 0.91, 0.6, 0.97, 0.2]
KEPT = [i for i, t in enumerate(TOPS) if t >= 0.9]


def labelled_eval(run_a: Path, data_dir: Path, shift: int = 0) -> tuple[list[str], np.ndarray]:
    """What run A's ensemble writes for the eval set, made by hand: photo i has probability TOPS[i] on one class."""
    ids = pd.read_csv(data_dir / "eval" / "info.csv")["ImageID"].tolist()
    probs = np.zeros((len(ids), NUM_CLASSES))
    for i, top in enumerate(TOPS):
        probs[i] = (1 - top) / (NUM_CLASSES - 1)
        probs[i, (5 * i + shift) % NUM_CLASSES] = top
    blended_probs_npz(run_a).parent.mkdir(parents=True, exist_ok=True)
    np.savez(blended_probs_npz(run_a), image_id=np.array(ids), probs=probs, pred=probs.argmax(1),
             age_cuts=np.array([30, 60]))
    return ids, probs


def read_pseudo(cfg):
    """The pseudo-labelled photos as training reads them, once they are known to be current."""
    require_current(cfg)
    return source_rows(cfg, "pseudo")


def pseudo_config(tmp_path, data_dir, *extra):
    return make_config(tmp_path, data_dir, *TINY, f"pseudo.from_run={tmp_path / 'a'}", "data.use_pseudo=true", *extra)


# ---------------------------------------------------------------- pseudo labels


def test_pseudo_stage_keeps_photos_at_or_above_the_threshold_with_hard_or_soft_labels(data_dir, tmp_path):
    ids, probs = labelled_eval(tmp_path / "a", data_dir)
    cfg = pseudo_config(tmp_path, data_dir)
    summary = run_pseudo(cfg, **QUIET)
    table = pd.read_csv(pseudo_dir(cfg.run_dir) / "train" / "train.csv", dtype=str, keep_default_na=False)
    assert table["id"].tolist() == [ids[i] for i in KEPT] and (table["soft_label"] == "").all()
    assert summary["photos"] == len(KEPT) == sum(summary["per_class"].values())
    rows = read_pseudo(cfg)
    # each photo is its own person, keeps its eval ImageID, and its class is the one predicted
    assert rows["image_id"].tolist() == [ids[i] for i in KEPT] and (rows["person_id"] == rows["image_id"]).all()
    assert rows["label"].tolist() == [int(probs[i].argmax()) for i in KEPT] and set(rows["source"]) == {"pseudo"}
    for r in rows.itertuples():
        assert os.path.samefile(r.path, data_dir / "eval" / "images" / r.image_id)  # linked, not re-encoded
    one_hot = np.eye(18, dtype=np.float32)[rows["label"].to_numpy()]
    assert (with_soft_labels(rows, one_hot) == one_hot).all()  # hard labels: one-hot targets

    soft = pseudo_config(tmp_path, data_dir, "pseudo.soft=true")
    run_pseudo(soft, **QUIET)
    rows = read_pseudo(soft)
    one_hot = np.eye(18, dtype=np.float32)[rows["label"].to_numpy()]
    assert np.allclose(with_soft_labels(rows, one_hot), probs[KEPT], atol=1e-5)

    # the photos on disk were chosen under other settings: refused, naming the file and the fix
    with pytest.raises(DataError, match="summary.json: pseudo.threshold is 0.95 but the photos were written with") as e:
        read_pseudo(pseudo_config(tmp_path, data_dir, "pseudo.soft=true", "pseudo.threshold=0.95"))
    assert "run `maskfold pseudo` with this config" in str(e.value)
    with pytest.raises(ConfigError, match="names this run itself"):
        run_pseudo(pseudo_config(tmp_path, data_dir, f"pseudo.from_run={cfg.run_dir}"), **QUIET)
    with pytest.raises(DataError, match="test_probs.npz: not found") as e:
        run_pseudo(pseudo_config(tmp_path, data_dir, f"pseudo.from_run={tmp_path / 'nothing'}"), **QUIET)
    assert "run `maskfold ensemble`" in str(e.value)


def test_the_commands_ask_the_pseudo_stage_whether_its_photos_are_current(data_dir, tmp_path):
    """The core reads the photos through extra.json alone; the stage's own check refuses them for other settings."""
    labelled_eval(tmp_path / "a", data_dir)
    sets = [*TINY, f"pseudo.from_run={tmp_path / 'a'}", "data.use_pseudo=true"]
    run_pseudo(pseudo_config(tmp_path, data_dir), **QUIET)
    res = CliRunner().invoke(main, cli_args("folds", tmp_path, data_dir, *sets, "pseudo.threshold=0.95"))
    assert res.exit_code != 0 and "summary.json: pseudo.threshold is 0.95 but the photos were written with 0.9" in \
        res.output and "run `maskfold pseudo` with this config" in res.output
    res = CliRunner().invoke(main, cli_args("folds", tmp_path, data_dir, *sets))
    assert res.exit_code == 0, res.output
    assert (pd.read_csv(folds_csv(tmp_path / "run"))["source"] == "pseudo").sum() == len(KEPT)
    extra_record(pseudo_dir(tmp_path / "run")).unlink()  # a folder without its record is not read as extra photos
    res = CliRunner().invoke(main, cli_args("folds", tmp_path, data_dir, *sets))
    assert res.exit_code != 0 and "extra.json: data.use_pseudo is on but this folder's record of its photos is " \
        "missing or unreadable" in res.output and "run `maskfold pseudo`" in res.output, res.output
    (pseudo_dir(tmp_path / "run") / "summary.json").write_text("{")  # damaged: named, not "no photos"
    res = CliRunner().invoke(main, cli_args("folds", tmp_path, data_dir, *sets))
    assert res.exit_code != 0 and "summary.json: data.use_pseudo is on but this record of the settings" in \
        res.output, res.output


def test_pseudo_photos_train_in_every_fold_never_in_validation_or_oof(data_dir, tmp_path):
    ids, probs = labelled_eval(tmp_path / "a", data_dir)
    kept = {ids[i] for i in KEPT}
    cfg = pseudo_config(tmp_path, data_dir, "pseudo.soft=true", "train.epochs=1", "ensemble.stacking=false")
    run_pseudo(cfg, **QUIET)
    write_folds(cfg, **QUIET)
    folds = pd.read_csv(folds_csv(cfg.run_dir))
    pseudo = folds[folds["source"] == "pseudo"]
    assert set(pseudo["image_id"]) == kept and (pseudo["fold"] == -1).all() and folds["image_id"].is_unique
    data = load_run_data(cfg, **QUIET)
    for k in range(cfg.folds.n_splits):
        t = Trainer(cfg, fold_job(cfg, "test_resnet", k), data, progress=False, **QUIET)
        trained = data.folds.iloc[t.train_rows]
        assert kept <= set(trained["image_id"]) and not kept & set(data.folds["image_id"].iloc[t.val_rows])
        on = (trained["source"] == "pseudo").to_numpy()
        expected = probs[[ids.index(i) for i in trained["image_id"][on]]]
        assert np.allclose(t.train_targets[on], expected, atol=1e-5)  # the soft labels reach the loader
        assert (t.train_targets[~on].max(1) == 1).all()  # competition photos stay one-hot

    table = train_all(cfg, **QUIET)
    assert set(table["status"]) == {"done"}
    for k in range(cfg.folds.n_splits):
        assert not kept & set(np.load(pair_dir(cfg.run_dir, "test_resnet", k) / "oof.npz")["image_id"])
    run_ensemble(cfg, **QUIET)
    oof = np.load(Path(cfg.run_dir) / "ensemble" / "oof.npz")
    assert len(oof["image_id"]) == 30 * 7 and not kept & set(oof["image_id"])
    report = (Path(cfg.run_dir) / "ensemble" / "report.md").read_text()
    assert "techniques: data.use_pseudo=True" in report
    assert "## Pseudo-labelled eval photos added" in report and f"| total |  | {len(KEPT)} |" in report
    for i in KEPT:
        c = int(probs[i].argmax())
        assert f"| {c} | " in report

    # run A's ensemble changed its mind: same settings, other labels. folds.csv no longer matches the new pseudo
    # photos, and once rewritten, the pairs trained on the old ones are not finished any more.
    labelled_eval(tmp_path / "a", data_dir, shift=1)
    run_pseudo(cfg, **QUIET)
    with pytest.raises(DataError, match="pseudo-labelled photos or their labels differ"):
        load_run_data(cfg, **QUIET)
    write_folds(cfg, **QUIET)
    assert unfinished_reason(cfg, "test_resnet", 0) == "trained on other photos, labels or folds"


def test_pseudo_labels_from_a_finished_run_end_to_end(refit_run):
    """Run A ensembles; run B (its own run_dir) labels the eval set with A's ensemble and trains on it."""
    cfg_a, data, tmp = refit_run
    top = np.load(blended_probs_npz(cfg_a.run_dir))["probs"].max(1)
    threshold = float(np.floor(np.median(top) * 1e4) / 1e4)  # about half of A's eval photos
    sets = [*TINY, "train.epochs=1", "ensemble.stacking=false", f"run_dir={tmp / 'b'}",
            f"pseudo.from_run={cfg_a.run_dir}", "data.use_pseudo=true", f"pseudo.threshold={threshold}"]
    for command in ("pseudo", "folds", "train-all", "ensemble"):
        res = CliRunner().invoke(main, cli_args(command, tmp, data, *sets))
        assert res.exit_code == 0, res.output
    folds = pd.read_csv(folds_csv(tmp / "b"))
    assert (folds["source"] == "pseudo").sum() == (top >= threshold).sum() > 0
    assert (tmp / "b" / "submission.csv").is_file()
    assert "## Pseudo-labelled eval photos added" in (tmp / "b" / "ensemble" / "report.md").read_text()


# ---------------------------------------------------------------- full-data refit


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory, demo_source):
    """Two backbones cross-validated and ensembled, without a refit (run A): (config, data folder, tmp)."""
    tmp = tmp_path_factory.mktemp("refit")
    data = tmp / "data"
    shutil.copytree(demo_source, data)
    cfg = tiny_config(tmp, data, *BACKBONES)
    assert set(train_all(cfg, **QUIET)["status"]) == {"done"}
    run_ensemble(cfg, **QUIET)
    return cfg, data, tmp


# Two backbones, two epochs; stacking is left out of the blends: its fits would take most of each ensemble's time.
BACKBONES = ["backbones=[{name: test_resnet, lr: 0.003}, {name: test_efficientnet, lr: 0.003}]",
             "ensemble.stacking=false"]


def ensemble_with(cfg, test_from: str) -> tuple[bytes, np.ndarray]:
    """The submission's bytes and the blended eval probabilities with ensemble.test_from set."""
    cfg = dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, test_from=test_from))
    run_ensemble(cfg, **QUIET)
    return (Path(cfg.run_dir) / "submission.csv").read_bytes(), np.load(blended_probs_npz(cfg.run_dir))["probs"]


def test_refit_per_backbone_for_the_median_best_epoch_and_only_test_from_changes_the_submission(refit_run, tmp_path):
    cfg, data, tmp = refit_run
    without_refit = (Path(cfg.run_dir) / "submission.csv").read_bytes()
    folds_probs = np.load(blended_probs_npz(cfg.run_dir))["probs"]
    with pytest.raises(DataError, match=r"test_resnet refit \(not trained.*train-all --refit"):
        ensemble_with(cfg, "refit")

    res = CliRunner().invoke(main, cli_args("train-all", tmp, data, *TINY, *BACKBONES) + ["--refit"])
    assert res.exit_code == 0, res.output
    assert "0 pair(s) to train, 4 already finished" in res.output  # train.refit does not change a fold's identity
    for b in ("test_resnet", "test_efficientnet"):
        d = refit_dir(cfg.run_dir, b)
        for name in ("best.pt", "test.npz", "metrics.csv", "done.json"):
            assert (d / name).is_file(), (b, name)
        best = [job_state(cfg, fold_job(cfg, b, k)).done.best_epoch for k in range(cfg.folds.n_splits)]
        for k, e in enumerate(best):  # the folds' best epochs, as their metrics.csv show them
            metrics = pd.read_csv(pair_dir(cfg.run_dir, b, k) / "metrics.csv")
            assert metrics["epoch"][metrics["val_f1"].idxmax()] == e
        done = json.loads((d / "done.json").read_text())
        assert done["epochs"] == int(statistics.median(best) + 0.5) == len(pd.read_csv(d / "metrics.csv"))
        assert done["photos"] == 30 * 7  # every person, no validation
        ids = np.load(d / "test.npz")["image_id"]
        assert list(ids) == pd.read_csv(data / "eval" / "info.csv")["ImageID"].tolist()
    again = CliRunner().invoke(main, cli_args("train-all", tmp, data, *TINY, *BACKBONES, "train.refit=true"))
    assert again.exit_code == 0 and "0 refit(s) to train, 2 already finished" in again.output
    # a lost test.npz is predicted again from the refit's best.pt, without training it again
    d = refit_dir(cfg.run_dir, "test_resnet")
    stamp = (d / "best.pt").stat().st_mtime_ns
    (d / "test.npz").unlink()
    again = CliRunner().invoke(main, cli_args("train-all", tmp, data, *TINY, *BACKBONES, "train.refit=true"))
    assert again.exit_code == 0 and "1 refit(s) to train, 1 already finished" in again.output
    assert (d / "test.npz").is_file() and (d / "best.pt").stat().st_mtime_ns == stamp
    assert "test_resnet refit epoch" not in again.output
    # ... and so it is when last.pt is gone too: done.json and best.pt say the training finished
    (d / "test.npz").unlink()
    (d / "last.pt").unlink()
    again = CliRunner().invoke(main, cli_args("train-all", tmp, data, *TINY, *BACKBONES, "train.refit=true"))
    assert again.exit_code == 0 and "trained before; predicting again from best.pt" in again.output
    assert (d / "test.npz").is_file() and (d / "best.pt").stat().st_mtime_ns == stamp

    with_refit, same_probs = ensemble_with(cfg, "folds")
    assert with_refit == without_refit and np.array_equal(same_probs, folds_probs)
    _, refit_probs = ensemble_with(cfg, "refit")
    assert not np.allclose(refit_probs, folds_probs)
    # predict replays the models the submission used: here the refits
    df = predict_folder(cfg.run_dir, data / "eval" / "images", tmp_path / "p.csv", **QUIET)
    sub = pd.read_csv(Path(cfg.run_dir) / "submission.csv").merge(
        df.assign(ImageID=[Path(p).name for p in df["path"]]), on="ImageID")
    assert len(sub) == 12 and (sub["ans"] == sub["class"]).all()
    _, both_probs = ensemble_with(cfg, "both")
    assert np.allclose(both_probs, (folds_probs + refit_probs) / 2)
    report = (Path(cfg.run_dir) / "ensemble" / "report.md").read_text()
    assert "techniques: train.refit=True, ensemble.test_from=both" in report


def test_techniques_used_and_the_new_keys_are_checked(tmp_path):
    assert techniques_used(load_config(ROOT / "configs" / "base.yaml").to_dict()) == [
        "train.head=multi", "train.refit=True", "ensemble.test_from=both"]  # the defaults the demo measured best
    cfg = load_config(ROOT / "configs" / "base.yaml", ["train.head=joint", "train.refit=false",
                                                       "ensemble.test_from=folds"])
    assert techniques_used(cfg.to_dict()) == []
    assert techniques_used({"data": {"use_pseudo": True}, "ensemble": {"test_from": "refit"}}) == [
        "data.use_pseudo=True", "ensemble.test_from=refit"]
    # train.refit and pseudo.from_run never change a fold's weights; the pseudo settings do
    refit = load_config(ROOT / "configs" / "base.yaml", ["train.head=joint", "pseudo.from_run=runs/x"])
    assert refit.pair_hash("efficientnet_b0") == cfg.pair_hash("efficientnet_b0")
    pseudo = load_config(ROOT / "configs" / "base.yaml", ["train.head=joint", "data.use_pseudo=true"])
    assert pseudo.pair_hash("efficientnet_b0") != cfg.pair_hash("efficientnet_b0")
    with pytest.raises(ConfigError, match="'ensemble.test_from' is 'all'; choose one of folds, refit, both"):
        load_config(ROOT / "configs" / "base.yaml", ["ensemble.test_from=all"])
    with pytest.raises(ConfigError, match="'pseudo.threshold' is 1.5"):
        load_config(ROOT / "configs" / "base.yaml", ["pseudo.threshold=1.5"])
