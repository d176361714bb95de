"""Behaviour that had no test: early stopping, gradient accumulation and clipping, the mix schedule, hard voting,
crop TTA, TTA-only re-prediction, face crops through predict, and a lock left by a killed process."""
import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ensemble.run import run_ensemble
from pipeline.io import file_lock
from pipeline.layout import job_lock, pair_dir
from pipeline.train import trainer as trainer_module
from pipeline.train.job import fold_job
from pipeline.train.jobs import train_all
from pipeline.train.pair import train_pair
from pipeline.train.rundata import load_run_data
from pipeline.train.trainer import Trainer
from tests.conftest import tiny_config

QUIET = dict(log=lambda m: None)
VALIDATE = Trainer.validate


def _trainer(cfg, fold=0):
    return Trainer(cfg, fold_job(cfg, cfg.backbone_names()[0], fold), load_run_data(cfg, **QUIET), progress=False,
                   **QUIET)


def _scripted_f1(monkeypatch, values):
    """Validation macro F1 follows `values` epoch by epoch, whatever the model learns."""
    calls = iter(values)

    def validate(self, tta=("orig",)):
        row, logits = VALIDATE(self, tta)
        return {**row, "val_f1": next(calls)}, logits

    monkeypatch.setattr(Trainer, "validate", validate)


def test_patience_stops_after_that_many_epochs_without_a_gain(data_dir, tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=8", "train.patience=2")
    _scripted_f1(monkeypatch, [0.3, 0.5, 0.4, 0.45, 0.6, 0.7, 0.8, 0.9])
    info = train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    # best at epoch 2, then two epochs without a gain: stop after epoch 4
    assert info.done.epochs_run == 4 and info.done.best_epoch == 2 and info.done.val_f1 == 0.5
    metrics = pd.read_csv(pair_dir(cfg.run_dir, "test_resnet", 0) / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3, 4]


def test_patience_counts_the_epochs_before_a_resume(data_dir, tmp_path, monkeypatch):
    """Stopped after epoch 3 (one epoch without a gain), a resume trains one more epoch, not two."""
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=8", "train.patience=2")
    _scripted_f1(monkeypatch, [0.3, 0.5, 0.4])
    first = _trainer(cfg)
    first.settings["epochs"] = 3  # the schedule was built for 8 epochs, as in an uninterrupted run
    first.fit()
    _scripted_f1(monkeypatch, [0.45, 0.9, 0.9])
    resumed = _trainer(cfg)
    done = resumed.fit()
    assert done.epochs_run == 4 and done.best_epoch == 2
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]


def test_accumulated_steps_update_once_per_accum_steps_batches(data_dir, tmp_path):
    plain = _trainer(tiny_config(tmp_path / "a", data_dir, "train.epochs=1", "train.batch_size=8"))
    accum = _trainer(tiny_config(tmp_path / "b", data_dir, "train.epochs=1", "train.batch_size=8",
                                 "train.accum_steps=2"))
    batches = len(plain.train_rows) // 8
    assert plain.steps_per_epoch == batches and accum.steps_per_epoch == batches // 2
    plain.fit()
    accum.fit()
    assert plain.updates == batches and accum.updates == batches // 2


def test_clip_grad_bounds_every_sgd_step(data_dir, tmp_path):
    """Plain SGD moves the weights by lr x the clipped gradient: at most lr x clip_grad per step."""
    sets = ["train.epochs=1", "train.optimizer=sgd", "train.momentum=0", "train.weight_decay=0",
            "train.scheduler=none", "train.max_steps_per_epoch=1", "backbones=[{name: test_resnet, lr: 0.5}]"]
    moved = {}
    for clip in (None, 1e-3):
        cfg = tiny_config(tmp_path / str(clip), data_dir, *sets, *([f"train.clip_grad={clip}"] if clip else []))
        t = _trainer(cfg)
        before = torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])
        t.train_epoch()
        after = torch.cat([p.detach().flatten() for p in t.model.parameters()])
        moved[clip] = float((after - before).norm())
    assert moved[1e-3] <= 0.5 * 1e-3 * 1.001
    assert moved[None] > 100 * moved[1e-3]  # unclipped, the same step is far larger


def test_mixing_stops_at_stop_epoch(data_dir, tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=3", "train.mix.kind=cutmix", "train.mix.prob=1.0",
                      "train.mix.stop_epoch=2")
    mixed = []
    real = trainer_module.mix_batch

    def counting(*a, **kw):
        mixed.append(t.epoch)
        return real(*a, **kw)

    monkeypatch.setattr(trainer_module, "mix_batch", counting)
    t = _trainer(cfg)
    t.fit()
    assert set(mixed) == {0, 1}  # the first two epochs mix every batch, the third none
    assert mixed.count(0) == t.steps_per_epoch and mixed.count(1) == t.steps_per_epoch


