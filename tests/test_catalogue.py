"""The catalogue of faults found by trying maskfold as a new user would: one test per case, named after it.

Each case must end in a non-zero exit (or a counted, named skip) with a message naming the file or key and the fix,
no traceback, and nothing lost or silently changed.
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ensemble.run import run_ensemble
from folds.make import write_folds
from pipeline.config import ConfigError, load_config
from pipeline.data.images import read_rgb
from pipeline.layout import pair_dir
from pipeline.preflight import check_config
from pipeline.train.job import fold_job
from pipeline.train.jobs import train_all
from pipeline.train.pair import train_pair
from pipeline.train.rundata import load_run_data
from pipeline.train.trainer import Trainer
from tests.catalogue_kit import assert_message, invoke, person, photo
from tests.conftest import ROOT, TINY, cli_args, make_config, tiny_config

QUIET = dict(log=lambda m: None)


# ---------------------------------------------------------------- wrong results and crashes


@pytest.mark.ray
def test_01_ray_and_local_agree_on_finished_pairs(data_dir, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")
    from pipeline.train.ray_jobs import RayOptions

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)  # the shipped configs name their paths relative to the working directory
    sets = [*TINY, "train.epochs=1", "data_dir=data", "run_dir=run", "train.tensorboard=false"]
    cfg = make_config(tmp_path, data_dir, *sets)
    write_folds(cfg, **QUIET)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        table = train_all(cfg, ray=RayOptions(cpus_per_job=1), **QUIET)
    finally:
        ray.shutdown()
    assert set(table["status"]) == {"done"}, table.to_string()
    run_ensemble(cfg, **QUIET)  # accepts every Ray-trained pair
    assert set(train_all(cfg, **QUIET)["status"]) == {"skipped"}
    assert len(list((tmp_path / "run" / "cache").glob("*.u8"))) == 2  # one train and one eval cache, not two each
    # the same run moved, reached through a link, with settings that do not change the weights: still finished
    shutil.move(tmp_path / "run", tmp_path / "moved")
    (tmp_path / "link").symlink_to(tmp_path / "moved")
    for where in ("moved", str(tmp_path / "link")):
        other = make_config(tmp_path, data_dir, *sets, f"run_dir={where}", f"data_dir={data_dir}",
                            "train.num_workers=1", "train.device=cpu")
        assert set(train_all(other, **QUIET)["status"]) == {"skipped"}, where


def test_02_killed_retraining_then_revert_trains_again_instead_of_crashing(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1")
    train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=cfg.train.lr * 2))
    # the changed config's retraining starts over and is killed before its first checkpoint
    job = fold_job(changed, "test_resnet", 0)
    Trainer(changed, job, load_run_data(changed, **QUIET), progress=False, **QUIET).prepare()
    info = train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)  # the setting reverted
    d = pair_dir(cfg.run_dir, "test_resnet", 0)
    assert info.status == "done" and (d / "best.pt").is_file() and (d / "oof.npz").is_file()
    # a pair whose best.pt is gone is retrained, never resumed as finished
    (d / "best.pt").unlink()
    (d / "done.json").unlink()
    info = train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    assert info.status == "done" and (d / "best.pt").is_file()
    assert list(pd.read_csv(d / "metrics.csv")["epoch"]) == [1]


def test_03_two_train_all_on_one_run_dir_train_each_pair_once(data_dir, tmp_path):
    tiny_config(tmp_path, data_dir, "train.epochs=2")
    cmd = [sys.executable, "-m", "pipeline.cli"] + cli_args("train-all", tmp_path, data_dir, *TINY, "train.epochs=2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    both = "\n".join(outs)
    for k in (0, 1):
        assert both.count(f"test_resnet fold {k} epoch 1/2") == 1, both[-3000:]
    assert not list(Path(tmp_path / "run" / "models").rglob(".*.tmp"))


def test_04_deleted_oof_is_predicted_again_and_refusals_name_the_stage(data_dir, tmp_path):
    sets = [*TINY, "train.epochs=1"]
    tiny_config(tmp_path, data_dir, "train.epochs=1")
    assert_message(invoke("train-all", tmp_path, data_dir, *sets), code=0)
    d = pair_dir(tmp_path / "run", "test_resnet", 1)
    stamp = (d / "best.pt").stat().st_mtime_ns
    (d / "oof.npz").unlink()
    res = invoke("ensemble", tmp_path, data_dir, *sets)
    assert_message(res, "test_resnet fold 1", "oof.npz", "run `maskfold train-all`")
    assert "check-data" not in res.output
    res = invoke("train-all", tmp_path, data_dir, *sets)
    assert_message(res, "OOF predictions", "2 folds", code=0)
    assert (d / "oof.npz").is_file() and (d / "best.pt").stat().st_mtime_ns == stamp  # re-predicted, not retrained
    assert_message(invoke("ensemble", tmp_path, data_dir, *sets), "submission", code=0)
    # without last.pt (deleted to save space) too, and when the eval set changes
    (d / "last.pt").unlink()
    (d / "oof.npz").unlink()
    info = pd.read_csv(data_dir / "eval" / "info.csv")
    (data_dir / "eval" / "images" / info.loc[0, "ImageID"]).unlink()
    info.iloc[1:].to_csv(data_dir / "eval" / "info.csv", index=False)
    assert_message(invoke("ensemble", tmp_path, data_dir, *sets), "another eval set", "run `maskfold train-all`")
    res = invoke("train-all", tmp_path, data_dir, *sets)
    assert_message(res, "trained before; predicting again from best.pt", code=0)
    assert "epoch 1/1" not in res.output and (d / "best.pt").stat().st_mtime_ns == stamp
    assert len(np.load(d / "test.npz")["image_id"]) == len(info) - 1
    assert_message(invoke("ensemble", tmp_path, data_dir, *sets), "submission", code=0)


# ---------------------------------------------------------------- bad input accepted silently


def test_05_train_csv_path_outside_train_images_is_refused(data_dir, tmp_path):
    folder, table = person(data_dir)
    outside = tmp_path / "outside"
    shutil.copytree(folder, outside)
    table.loc[0, "path"] = "../../../outside"
    table.loc[1, "path"] = str(outside)
    table.to_csv(data_dir / "train" / "train.csv", index=False)
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, "train.csv line 2", "train.csv line 3", "must be a person folder name under train/images/")


@pytest.mark.parametrize("content", ["", "id,gender,race,age,path\n"], ids=["empty", "header-only"])
def test_06_empty_or_header_only_train_csv_is_refused(data_dir, tmp_path, content):
    (data_dir / "train" / "train.csv").write_text(content)
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, str(data_dir / "train" / "train.csv"), "id,gender,race,age,path" if not content else "no rows")


def test_07_sixteen_bit_grey_png_is_scaled_not_white(data_dir, tmp_path):
    folder, _ = person(data_dir)
    old = photo(folder, "mask1")
    old.unlink()
    grey = np.full((512, 384), 32768, np.uint16)  # mid-grey in 16 bits
    Image.fromarray(grey).save(folder / "mask1.png")
    arr = read_rgb(folder / "mask1.png", (48, 64))
    assert arr.shape == (64, 48, 3) and abs(arr.mean() - 128) < 1
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, "grayscale 16-bit 1", code=0)


def test_08_label_fix_by_a_shared_id_is_refused(data_dir, tmp_path):
    _, table = person(data_dir)
    table.loc[[0, 1], "id"] = "777777"
    table.loc[[0, 1], "gender"] = "male"
    table.to_csv(data_dir / "train" / "train.csv", index=False)
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("person_id,field,old,new,note\n777777,gender,male,female,test\n")
    res = invoke("check-data", tmp_path, data_dir, f"data.label_fixes={fixes}")
    assert_message(res, f"{fixes} line 2", "belongs to 2 persons", table.loc[0, "path"], "name the person folder")
    # keyed by the person's folder, the fix reaches exactly that person
    fixes.write_text(f"person_id,field,old,new,note\n{table.loc[0, 'path']},gender,male,female,test\n")
    res = invoke("check-data", tmp_path, data_dir, f"data.label_fixes={fixes}")
    assert_message(res, "label fixes applied: 1", f"{table.loc[0, 'path']}: gender male -> female", code=0)


def test_09_cache_temporary_of_a_killed_build_is_removed(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir)
    cache = Path(cfg.cache_dir)
    cache.mkdir(parents=True)
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sys\nfrom pipeline.io import atomic_path\n"
        f"with atomic_path({str(cache / 'abc.u8')!r}) as tmp:\n"
        "    tmp.write_bytes(bytes(1 << 20))\n    os.kill(os.getpid(), 9)\n")])
    assert killed.returncode == -9
    left = list(cache.glob(".*.tmp"))
    assert len(left) == 1 and left[0].stat().st_size == 1 << 20
    load_run_data(cfg, **QUIET)  # the next run building a cache cleans up
    assert not list(cache.glob(".*.tmp")) and len(list(cache.glob("*.u8"))) == 2


def test_10_folds_says_photos_are_decoded_by_check_data(data_dir, tmp_path):
    folder, _ = person(data_dir)
    photo(folder, "mask2").write_bytes(b"not a jpeg at all")
    res = invoke("folds", tmp_path, data_dir)
    assert_message(res, "not decoded", "`maskfold check-data` decodes every one", code=0)
    assert_message(invoke("check-data", tmp_path, data_dir), "mask2")


# ---------------------------------------------------------------- tracebacks instead of messages


@pytest.mark.parametrize("command", ["check-data", "folds", "train-all", "ensemble"])
def test_11_unknown_backbone_is_refused_at_config_load(data_dir, tmp_path, command):
    res = invoke(command, tmp_path, data_dir, "backbones=[{name: resnet10}]")
    assert_message(res, "'backbones.0.name' 'resnet10' is not a timm model", "did you mean resnet10t")
    res = invoke(command, tmp_path, data_dir, "backbones=[{name: resnet18.no_such_tag}]")
    assert_message(res, "'backbones.0.name' 'resnet18.no_such_tag' is not a timm model")


def test_12_looping_link_and_unreadable_folder_are_data_problems(data_dir, tmp_path, monkeypatch):
    tiny_config(tmp_path, data_dir)
    folder, _ = person(data_dir)
    loop = photo(folder, "mask3")
    loop.unlink()
    loop.symlink_to(loop.name)  # points at itself
    for command in ("check-data", "train-all"):
        res = invoke(command, tmp_path, data_dir, *TINY)
        assert_message(res, str(loop))
    loop.unlink()
    shutil.copy(photo(folder, "mask1"), loop)
    locked, _ = person(data_dir, 1)
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)  # root reads every folder, so the refusal is simulated
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, str(locked), "cannot be read (Permission denied)", "fix its permissions")


@pytest.mark.parametrize("step", ["{name: suppress}", "{name: BboxParams}", "{name: Lambda, image: print}",
                                  "{name: __class__}"])
def test_13_augment_names_only_albumentations_transforms(tmp_path, step):
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"augment.train=[{step}]"])
    with pytest.raises(ConfigError, match=r"augment\.train\.0: .* is not an albumentations transform"):
        check_config(cfg, "demo.yaml")


def test_14_numbers_are_read_as_a_user_writes_them(tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["backbones.0.lr=1e-4", "train.weight_decay=5E-2"])
    assert cfg.backbones[0].lr == 1e-4 and cfg.train.weight_decay == 0.05
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"extends: {ROOT / 'configs' / 'base.yaml'}\ntrain: {{lr: 3e-4, epochs: 2}}\n")
    assert load_config(exp).train.lr == 3e-4
    res = json.dumps(dataclasses.asdict(load_config(exp)))  # and they stay numbers in the saved config
    assert '"lr": 0.0003' in res
