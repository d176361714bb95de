"""The catalogue, continued: config values, loader input, caches, label fixes, messages, predict, file modes and
questionable data that a hostile new user tried. One test per case, named after it.

Each case must end in a non-zero exit with one line naming the file or key and the fix (or a warning for data that
is only questionable), no traceback, and nothing lost or silently changed.
"""
import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from ensemble.run import run_ensemble
from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.io import atomic_write_text, file_lock
from pipeline.layout import pair_dir
from pipeline.train.jobs import train_all
from tests.catalogue_kit import assert_message, invoke, person, photo
from tests.conftest import ROOT, TINY, make_config, tiny_config

QUIET = dict(log=lambda m: None)


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA, whatever this one has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ---------------------------------------------------------------- 9: values that crash training


@pytest.mark.parametrize("setting, key", [
    ("train.epochs=0", "train.epochs"), ("train.epochs=-2", "train.epochs"), ("backbones.0.epochs=0", "backbones.0.epochs"),
    ("train.batch_size=0", "train.batch_size"), ("train.batch_size=-4", "train.batch_size"),
    ("backbones.0.batch_size=0", "backbones.0.batch_size"), ("train.accum_steps=0", "train.accum_steps"),
    ("train.num_workers=-1", "train.num_workers"), ("tta=[]", "tta"), ("train.device=gpu", "train.device"),
    ("train.device=cuda", "train.device"), ("train.device=cuda:1", "train.device")])
def test_22_09_config_values_that_crash_training_are_refused(data_dir, tmp_path, no_cuda, setting, key):
    for command in ("check-data", "train-all"):
        res = invoke(command, tmp_path, data_dir, *TINY, setting)
        assert_message(res, f"'{key}'")
    assert not (tmp_path / "run" / "models").exists()  # refused before any training


def test_22_09_device_options_without_cuda_are_refused_before_work(data_dir, tmp_path, no_cuda):
    res = invoke("train", tmp_path, data_dir, *TINY, extra=["--backbone", "test_resnet", "--fold", "0",
                                                             "--device", "cuda"])
    assert_message(res, "--device cuda", "no CUDA device")
    assert not (tmp_path / "run" / "models").exists()
    res = CliRunner().invoke(main, ["predict", "--run", str(tmp_path), "--images", str(data_dir), "--out",
                                    str(tmp_path / "p.csv"), "--device", "cuda"])
    assert_message(res, "--device cuda", "no CUDA device")
    res = CliRunner().invoke(main, ["predict", "--run", str(tmp_path), "--images", str(data_dir), "--out",
                                    str(tmp_path / "p.csv"), "--device", "gpu"])
    assert_message(res, "--device gpu", "auto, cpu, cuda or cuda:N")


# ---------------------------------------------------------------- 10: malformed config input


def test_22_10_malformed_config_input_is_one_line_naming_file_or_key(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match=r"binary\.yaml: not a text file"):
        load_config(binary)
    listed = tmp_path / "listed.yaml"
    listed.write_text(f"extends: [{ROOT / 'configs' / 'base.yaml'}]\n")
    with pytest.raises(ConfigError, match=r"listed\.yaml: 'extends' must name one config file"):
        load_config(listed)
    demo = ROOT / "configs" / "demo.yaml"
    with pytest.raises(ConfigError, match=r"--set train\.epochs\.x=5: 'train\.epochs' is a value, not a section"):
        load_config(demo, ["train.epochs.x=5"])
    with pytest.raises(ConfigError, match=r"--set seed\.x\.y=5: 'seed' is a value, not a section"):
        load_config(demo, ["seed.x.y=5"])
    with pytest.raises(ConfigError, match=r"--set tta\.0\.x=5: 'tta\.0' is a value, not a section"):
        load_config(demo, ["tta.0.x=5"])
    res = CliRunner().invoke(main, ["check-data", "--config", str(binary)])
    assert_message(res, "binary.yaml: not a text file")


# ---------------------------------------------------------------- 11: broken cache meta