def test_hard_vote_end_to_end(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1", "ensemble.method=hard",
                      "backbones=[{name: test_resnet}, {name: test_efficientnet}, {name: test_vit, img_size: [32, 48]}]")
    assert (train_all(cfg, **QUIET)["status"] == "done").all()
    run_ensemble(cfg, **QUIET)
    run = Path(cfg.run_dir)
    sub = pd.read_csv(run / "submission.csv")
    # a hard vote of three members: every submitted class is one that a member predicted for that photo
    votes = np.stack([np.concatenate([np.load(pair_dir(run, b, k) / "test.npz")["logits"][None]
                                      for k in range(cfg.folds.n_splits)]).mean(0).argmax(1)
                      for b in cfg.backbone_names()])
    assert all(sub["ans"][i] in votes[:, i] for i in range(len(sub)))
    report = (run / "ensemble" / "report.md").read_text()
    assert "hard" in report


def test_crop_tta_views_are_averaged(data_dir, tmp_path):
    """tta [orig, crop90] gives other OOF logits than [orig]: the crop view is really predicted and averaged."""
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1", "tta=[orig,crop90]")
    train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    d = pair_dir(cfg.run_dir, "test_resnet", 0)
    both = np.load(d / "oof.npz")["logits"]
    t = _trainer(tiny_config(tmp_path, data_dir, "train.epochs=1", "tta=[orig]"))
    _, model = t._best_model()
    from pipeline.model.inference import predict_logits

    orig = predict_logits(model, t.val_loader(), t._inference(("orig",)))
    crop = predict_logits(model, t.val_loader(), t._inference(("crop90",)))
    assert not np.allclose(orig, crop, atol=1e-4)
    assert np.allclose(both, (orig + crop) / 2, atol=1e-4)  # the views' logits, averaged


def test_a_tta_only_change_repredicts_without_training(data_dir, tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1", "tta=[orig]")
    train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    d = pair_dir(cfg.run_dir, "test_resnet", 0)
    weights = (d / "best.pt").read_bytes()
    before = np.load(d / "oof.npz")["logits"]
    monkeypatch.setattr(Trainer, "train_epoch", lambda self: pytest.fail("a TTA change must not train"))
    cfg2 = tiny_config(tmp_path, data_dir, "train.epochs=1", "tta=[orig,hflip]")
    info = train_pair(cfg2, "test_resnet", 0, progress=False, **QUIET)
    assert info.status == "done"
    assert json.loads((d / "done.json").read_text())["tta"] == ["orig", "hflip"]
    assert (d / "best.pt").read_bytes() == weights
    assert not np.allclose(np.load(d / "oof.npz")["logits"], before)


def _hold_and_wait(path, ready):
    with file_lock(path):
        ready.set()
        signal.pause()


def test_a_lock_held_by_a_killed_process_is_taken_over(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1")
    lock = job_lock(pair_dir(cfg.run_dir, "test_resnet", 0))
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_and_wait, args=(lock, ready))
    child.start()
    assert ready.wait(30)
    busy = train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    assert busy.status == "busy" and str(child.pid) in busy.error
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    info = train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    assert info.status == "done"


def test_face_crops_reach_predict(data_dir, tmp_path):
    """With data.crop: face, predict crops every photo to its face box as the training cache did: the folder path
    reproduces the submission."""
    pytest.importorskip("dlib", reason="the `faces` extra is not installed")
    from ensemble.predict import predict_folder

    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1", "data.crop=face", "data.face_detector=hog")
    assert (train_all(cfg, **QUIET)["status"] == "done").all()
    run_ensemble(cfg, **QUIET)
    df = predict_folder(cfg.run_dir, data_dir / "eval" / "images", tmp_path / "p.csv", **QUIET)
    df["ImageID"] = [Path(p).name for p in df["path"]]
    sub = pd.read_csv(Path(cfg.run_dir) / "submission.csv").merge(df, on="ImageID")
    assert len(sub) == 12 and (sub["ans"] == sub["class"]).all()
    # and the crop mattered: the same photos without crops are predicted otherwise
    from pipeline.data.cache import decode
    from pipeline.faces.crop import crop_function

    photo = sorted((data_dir / "eval" / "images").iterdir())[0]
    crop_fn = crop_function(cfg.data, files=[photo], cache_dir=cfg.cache_dir, run_dir=cfg.run_dir, **QUIET)
    size = tuple(cfg.data.cache_size)
    assert not np.array_equal(decode(photo, size, crop_fn)[0], decode(photo, size, None)[0])
