"""train-all through a local 2-CPU Ray instance, with one job's worker killed mid-training."""
import json
import os
import signal
import threading
import time

import pandas as pd
import pytest

from pipeline.layout import pair_dir
from tests.conftest import tiny_config

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")
pytestmark = pytest.mark.ray


def test_ray_retry_resumes_after_worker_is_killed(data_dir, tmp_path):
    from pipeline.train.jobs import train_all
    from pipeline.train.ray_jobs import RayOptions

    cfg = tiny_config(tmp_path, data_dir, "train.epochs=4", "train.batch_size=4")
    victim = pair_dir(cfg.run_dir, "test_resnet", 0)
    killed = {}

    def kill_when_training():
        deadline = time.time() + 240
        while time.time() < deadline:
            attempts = victim / "attempts.jsonl"
            if (victim / "last.pt").is_file() and attempts.is_file():
                pid = json.loads(attempts.read_text().splitlines()[0])["pid"]
                time.sleep(0.3)  # into the next epoch
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.05)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        t = threading.Thread(target=kill_when_training, daemon=True)
        t.start()
        table = train_all(cfg, ray=RayOptions(cpus_per_job=1, retries=2), log=lambda m: None)
        t.join(timeout=5)
    finally:
        ray.shutdown()
    assert killed, "the job finished before it could be killed"
    assert set(table["status"]) == {"done"}, table.to_string()
    row = table[(table["backbone"] == "test_resnet") & (table["fold"] == 0)].iloc[0]
    assert row["attempts"] == 2 and row["host"] and row["seconds"] > 0
    attempts = [json.loads(x) for x in (victim / "attempts.jsonl").read_text().splitlines()]
    assert attempts[0]["pid"] == killed["pid"] != attempts[1]["pid"]
    done = json.loads((victim / "done.json").read_text())
    assert done["epochs_run"] == 4
    metrics = pd.read_csv(victim / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3, 4]  # resumed from last.pt: no epoch trained twice in the record
    # finished pairs are never redone
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        again = train_all(cfg, ray=RayOptions(cpus_per_job=1), log=lambda m: None)
    finally:
        ray.shutdown()
    assert set(again["status"]) == {"skipped"}