def test_22_11_cache_with_a_broken_meta_is_reported_and_pruned(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, meta in [("a", "{}"), ("b", '{"shape": [2, 4'), ("c", "[1, 2]")]:
        (cache / f"{name}.u8").write_bytes(bytes(96))
        (cache / f"{name}.json").write_text(meta)
    res = CliRunner().invoke(main, ["cache", "--dir", str(cache)])
    assert_message(res, "a.u8  broken", "b.u8  broken", "c.u8  broken", "--prune removes it", code=0)
    res = CliRunner().invoke(main, ["cache", "--dir", str(cache), "--prune"])
    assert_message(res, "removed a.u8", "removed b.u8", "3 cache(s)", code=0)
    assert not list(cache.iterdir())


# ---------------------------------------------------------------- 12: nested figures fitted on nothing


def test_22_12_nested_splits_below_two_are_refused(tmp_path):
    for n in (1, 0):
        with pytest.raises(ConfigError, match=rf"'ensemble\.nested_splits' is {n}; use at least 2"):
            load_config(ROOT / "configs" / "demo.yaml", [f"ensemble.nested_splits={n}"])


# ---------------------------------------------------------------- 13: label fixes bypassing the checks


@pytest.mark.parametrize("row, words", [
    ("age,45,250", "age 250 is out of range"), ("age,45,abc", "age 'abc' is not a whole number"),
    ("age,abc,45", "age 'abc' is not a whole number"), ("swap,mask1,mask1", "swap names mask1 twice"),
    ("gender,male,male", "old and new are the same")])
def test_22_13_label_fixes_are_checked_like_train_csv(data_dir, tmp_path, row, words):
    folder, table = person(data_dir)
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(f"person_id,field,old,new,note\n{table.loc[0, 'path']},{row},test\n")
    res = invoke("check-data", tmp_path, data_dir, f"data.label_fixes={fixes}")
    assert_message(res, f"{fixes} line 2", words)
    assert "applied: 1" not in res.output


# ---------------------------------------------------------------- 15: misleading messages


@pytest.mark.parametrize("setting, words", [
    ("data.age_cuts=[30,30]", "'data.age_cuts' must be two increasing ages"),
    ("data.age_cuts=[-5,200]", "'data.age_cuts' must be two increasing ages between 1 and 119"),
    ("seed=-1", "'seed' is -1; use a whole number from 0 to 4294967295"),
    ("ensemble.stacking_c=0", "'ensemble.stacking_c' is 0.0; use a positive number"),
])
def test_22_15_config_messages_name_the_key(data_dir, tmp_path, setting, words):
    res = invoke("check-data", tmp_path, data_dir, setting)
    assert_message(res, words)
    assert "soften_near_cut" not in res.output


def test_22_15_label_fix_file_messages_name_the_file_and_line(data_dir, tmp_path):
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("")
    res = invoke("check-data", tmp_path, data_dir, f"data.label_fixes={fixes}")
    assert_message(res, f"{fixes}: empty file", "person_id,field,old,new,note")


def test_22_15_data_layout_messages_say_what_is_wrong(data_dir, tmp_path):
    csv = data_dir / "train" / "train.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0]] + [line + "," for line in lines[1:]]) + "\n")
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, f"{csv}: data rows have more fields than the header", "problems: 1")
    csv.write_text("\n".join(lines) + "\n")

    info = data_dir / "eval" / "info.csv"
    table = pd.read_csv(info, dtype=str)
    table.loc[2, "ImageID"] = ""
    table.to_csv(info, index=False)
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, f"{info} line 4: empty ImageID")

    folder, _ = person(data_dir)
    fifo = photo(folder, "mask3")
    fifo.unlink()
    os.mkfifo(fifo)
    second, _ = person(data_dir, 1)
    as_dir = photo(second, "mask1")
    as_dir.unlink()
    as_dir.mkdir()
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, f"{fifo}: photo is not a regular file", f"{as_dir}: a folder where photo mask1 belongs")
    assert "broken or looping link" not in res.output


def test_22_15_eval_file_and_train_csv_folder_are_named_as_such(data_dir, tmp_path):
    import shutil

    shutil.rmtree(data_dir / "eval")
    (data_dir / "eval").write_text("oops")
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, f"{data_dir / 'eval'}: a file where the eval folder belongs")
    csv = data_dir / "train" / "train.csv"
    csv.unlink()
    csv.mkdir()
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, f"{csv}: a folder where the file train.csv belongs")


def test_22_15_two_external_stages_at_once_the_second_is_refused(data_dir, tmp_path):
    from pipeline.layout import external_lock

    with file_lock(external_lock(tmp_path / "run")):
        res = invoke("external", tmp_path, data_dir)
    assert_message(res, "maskfold external", "is running on this run directory", "wait for it")
    assert not (tmp_path / "run" / "external" / "train").exists()


# ---------------------------------------------------------------- 16: predict with nothing readable


def test_22_16_predict_exits_non_zero_when_no_photo_was_read(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1")
    train_all(cfg, **QUIET)
    run_ensemble(cfg, **QUIET)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"not a jpeg")
    (junk / "b.png").write_bytes(b"")
    out = tmp_path / "preds.csv"
    res = CliRunner().invoke(main, ["predict", "--run", cfg.run_dir, "--images", str(junk), "--out", str(out)])
    assert_message(res, "none of the 2 photos", str(junk / "a.jpg"), "nothing written")
    assert not out.exists()


