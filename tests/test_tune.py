"""`maskfold tune`: tiny trials through the trainer, a pruned one, a killed study resumed, best.yaml trained."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.layout import pair_dir, trial_dir, tune_file
from tests.conftest import ROOT, TINY, base_sets

optuna = pytest.importorskip("optuna", reason="the `tune` extra is not installed")
from optuna.trial import TrialState  # noqa: E402

TUNE = """extends: {demo}
tune:
  trials: 4
  folds: [0]
  pruner: median
  startup_trials: 1
  warmup_epochs: 0
  metric: val_loss
  params:
    backbones.0.lr: [log, 1.0e-4, 1.0]
    train.mix.prob: [float, 0.0, 0.8]
"""


def command(name, config, tmp_path, data_dir, *sets):
    args = [name, "--config", str(config)]
    for s in (*base_sets(tmp_path, data_dir), *TINY, *sets):
        args += ["--set", s]
    return args


def state_of(study):
    return {t.number: (t.state, t.value) for t in study.get_trials()}


@pytest.mark.slow
def test_tune_prunes_resumes_and_writes_a_trainable_best(data_dir, tmp_path):
    config = tmp_path / "tune.yaml"
    config.write_text(TUNE.format(demo=ROOT / "configs" / "demo.yaml"))
    run = tmp_path / "run"
    res = CliRunner().invoke(main, command("folds", config, tmp_path, data_dir))
    assert res.exit_code == 0, res.output
    storage, name = f"sqlite:///{tune_file(run, 'study.db')}", "run"
    tune_file(run, "study.db").parent.mkdir(parents=True)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    # two trials that learn, then one whose lr blows the weights up: the median pruner must stop it
    queued = [{"backbones.0.lr": lr, "train.mix.prob": 0.0} for lr in (3e-3, 2e-3, 1.0)]
    for settings in queued:
        study.enqueue_trial(settings)

    # a tune process killed while it trains a trial
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *command("tune", config, tmp_path, data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        states = [s for s, _ in state_of(study).values()]
        if states.count(TrialState.COMPLETE) >= 1 and TrialState.RUNNING in states:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {n: sv for n, sv in state_of(study).items() if sv[0] in (TrialState.COMPLETE, TrialState.PRUNED)}
    killed = [n for n, (s, _) in state_of(study).items() if s == TrialState.RUNNING]
    assert before and len(killed) == 1

    res = CliRunner().invoke(main, command("tune", config, tmp_path, data_dir))
    assert res.exit_code == 0, res.output
    assert f"trial {killed[0]} was left running" in res.output
    after = state_of(study)
    assert all(after[n] == sv for n, sv in before.items())  # finished trials were not trained again
    assert after[killed[0]][0] == TrialState.FAIL
    counted = [n for n, (s, _) in after.items() if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4 and TrialState.RUNNING not in [s for s, _ in after.values()]
    assert [s for s, _ in after.values()].count(TrialState.PRUNED) >= 1, after

    table = pd.read_csv(tune_file(run, "trials.csv"))
    assert len(table) == len(after) and set(table["state"]) >= {"complete", "pruned", "fail"}
    assert table["retry_of"].dropna().astype(int).tolist() == killed  # the killed trial's settings, tried again
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == killed[0]]
    assert killed[0] >= len(queued) or retry.params == queued[killed[0]]  # all of them, drawn or not when killed
    assert tune_file(run, "history.png").stat().st_size > 0
    best = study.best_trial
    assert (pair_dir(trial_dir(run, best.number), "test_resnet", 0) / "done.json").is_file()

    # best.yaml is an ordinary experiment: it loads on its own, and folds + train-all train it
    cfg = load_config(tune_file(run, "best.yaml"))
    assert cfg.backbones[0].lr == pytest.approx(best.params["backbones.0.lr"])
    assert cfg.train.mix.prob == pytest.approx(best.params["train.mix.prob"]) and cfg.run_dir == f"{run}-best"
    for step in ("folds", "train-all"):
        res = CliRunner().invoke(main, [step, "--config", str(tune_file(run, "best.yaml"))])
        assert res.exit_code == 0, res.output
    assert (pair_dir(f"{run}-best", "test_resnet", 1) / "done.json").is_file()


def test_tune_keys_are_checked_before_any_trial(data_dir, tmp_path):
    config = tmp_path / "tune.yaml"
    for params, words in [("{data.cache_size: [int, 1, 2]}", "cannot be tuned"),
                          ("{train.lr: [log, 0, 1]}", "above 0"),
                          ("{train.lrr: [float, 0.1, 0.2]}", "unknown key 'train.lrr'"),
                          ("{train.lr: [uniform, 0.1, 0.2]}", "[log, low, high]"),
                          # a later choice is checked too, not only the first
                          ("{train.mix.kind: [choice, cutmix, vertcal]}",
                           "'tune.params.train.mix.kind' value 'vertcal'")]:
        config.write_text(f"extends: {ROOT / 'configs' / 'demo.yaml'}\ntune: {{params: {params}}}\n")
        res = CliRunner().invoke(main, command("tune", config, tmp_path, data_dir))
        assert res.exit_code == 1 and words in res.output and "Traceback" not in res.output, res.output
    with pytest.raises(ConfigError, match="tune.pruner"):
        load_config(config, [*base_sets(tmp_path, data_dir), "tune.pruner=hyperband"])


def test_the_shipped_tune_example_names_a_valid_space():
    from tune.space import read_space

    cfg = load_config(ROOT / "configs" / "demo-tune.yaml")
    space = read_space(cfg, ROOT / "configs" / "demo-tune.yaml", [])
    assert [p.key for p in space] == ["backbones.0.lr", "train.mix.prob"] and cfg.tune.backbones == ["resnet10t"]
