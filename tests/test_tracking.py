"""Tracking to MLflow and W&B: a tiny run logged, then read back through each tool's own reader."""
import glob
import json
import struct
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import ConfigError
from pipeline.layout import pair_dir, tracking_json
from tests.conftest import TINY, cli_args, make_config

BACKBONE = "test_resnet"


def run_tiny(tmp_path, data_dir, *sets):
    """folds, train-all and ensemble of a tiny config through the command line; their output."""
    out = []
    for command in ("folds", "train-all", "ensemble"):
        res = CliRunner().invoke(main, cli_args(command, tmp_path, data_dir, *TINY, *sets))
        assert res.exit_code == 0, res.output
        out.append(res.output)
    return "\n".join(out)


def test_mlflow_run_reads_back(data_dir, tmp_path):
    pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    output = run_tiny(tmp_path, data_dir, "tracking.kind=mlflow", f"tracking.uri={store}", "tracking.project=tiny")
    assert "warning" not in output
    record = json.loads(tracking_json(tmp_path / "run").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    parent = client.get_run(record["run"])
    assert parent.data.params["train.epochs"] == "2" and parent.data.params["folds.n_splits"] == "2"
    figures = parent.data.metrics
    assert 0 <= figures[f"oof_f1/{BACKBONE}"] <= 1 and 0 <= figures["honest_f1"] <= 1  # OOF and ensemble figures
    assert any(k.startswith("f1/") and "nested" in k for k in figures) and "honest_f1/weights" in figures
    assert 0 <= figures["eval_f1"] <= 1  # the generated set ships its truth
    shown = {a.path for a in client.list_artifacts(record["run"], "ensemble")}
    assert "ensemble/report.md" in shown and any(p.endswith(".png") for p in shown)
    report = client.download_artifacts(record["run"], "ensemble/report.md", str(tmp_path))
    assert Path(report).read_text() == (tmp_path / "run" / "ensemble" / "report.md").read_text()

    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{record['run']}'")
    assert sorted(r.data.tags["maskfold.pair"] for r in children) == ["fold0", "fold1"]
    for child in children:
        fold = int(child.data.tags["maskfold.pair"][4:])
        metrics = pd.read_csv(pair_dir(tmp_path / "run", BACKBONE, fold) / "metrics.csv")
        history = client.get_metric_history(child.info.run_id, "val_f1")  # every epoch, as metrics.csv has it
        assert [(h.step, round(h.value, 4)) for h in history] == list(zip(metrics["epoch"], metrics["val_f1"].round(4)))
        done = json.loads((pair_dir(tmp_path / "run", BACKBONE, fold) / "done.json").read_text())
        assert child.data.tags["maskfold.hash"] == done["hash"] == child.data.tags["hash"]
        assert child.data.tags["provenance.git_commit"] == str(done["provenance"]["git_commit"])
        assert child.data.params["backbones.0.name"] == BACKBONE and child.info.status == "FINISHED"
        assert child.data.metrics["oof_f1_tta"] == pytest.approx(done["oof_f1_tta"])

    # a rerun finds every pair finished and logs to the same runs; no new children
    run_tiny(tmp_path, data_dir, "tracking.kind=mlflow", f"tracking.uri={store}", "tracking.project=tiny")
    assert json.loads(tracking_json(tmp_path / "run").read_text())["children"] == record["children"]


def wandb_records(path):
    """The records of a W&B run file (a LevelDB-style log of protobuf records after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    raw, pos, block, part = Path(path).read_bytes(), 7, 32768, b""
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        part, pos = part + raw[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            part = b""
            yield record


def read_offline_run(folder):
    """(run name, job type, config, history rows, summary) of an offline W&B run folder."""
    (path,) = glob.glob(str(folder / "run-*.wandb"))
    run, config, history, summary = None, {}, [], {}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = r.run
            config.update({u.key: json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "history":
            history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in r.summary.update})
    return run.display_name, run.job_type, config, history, summary


def test_wandb_offline_run_reads_back(data_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the `wandb` extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    output = run_tiny(tmp_path, data_dir, "tracking.kind=wandb")
    assert "warning" not in output
    runs = {}
    for folder in sorted((tmp_path / "wb" / "wandb").glob("offline-run-*")):
        name, job, config, history, summary = read_offline_run(folder)
        runs.setdefault(name, []).append((job, config, history, summary, folder))
    for fold in (0, 1):
        ((job, config, history, summary, _),) = runs[f"{BACKBONE} fold{fold}"]
        metrics = pd.read_csv(pair_dir(tmp_path / "run", BACKBONE, fold) / "metrics.csv")
        assert job == "pair" and config["train.epochs"] == 2 and config["backbones.0.name"] == BACKBONE
        assert [(h["epoch"], round(h["val_f1"], 4)) for h in history] == list(
            zip(metrics["epoch"], metrics["val_f1"].round(4)))
        done = json.loads((pair_dir(tmp_path / "run", BACKBONE, fold) / "done.json").read_text())
        assert summary["oof_f1_tta"] == pytest.approx(done["oof_f1_tta"]) and config["tags"]["hash"] == done["hash"]
    # the run itself: made by train-all, then taken up again for the OOF figures and for the ensemble's
    own = runs["run"]
    assert {job for job, *_ in own} == {"run"}
    summary = {k: v for *_, s, _ in own for k, v in s.items()}
    assert 0 <= summary[f"oof_f1/{BACKBONE}"] <= 1 and 0 <= summary["honest_f1"] <= 1
    assert any((folder / "files" / "ensemble" / "report.md").is_file() for *_, folder in own)


def test_store_that_fails_before_the_run_is_refused_by_the_preflight(data_dir, tmp_path):
    pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be\n")
    res = CliRunner().invoke(main, cli_args("train-all", tmp_path, data_dir, *TINY, "tracking.kind=mlflow",
                                            f"tracking.uri={blocker}"))
    assert res.exit_code == 1 and f"MLflow cannot open {blocker}" in res.output, res.output
    assert not (tmp_path / "run" / "models").exists()


def test_store_that_fails_in_the_middle_of_a_run_is_one_warning_and_training_goes_on(data_dir, tmp_path,
                                                                                      monkeypatch):
    pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")
    from pipeline.tracking.mlflow_store import MlflowStore

    def gone(*a, **kw):  # the store opened in the preflight, then went away
        raise ConnectionError("the tracking server went away")

    for method in ("history", "summary"):
        monkeypatch.setattr(MlflowStore, method, gone)
    output = run_tiny(tmp_path, data_dir, "tracking.kind=mlflow", f"tracking.uri={tmp_path / 'mlruns'}")
    warnings = [line for line in output.splitlines() if line.startswith("warning: mlflow tracking failed")]
    assert len(warnings) == 2 and "went away" in warnings[0], output  # once by train-all (every pair), once by ensemble
    assert (tmp_path / "run" / "submission.csv").is_file()


def test_missing_extra_fails_at_preflight_with_the_pip_line(data_dir, tmp_path, monkeypatch):
    import importlib.util

    from pipeline.preflight import check_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = make_config(tmp_path, data_dir, "tracking.kind=wandb")
    with pytest.raises(ConfigError, match=r"pip install 'maskfold\[wandb\]'"):
        check_config(cfg, "demo.yaml")


def test_tracking_settings_stay_out_of_the_pair_hash(data_dir, tmp_path):
    plain = make_config(tmp_path, data_dir)
    tracked = make_config(tmp_path, data_dir, "tracking.kind=none", "tracking.project=other", "tracking.uri=x",
                          "tune.trials=3")
    assert plain.pair_hash(plain.backbone_names()[0]) == tracked.pair_hash(tracked.backbone_names()[0])


@pytest.mark.ray
def test_ray_workers_log_their_pairs(data_dir, tmp_path):
    ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")
    pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")
    from mlflow.tracking import MlflowClient

    from folds.make import write_folds
    from pipeline.train.jobs import train_all
    from pipeline.train.ray_jobs import RayOptions

    store = tmp_path / "mlruns"
    cfg = make_config(tmp_path, data_dir, *TINY, "train.epochs=1", "tracking.kind=mlflow", f"tracking.uri={store}")
    write_folds(cfg, log=lambda m: None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        table = train_all(cfg, ray=RayOptions(cpus_per_job=1), log=lambda m: None)
    finally:
        ray.shutdown()
    assert set(table["status"]) == {"done"}, table.to_string()
    record = json.loads(tracking_json(tmp_path / "run").read_text())  # made by the driver, before the jobs
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    for key, run_id in record["children"].items():  # each written by the worker that trained the pair
        assert client.get_metric_history(run_id, "val_f1")[0].step == 1
    assert sorted(k.split("@")[0] for k in record["children"]) == [f"{BACKBONE}/fold0", f"{BACKBONE}/fold1"]


def test_a_warning_several_workers_give_is_told_once(tmp_path):
    """With --jobs N each worker process tells once of a tracking store that went down; the parent, which relays
    their lines, tells it once in all, and once only if it had told it itself."""
    from pipeline.progress import relay

    told, warned = [], {"warning: mlflow tracking failed (ConnectionError: told by the parent); going on without it"}
    lines = tmp_path / "jobs.log"
    with relay(lines, told.append, every=0.01, warned=warned):
        with open(lines, "a") as f:
            for worker in ("a", "b"):
                f.write("warning: mlflow tracking failed (ConnectionError: gone); going on without it\n")
                f.write(f"test_resnet fold {worker}: epoch 1\n")
            f.write("warning: mlflow tracking failed (ConnectionError: told by the parent); going on without it\n")
    assert told == ["warning: mlflow tracking failed (ConnectionError: gone); going on without it",
                    "test_resnet fold a: epoch 1", "test_resnet fold b: epoch 1"]
