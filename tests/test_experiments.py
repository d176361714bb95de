"""A project of many runs: one shared photo cache, provenance, a log per run, compare, learning curves."""
import json
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.layout import pair_dir
from pipeline.train.rundata import load_run_data
from tests.conftest import TINY, cli_args, make_config, tiny_config


def run_cli(command, tmp_path, data_dir, *sets, extra=()):
    res = CliRunner().invoke(main, cli_args(command, tmp_path, data_dir, *TINY, "train.epochs=1", *sets) + list(extra))
    assert res.exit_code == 0, res.output
    return res.output


def test_two_runs_share_one_photo_cache(data_dir, tmp_path):
    shared = f"cache_dir={tmp_path / 'shared'}"
    built = {}
    for run, extra in (("a", ()), ("b", ("train.lr=0.01",))):
        cfg = tiny_config(tmp_path / run, data_dir, shared, *extra)
        lines = []
        load_run_data(cfg, log=lines.append)
        built[run] = [m for m in lines if m.startswith("building photo cache")]
    assert len(built["a"]) == 2 and built["b"] == []  # train and eval caches once, then reused
    res = CliRunner().invoke(main, ["cache", "--dir", str(tmp_path / "shared")])
    assert res.exit_code == 0 and "2 cache(s)" in res.output and "210 photos at 48x64" in res.output
    res = CliRunner().invoke(main, ["cache", "--dir", str(tmp_path / "shared"), "--prune"])
    assert res.exit_code == 0 and "2 cache(s)" in res.output and "freed" in res.output
    assert not list((tmp_path / "shared").glob("*.u8"))


def test_runs_with_their_own_outside_faces_share_the_cache_too(data_dir, tmp_path):
    """Each run generates its outside faces into its own folder: the same photos by content, so one cache."""
    from external_data.run import run_external
    from folds.make import write_folds
    from tests.conftest import make_config

    built = {}
    for run in ("a", "b"):
        cfg = make_config(tmp_path / run, data_dir, *TINY, f"cache_dir={tmp_path / 'shared'}", "data.use_external=true",
                          "external.max_persons=3")
        run_external(cfg, n_jobs=1, log=lambda m: None)
        write_folds(cfg, log=lambda m: None)
        lines = []
        load_run_data(cfg, log=lines.append)
        built[run] = [m for m in lines if m.startswith("building photo cache")]
    assert len(built["a"]) == 2 and built["b"] == []


def test_run_json_log_and_curves(data_dir, tmp_path):
    run = tmp_path / "run"
    for command in ("folds", "train-all", "ensemble"):
        run_cli(command, tmp_path, data_dir)
    info = json.loads((run / "run.json").read_text())
    for key in ("started", "ended", "wall_seconds", "host", "device", "maskfold", "git_commit", "git_dirty",
                "python", "config_hash"):
        assert key in info, key
    assert info["wall_seconds"] > 0 and info["device"].startswith("cpu") and info["pairs"] == {"done": 2}
    assert {"torch", "timm", "albumentations"} <= {k for k, v in info["libraries"].items() if v}
    done = json.loads((pair_dir(run, "test_resnet", 0) / "done.json").read_text())
    assert done["provenance"]["maskfold"] == info["maskfold"]
    log = (run / "log.txt").read_text().splitlines()
    commands = [line.split("$ ", 1)[1] for line in log if "$ maskfold" in line]
    assert [c.split()[:2] for c in commands] == [["maskfold", "folds"], ["maskfold", "train-all"],
                                                 ["maskfold", "ensemble"]]
    assert "--set train.epochs=1" in commands[1]
    assert any("test_resnet fold 1 epoch 1/1" in line for line in log)  # what the job printed
    assert not any("\r" in line for line in log)
    assert (run / "ensemble" / "curves.png").stat().st_size > 10_000
    report = (run / "ensemble" / "report.md").read_text()
    assert "![learning curves](curves.png)" in report and "fold macro F1 mean" in report
    metrics = pd.read_csv(pair_dir(run, "test_resnet", 0) / "metrics.csv", dtype=str)
    assert all(len(v.replace(".", "").replace("-", "").lstrip("0")) <= 6 for v in metrics["val_loss"])


def test_compare_lists_exactly_the_keys_that_differ(data_dir, tmp_path):
    shared = f"cache_dir={tmp_path / 'shared'}"
    runs = {"a": (), "b": ("train.weight_decay=0.05",), "c": ("seed=7",)}
    for name, sets in runs.items():
        for command in ("folds", "train-all", "ensemble"):
            run_cli(command, tmp_path, data_dir, f"run_dir={tmp_path / name}", shared, *sets)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(main, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "compare.csv")
    assert list(table["differs in"]) == ["train.weight_decay=0.01", "train.weight_decay=0.05"]
    assert "keys that differ: train.weight_decay" in res.output and "different photos" not in res.output
    assert table["ensemble honest OOF"].between(0, 1).all() and table["eval F1"].between(0, 1).all()
    assert table["OOF test_resnet"].str.match(r"0\.\d{4} \(0\.\d{4} ± 0\.\d{4}\)").all()
    assert (out / "compare.png").stat().st_size > 5_000 and (out / "compare.md").is_file()
    # a run on other folds is marked, not mixed in silently
    res = CliRunner().invoke(main, ["compare", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(out)])
    assert res.exit_code == 0 and "different photos, labels or folds" in res.output
    assert list(pd.read_csv(out / "compare.csv")["photos+folds"]) == ["A", "B"]


def test_tensorboard_without_its_extra_stops_training_commands_only(data_dir, tmp_path, monkeypatch):
    """The extra is asked for by the commands that train (require_training_ready), not by every command that builds
    a model (ensemble, pseudo, predict write no TensorBoard logs)."""
    from pipeline.config import ConfigError
    from pipeline.preflight import check_config, require_training_ready

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    cfg = make_config(tmp_path, data_dir, *TINY, "train.tensorboard=true")
    check_config(cfg, "tiny.yaml")
    with pytest.raises(ConfigError, match=r"pip install 'maskfold\[tensorboard\]'"):
        require_training_ready(cfg, cfg.backbones)


def test_tensorboard_without_its_extra_fails_before_any_epoch(data_dir, tmp_path, monkeypatch):
    tiny_config(tmp_path, data_dir)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    res = CliRunner().invoke(main, cli_args("train-all", tmp_path, data_dir, *TINY, "train.tensorboard=true"))
    assert res.exit_code == 1 and "pip install 'maskfold[tensorboard]'" in res.output
    assert "epoch" not in res.output and not (pair_dir(tmp_path / "run", "test_resnet", 0) / "last.pt").exists()
