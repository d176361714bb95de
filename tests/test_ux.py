"""What a user sees: output that suits a log file, make targets that pass values whole, messages that help."""
import os
import re
import subprocess
import sys

import pytest

from pipeline.config import ConfigError, load_config
from tests.conftest import ROOT, TINY, cli_args, tiny_config


def test_train_all_into_a_file_has_no_bar_frames_and_a_line_per_epoch(data_dir, tmp_path):
    tiny_config(tmp_path, data_dir)
    log = tmp_path / "out.log"
    cmd = [sys.executable, "-m", "pipeline.cli"] + cli_args("train-all", tmp_path, data_dir, *TINY) + ["--jobs", "1"]
    env = {k: v for k, v in os.environ.items() if k != "MASKFOLD_BARS"}
    with open(log, "w") as f:
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=300)
    text = log.read_text()
    assert res.returncode == 0, text[-3000:]
    assert "\r" not in text
    for k in (0, 1):
        for e in (1, 2):
            assert text.count(f"test_resnet fold {k} epoch {e}/2:") == 1, text
    assert "job 2 of 2" in text and "val F1 (best epoch, no TTA)" in text and "with TTA orig+hflip" in text
    epoch_line = next(line for line in text.splitlines() if "fold 0 epoch 1/2:" in line)
    assert all(w in epoch_line for w in ("train loss", "val loss", "val F1", "lr ", "new best"))


def test_parallel_jobs_lines_reach_the_output_and_the_log_once(data_dir, tmp_path):
    tiny_config(tmp_path, data_dir)
    out = tmp_path / "out.log"
    cmd = [sys.executable, "-m", "pipeline.cli"] + cli_args("train-all", tmp_path, data_dir, *TINY) + ["--jobs", "2"]
    with open(out, "w") as f:
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    printed, logged = out.read_text(), (tmp_path / "run" / "log.txt").read_text()
    assert res.returncode == 0, printed[-3000:]
    for k in (0, 1):
        for e in (1, 2):
            line = f"test_resnet fold {k} epoch {e}/2:"
            assert printed.count(line) == 1 and logged.count(line) == 1, (line, printed)
    assert not list((tmp_path / "run").glob(".job-lines*"))


def test_make_passes_a_set_value_with_spaces_as_one_set(tmp_path):
    out = subprocess.run(["make", "-n", "train-all", "SET=backbones=[{name: resnet10t}] train.epochs=3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if "maskfold train-all" in x)
    assert line.count("--set") == 2 and "--set 'backbones=[{name: resnet10t}]' --set train.epochs=3" in line


def test_make_clean_keeps_the_runs():
    out = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "rm -rf runs" not in out.stdout
    out = subprocess.run(["make", "-n", "clean-runs"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "rm -rf runs" in out.stdout


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.epoch'; did you mean 'epochs'\?"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.epoch=3"])


def test_a_missing_relative_path_says_where_it_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"configs/demo\.yaml: config file not found \(relative paths are read "
                                          r"from the working directory, "):
        load_config("configs/demo.yaml")


def test_pretrained_weights_that_cannot_be_had_are_named_with_the_offline_recipe(monkeypatch):
    from pipeline.config import BackboneConfig
    from pipeline.model.weights import require_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hub-cache")
    with pytest.raises(ConfigError, match=r"backbone resnet10t: timm/resnet10t\S* is not in the hub cache .* "
                                          r"set `weights: /path/to/file`"):
        require_weights([BackboneConfig(name="resnet10t", pretrained=True), BackboneConfig(name="test_resnet")],
                        log=lambda m: None)


def test_a_local_weights_file_that_cannot_serve_is_refused_before_any_work(tmp_path):
    """Junk, an empty file, a folder or another model's weights: one line naming the file and the fix, from the
    preflight of the training commands, not a traceback in every pair."""
    import timm
    import torch

    from pipeline.config import BackboneConfig
    from pipeline.model.weights import require_weights

    files = {"junk": tmp_path / "junk.pth", "empty": tmp_path / "empty.pth", "folder": tmp_path / "weights",
             "other": tmp_path / "resnet10t.pth", "own": tmp_path / "test_resnet.pth"}
    files["junk"].write_bytes(bytes(range(256)) * 20)
    files["empty"].write_bytes(b"")
    files["folder"].mkdir()
    torch.save(timm.create_model("resnet10t").state_dict(), files["other"])
    torch.save(timm.create_model("test_resnet").state_dict(), files["own"])
    expected = {"junk": "cannot be read as weights", "empty": "cannot be read as weights (EOFError",
                "folder": "is a folder; name the weights file in it", "other": "does not fit the model"}
    for name, why in expected.items():
        with pytest.raises(ConfigError, match=rf"^backbone test_resnet: weights file {files[name]} {re.escape(why)}"):
            require_weights([BackboneConfig(name="test_resnet", weights=str(files[name]))], log=lambda m: None)
    said = []
    require_weights([BackboneConfig(name="test_resnet", weights=str(files["own"]))], log=said.append)
    assert said == [f"weights of test_resnet: local file {files['own']}"]


def test_the_run_log_keeps_lines_not_bar_frames(tmp_path):
    import io

    from pipeline.io import _Tee

    log = io.StringIO()
    tee = _Tee(io.StringIO(), log)
    tee.write("outer:  10%|#\r")
    for i in range(50):
        tee.write(f"\ninner: {i}%|##\x1b[A")  # stacked bars: a newline, then back up a line
    tee.write("\rdone with the step\n")
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("done with the step") and len(tee.partial) < 100


def test_pretrained_true_for_a_model_without_weights_is_refused(monkeypatch):
    from pipeline.config import BackboneConfig
    from pipeline.model.weights import weights_source

    ok, why = weights_source(BackboneConfig(name="botnet50ts_256", pretrained=True))
    assert not ok and "timm has no pretrained weights for botnet50ts_256" in why

