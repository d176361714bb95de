"""The ensemble over several finished runs: members from each, greedy selection, stacking, honest choice."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ensemble import blend
from ensemble.predict import predict_folder
from ensemble.run import run_ensemble
from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.train.jobs import train_all
from tests.conftest import cli_args, make_config, tiny_config


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, demo_source):
    """Two finished runs on the same data and folds, with different backbones."""
    import shutil

    tmp = tmp_path_factory.mktemp("runs")
    data = tmp / "data"
    shutil.copytree(demo_source, data)
    runs = {}
    for name, backbone in (("a", "test_resnet"), ("b", "test_efficientnet")):
        cfg = tiny_config(tmp / name, data, "train.epochs=1", f"backbones=[{{name: {backbone}, lr: 0.003}}]",
                          f"cache_dir={tmp / 'cache'}")
        assert set(train_all(cfg, log=lambda m: None)["status"]) == {"done"}
        runs[name] = cfg.run_dir
    return tmp, data, runs


def blend_config(tmp, data, runs, *sets):
    return make_config(tmp / "blend", data, f"ensemble.runs=[{runs['a']}, {runs['b']}]", *sets)


def test_greedy_selection_prefers_the_better_member():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 18, 600)
    good = np.eye(18)[y] * 0.1 + rng.dirichlet(np.ones(18), 600) * 0.9  # right more often than not
    bad = rng.dirichlet(np.ones(18), 600)
    w = blend.greedy_selection([bad, good], y, steps=10)
    assert w.sum() == pytest.approx(1) and w[1] > w[0]
    stacker = blend.fit_stacker([good, bad], y)
    p = blend.apply_stacker(stacker, [good, bad])
    assert p.shape == (600, 18) and np.allclose(p.sum(1), 1)
    assert blend.fast_macro_f1(y, p.argmax(1)) > blend.fast_macro_f1(y, bad.argmax(1))


def test_two_runs_blended_into_a_third(two_runs):
    tmp, data, runs = two_runs
    cfg = blend_config(tmp, data, runs)
    res = CliRunner().invoke(main, cli_args("ensemble", tmp / "blend", data) + ["--run", runs["a"], "--run", runs["b"]])
    assert res.exit_code == 0, res.output
    out = Path(cfg.run_dir)
    sub = pd.read_csv(out / "submission.csv")
    assert list(sub["ImageID"]) == list(pd.read_csv(data / "eval/info.csv")["ImageID"])
    saved = json.loads((out / "ensemble" / "weights.json").read_text())
    assert [m["name"] for m in saved["members"]] == ["a/run/test_resnet", "b/run/test_efficientnet"]
    assert saved["chosen"] == max(saved["honest_f1"], key=saved["honest_f1"].get)
    report = (out / "ensemble" / "report.md").read_text()
    assert "Which members add something" in report and "| a/run/test_resnet |" in report
    for label in ("selection", "stacking", "stacking + offsets"):
        assert f"ensemble + {label} (in-sample)" in report and f"ensemble + {label} (nested" in report
    # compare shows the blend beside its runs, with its members' scores and the same photos+folds
    from ensemble.compare import compare_runs

    table = compare_runs([runs["a"], runs["b"], cfg.run_dir], tmp / "cmp", log=lambda m: None)
    blend_row = table.iloc[2]
    assert blend_row["OOF a/run/test_resnet"] == table.iloc[0]["OOF test_resnet"]
    assert set(table["photos+folds"]) == {"A"}


@pytest.mark.parametrize("kind", ["selection", "stacking"])
def test_selection_and_stacking_each_give_a_valid_submission_that_predict_reproduces(two_runs, kind):
    tmp, data, runs = two_runs
    only = {"search_weights": "false", "selection": "false", "stacking": "false", "task_weights": "false", kind: "true"}
    cfg = blend_config(tmp / kind, data, runs, "ensemble.tune_offsets=false", "ensemble.choose_by_nested=false",
                       *(f"ensemble.{k}={v}" for k, v in only.items()))
    result = run_ensemble(cfg, log=lambda m: None)
    assert result["weights"].chosen == kind
    sub = pd.read_csv(Path(cfg.run_dir) / "submission.csv")
    assert sub["ans"].between(0, 17).all() and len(sub) == 12
    df = predict_folder(cfg.run_dir, data / "eval" / "images", tmp / f"{kind}.csv", log=lambda m: None)
    df["ImageID"] = [Path(p).name for p in df["path"]]
    merged = sub.merge(df, on="ImageID")
    assert len(merged) == 12 and (merged["ans"] == merged["class"]).all()


def test_a_run_with_other_folds_is_refused_by_name(two_runs):
    tmp, data, runs = two_runs
    other = tiny_config(tmp / "c", data, "train.epochs=1", "seed=7", f"cache_dir={tmp / 'cache'}")
    train_all(other, log=lambda m: None)
    cfg = make_config(tmp / "blend-c", data, f"ensemble.runs=[{runs['a']}, {other.run_dir}]")
    with pytest.raises(DataError, match=rf"{other.run_dir}: its folds.csv holds other photos, labels or persons"):
        run_ensemble(cfg, log=lambda m: None)


def test_predict_uses_the_run_it_is_given(two_runs, tmp_path):
    """A run's own models are found beside its weights.json: a copy predicts with its own files, from anywhere."""
    import shutil

    tmp, data, runs = two_runs
    from ensemble.members import run_config

    run_ensemble(run_config(runs["a"]), log=lambda m: None)
    saved = json.loads((Path(runs["a"]) / "ensemble" / "weights.json").read_text())
    assert [m["run"] for m in saved["members"]] == ["."]
    copy = tmp_path / "copy"
    shutil.copytree(runs["a"], copy)
    shutil.rmtree(Path(runs["a"]) / "models")  # the original is gone: only the copy's models can be used
    try:
        df = predict_folder(copy, data / "eval" / "images", tmp_path / "p.csv", log=lambda m: None)
        assert len(df) == 12
    finally:
        shutil.copytree(copy / "models", Path(runs["a"]) / "models")