# ---------------------------------------------------------------- 17: file modes


def test_22_17_atomic_writes_respect_the_umask(data_dir, tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
        res = invoke("folds", tmp_path, data_dir, *TINY)
        assert_message(res, code=0)
        for f in ("folds.csv", "config.yaml"):
            assert stat.S_IMODE((tmp_path / "run" / f).stat().st_mode) == 0o644, f
        from pipeline.train.rundata import load_run_data

        load_run_data(make_config(tmp_path, data_dir, *TINY), **QUIET)
        caches = list((tmp_path / "run" / "cache").iterdir())
        assert caches and all(stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044 for f in caches if f.is_file())
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
        assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600
    finally:
        os.umask(old)


# ---------------------------------------------------------------- 18: questionable input


def test_22_18_questionable_data_is_warned_about(data_dir, tmp_path):
    stray = data_dir / "train" / "images" / "999999_female_Asian_40"
    stray.mkdir()
    table = pd.read_csv(data_dir / "train" / "train.csv", dtype=str)
    table["age"] = np.minimum(table["age"].astype(int), 59).astype(str)
    table.to_csv(data_dir / "train" / "train.csv", index=False)
    folder, _ = person(data_dir)
    tiny = photo(folder, "mask1")
    Image.new("RGB", (1, 1)).save(tiny, format="JPEG")
    wide = photo(folder, "mask2")
    Image.new("RGB", (800, 300)).save(wide, format="JPEG")
    res = invoke("check-data", tmp_path, data_dir)
    assert_message(res, "problems: 0", code=0)
    warnings = [line for line in res.output.splitlines() if line.startswith("warning:")]
    text = "\n".join(warnings)
    assert "1 person folder(s) not listed in" in text and "999999_female_Asian_40" in text, res.output
    assert "no photos of 6 class(es): wear/M/60+, wear/F/60+" in text, res.output
    assert f"{tiny}: 1x1 pixels" in text and f"{wide}: 800x300 pixels" in text, res.output


def test_22_18_empty_config_file_is_refused(tmp_path):
    for text in ("", "# only a comment\n", "{}\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        with pytest.raises(ConfigError, match=r"empty\.yaml: the config file is empty"):
            load_config(empty)


# ---------------------------------------------------------------- also from the same walk-through


def test_22_19_epoch_one_logs_the_lr_it_trained_with(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=2", "train.warmup_epochs=1", "train.warmup_lr=0")
    train_all(cfg, **QUIET)
    lrs = pd.read_csv(pair_dir(cfg.run_dir, "test_resnet", 0) / "metrics.csv")["lr"].tolist()
    assert 0 < lrs[0] < 0.003 and 0 < lrs[1] <= 0.003, lrs


def test_22_20_test_from_auto_follows_the_run(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1", "ensemble.test_from=auto", "train.refit=false")
    assert load_config(ROOT / "configs" / "base.yaml").ensemble.test_from == "auto"
    train_all(cfg, **QUIET)
    lines = []
    run_ensemble(cfg, log=lines.append)  # no refit in this run: the folds predict, nothing is refused
    assert any("eval set predicted by the fold models (ensemble.test_from: auto" in line for line in lines), lines
    assert json.loads((Path(cfg.run_dir) / "ensemble" / "weights.json").read_text())["test_from"] == "folds"
    cfg.train.refit = True
    train_all(cfg, **QUIET)
    lines = []
    run_ensemble(cfg, log=lines.append)  # with refits, both predict
    assert any("the fold models and the full-data refits" in line for line in lines), lines
    assert json.loads((Path(cfg.run_dir) / "ensemble" / "weights.json").read_text())["test_from"] == "both"


def test_22_21_extends_is_read_relative_to_the_file_that_names_it(tmp_path, monkeypatch):
    folder = tmp_path / "exps" / "deep"
    folder.mkdir(parents=True)
    (tmp_path / "exps" / "base.yaml").write_text("seed: 7\ndata_dir: mydata\n")
    (folder / "exp.yaml").write_text("extends: ../base.yaml\ntrain: {epochs: 3}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(folder / "exp.yaml")
    assert (cfg.seed, cfg.train.epochs, cfg.data_dir) == (7, 3, "mydata")  # data paths stay as written (cwd)
    cfg = load_config(ROOT / "configs" / "demo.yaml")  # the shipped configs work from any folder
    assert cfg.backbone_names() == ["resnet10t", "regnetx_002"]
    (folder / "bad.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: 'extends' names .*nowhere\.yaml, not found; .*relative to the "
                                          r"folder of the file that names it"):
        load_config(folder / "bad.yaml")
