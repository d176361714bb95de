"""End-to-end training on CPU with a tiny model on a tiny generated set."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.layout import pair_dir, refit_dir
from pipeline.train.job import fold_job
from pipeline.train.jobs import train_all
from pipeline.train.pair import train_pair
from pipeline.train.plan import plan
from pipeline.train.rundata import load_run_data
from pipeline.train.trainer import Trainer
from tests.conftest import TINY, cli_args, tiny_config


def test_train_writes_every_artifact(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.mix.kind=cutmix", "train.mix.prob=1.0", "train.ema=0.9",
                      "train.sampler_power=0.5", "train.class_weight_power=0.5")
    info = train_pair(cfg, "test_resnet", 0, progress=False)
    d = pair_dir(cfg.run_dir, "test_resnet", 0)
    for name in ("best.pt", "last.pt", "metrics.csv", "oof.npz", "test.npz", "done.json"):
        assert (d / name).is_file(), name
    assert not list(d.glob(".*tmp")), "no temporary files left behind"
    metrics = pd.read_csv(d / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    for col in ("train_loss", "val_loss", "val_f1", "val_acc", "val_f1_mask", "val_f1_gender", "val_f1_age", "lr"):
        assert metrics[col].notna().all(), col
    folds = pd.read_csv(f"{cfg.run_dir}/folds.csv")
    oof = np.load(d / "oof.npz")
    val = folds[folds["fold"] == 0]
    assert sorted(oof["image_id"]) == sorted(val["image_id"]) and oof["logits"].shape == (len(val), 18)
    assert (oof["labels"] == val.set_index("image_id").loc[oof["image_id"], "label"].to_numpy()).all()
    test = np.load(d / "test.npz")
    info_csv = pd.read_csv(data_dir / "eval" / "info.csv")
    assert list(test["image_id"]) == list(info_csv["ImageID"]) and test["logits"].shape == (12, 18)
    best = torch.load(d / "best.pt", weights_only=True)
    assert best["backbone"]["name"] == "test_resnet" and len(best["mean"]) == 3
    assert info.status == "done" and json.loads((d / "done.json").read_text())["hash"] == cfg.pair_hash("test_resnet")
    assert (tmp_path / "run" / "cache").is_dir()


def test_resume_restores_the_same_state(data_dir, tmp_path):
    """One epoch, stop, resume for the second == two epochs straight, to the last bit."""
    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, data_dir, "train.mix.kind=vertical", "train.mix.prob=0.5",
                      "backbones=[{name: test_resnet, lr: 0.003, drop_rate: 0.2}]")
    data = load_run_data(cfg, log=lambda m: None)
    straight = Trainer(cfg, fold_job(cfg, "test_resnet", 1), data, progress=False, log=lambda m: None)
    straight.fit()
    # a second run dir: stop after one epoch, then resume in a fresh Trainer
    cfg2 = tiny_config(tmp_path / "b", data_dir, "train.mix.kind=vertical", "train.mix.prob=0.5",
                       "backbones=[{name: test_resnet, lr: 0.003, drop_rate: 0.2}]")
    data2 = load_run_data(cfg2, log=lambda m: None)
    first = Trainer(cfg2, fold_job(cfg2, "test_resnet", 1), data2, progress=False, log=lambda m: None)
    first.settings["epochs"] = 1  # the schedule was built for 2 epochs, as in the straight run
    first.fit()
    resumed = Trainer(cfg2, fold_job(cfg2, "test_resnet", 1), data2, progress=False, log=lambda m: None)
    assert resumed.prepare().last is not None and resumed.epoch == 1
    assert resumed.updates == first.updates and resumed.sched.state_dict() == first.sched.state_dict()
    for k, v in first.opt.state_dict()["state"].items():
        assert torch.equal(v["exp_avg"], resumed.opt.state_dict()["state"][k]["exp_avg"])
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history[-1]["val_f1"] == resumed.history[-1]["val_f1"]


def test_train_all_skips_finished_and_survives_a_failure(data_dir, tmp_path):
    # a ViT cannot take 40x48 photos (patches of 16): that pair fails in its first step, the others train
    cfg = tiny_config(tmp_path, data_dir, "backbones=[{name: test_resnet}, {name: test_vit}]", "train.epochs=1")
    table = train_all(cfg, jobs=1, log=lambda m: None)
    status = {(r.backbone, r.fold): r.status for r in table.itertuples()}
    assert status[("test_resnet", 0)] == status[("test_resnet", 1)] == "done"
    assert status[("test_vit", 0)] == status[("test_vit", 1)] == "failed"
    assert "should be divisible by patch size" in table.loc[table["backbone"] == "test_vit", "error"].iloc[0]
    stamp = (pair_dir(cfg.run_dir, "test_resnet", 0) / "best.pt").stat().st_mtime_ns
    again = train_all(cfg, jobs=1, log=lambda m: None)
    assert set(again.loc[again["backbone"] == "test_resnet", "status"]) == {"skipped"}
    assert (pair_dir(cfg.run_dir, "test_resnet", 0) / "best.pt").stat().st_mtime_ns == stamp
    # a changed setting changes the hash: the pair is trained again
    cfg.train.lr = cfg.train.lr * 2
    third = train_all(cfg, jobs=1, log=lambda m: None)
    assert set(third.loc[third["backbone"] == "test_resnet", "status"]) == {"done"}


def test_training_refuses_bad_data(data_dir, tmp_path):
    tiny_config(tmp_path, data_dir)
    person = next((data_dir / "train" / "images").iterdir())
    next(f for f in person.iterdir() if f.stem == "normal").unlink()
    args = cli_args("train", tmp_path, data_dir) + ["--backbone", "resnet10t", "--fold", "0"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and f"person {person.name} is missing photo(s) normal" in res.output


def test_sigkill_mid_epoch_then_rerun_finishes(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=4", "train.batch_size=4")
    cmd = [sys.executable, "-m", "pipeline.cli"] + cli_args(
        "train-all", tmp_path, data_dir, *TINY, "train.epochs=4", "train.batch_size=4",
        "backbones=[{name: test_resnet, lr: 0.003}]")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    last = pair_dir(cfg.run_dir, "test_resnet", 0) / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert last.exists(), proc.stdout.read().decode()[-2000:]
    time.sleep(0.4)  # inside the next epoch
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (pair_dir(cfg.run_dir, "test_resnet", 1) / "done.json").exists()
    # the pair the kill interrupted: its last.pt is whole whatever moment the kill came, and it has no done.json
    cut = [k for k in (0, 1) if (pair_dir(cfg.run_dir, "test_resnet", k) / "last.pt").exists()
           and not (pair_dir(cfg.run_dir, "test_resnet", k) / "done.json").exists()]
    assert cut, "the kill came after fold 0 had finished: nothing to resume"
    epoch = torch.load(pair_dir(cfg.run_dir, "test_resnet", cut[0]) / "last.pt", weights_only=True)["epoch"]
    assert epoch >= 1
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"resumed test_resnet fold {cut[0]} after epoch {epoch}" in res.stdout, res.stdout[-3000:]
    for k in (0, 1):
        d = pair_dir(cfg.run_dir, "test_resnet", k)
        assert json.loads((d / "done.json").read_text())["epochs_run"] == 4
        torch.load(d / "best.pt", weights_only=True)
        torch.load(d / "last.pt", weights_only=True)
        assert np.load(d / "oof.npz")["logits"].shape[1] == 18
        assert len(pd.read_csv(d / "metrics.csv")) == 4
        assert not list(d.glob(".*.tmp"))


def test_gpu_claims_are_exclusive_and_stale_locks_are_taken_over(tmp_path):
    from pipeline.train.worker import claim_gpu

    with claim_gpu(tmp_path, 2) as a, claim_gpu(tmp_path, 2) as b:
        assert {a, b} == {"cuda:0", "cuda:1"}
    (tmp_path / "gpu-locks" / "cuda0.lock").write_text("999999999")  # a killed job's lock
    with claim_gpu(tmp_path, 2) as c:
        assert c == "cuda:0"
    assert not list((tmp_path / "gpu-locks").iterdir())


def test_loader_workers_do_not_change_the_batches(data_dir, tmp_path):
    """Augmentations are seeded per (epoch, photo): 0 or 2 loader workers train to the same weights."""
    torch.set_num_threads(1)
    results = []
    for workers in (0, 2):
        cfg = tiny_config(tmp_path / f"w{workers}", data_dir, f"train.num_workers={workers}", "train.epochs=1",
                          "train.sampler_power=0.5")
        t = Trainer(cfg, fold_job(cfg, "test_resnet", 0), load_run_data(cfg, log=lambda m: None), progress=False,
                    log=lambda m: None)
        results.append((t.train_epoch()["train_loss"], t.model.state_dict()))
    (loss0, w0), (loss2, w2) = results
    assert loss0 == loss2 and all(torch.equal(w0[k], w2[k]) for k in w0)


def test_train_all_with_two_jobs_starts_a_refit_beside_another_backbone_s_fold_pair(data_dir, tmp_path,
                                                                                    monkeypatch):
    """A refit waits only for its own backbone's folds: with --jobs 2 it starts while a fold pair of the other
    backbone still trains (here the longer backbone's folds start first, so one backbone's folds end while the
    other's run, whichever it is)."""
    cfg = tiny_config(tmp_path, data_dir, "train.refit=true",
                      "backbones=[{name: test_resnet, lr: 0.003, epochs: 3}, {name: test_efficientnet, lr: 0.003, "
                      "epochs: 1}]")
    import pipeline.train.schedule as schedule

    plans = []
    monkeypatch.setattr(schedule, "plan", lambda c: plans.append(1) or plan(c))
    lines = []
    table = train_all(cfg, jobs=2, log=lines.append)
    assert set(table["status"]) == {"done"} and len(table) == 6, table
    assert len(plans) == 1  # planned once, a refit added as its folds finished
    beside = [m for m in lines if re.fullmatch(r"test_\w+ refit: started beside .*test_\w+ fold \d.*", m)]
    assert beside, "\n".join(lines)
    for b in ("test_resnet", "test_efficientnet"):
        assert (refit_dir(cfg.run_dir, b) / "done.json").is_file()
    # the same plan again: every job finished, nothing trains
    again = train_all(cfg, jobs=2, log=lambda m: None)
    assert set(again["status"]) == {"skipped"} and len(again) == 6
    # the workers were this run's own: joblib's pool (the photo cache's) still works in this process afterwards
    from joblib import Parallel, delayed

    assert Parallel(n_jobs=2)(delayed(abs)(i) for i in (-1, -2)) == [1, 2]
