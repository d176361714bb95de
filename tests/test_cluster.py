"""train-all on a simulated multi-node Ray cluster (ray.cluster_utils.Cluster: a head and worker nodes, each with
its own resources, all on this machine): a lost node, a node without the shared storage, placement, a killed
driver. The head gets no CPU, so every job runs on a worker node."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from ensemble.run import run_ensemble
from pipeline.layout import pair_dir, refit_dir
from tests.conftest import TINY, cli_args, tiny_config

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    yield c
    ray.shutdown()
    c.shutdown()


def attempts(cfg, backbone, fold):
    f = pair_dir(cfg.run_dir, backbone, fold) / "attempts.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.is_file() else []


def epochs_once(cfg, backbone, fold, n):
    return list(pd.read_csv(pair_dir(cfg.run_dir, backbone, fold) / "metrics.csv")["epoch"]) == list(range(1, n + 1))


def test_a_lost_node_s_pair_resumes_on_the_other_node(data_dir, tmp_path, cluster):
    from pipeline.train.jobs import train_all
    from pipeline.train.ray_jobs import RayOptions

    nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    ray.init(address=cluster.address, log_to_driver=False)
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=4", "train.batch_size=4")
    lost = {}

    def remove_the_node_of_fold_0():
        deadline = time.time() + 240
        while time.time() < deadline:
            started = [a for a in attempts(cfg, "test_resnet", 0) if "start" in a]
            if started and (pair_dir(cfg.run_dir, "test_resnet", 0) / "last.pt").is_file():
                victim = next(n for n in nodes if n.node_id.startswith(started[0]["node"]))
                time.sleep(0.3)  # into the next epoch
                cluster.remove_node(victim, allow_graceful=False)
                lost["node"] = started[0]["node"]
                return
            time.sleep(0.05)

    t = threading.Thread(target=remove_the_node_of_fold_0, daemon=True)
    t.start()
    start = time.time()
    table = train_all(cfg, ray=RayOptions(cpus_per_job=1, retries=3), log=lambda m: None)
    t.join(timeout=5)
    print(f"two-node lost-node run: {time.time() - start:.1f}s")
    assert lost, "fold 0 finished before its node could be removed"
    assert set(table["status"]) == {"done"}, table.to_string()
    runs = [a for a in attempts(cfg, "test_resnet", 0) if "start" in a]
    assert runs[0]["node"] == lost["node"] != runs[-1]["node"]  # rescheduled on the surviving node
    for k in (0, 1):
        assert epochs_once(cfg, "test_resnet", k, 4)  # resumed from last.pt: no epoch trained twice
    run_ensemble(cfg, log=lambda m: None)  # every photo exactly once in the OOF predictions


def test_a_node_without_the_storage_fails_fast_and_its_pair_goes_elsewhere(data_dir, tmp_path, cluster):
    from pipeline.train.jobs import train_all
    from pipeline.train.ray_jobs import RayOptions

    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1, env_vars={"MASKFOLD_PATH_MAP": f"{tmp_path}=/mnt/not-mounted"})
    ray.init(address=cluster.address, log_to_driver=False)
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1", "folds.n_splits=4")
    lines = []
    table = train_all(cfg, ray=RayOptions(cpus_per_job=1), log=lines.append)
    assert set(table["status"]) == {"done"}, table.to_string()
    failed = [line for line in lines if "cannot see" in line]
    print(failed[:1])
    assert failed, "no job landed on the node without the storage"
    assert all("/mnt/not-mounted/run" in line and "mount the shared storage" in line for line in failed)
    noted = table.dropna(subset=["notes"]) if "notes" in table else table.iloc[:0]
    assert len(noted) and noted["notes"].str.contains(r"node \w+ \(.*\) cannot see the run directory").all()
    assert table["node"].nunique() == 1  # every pair trained on the node that sees the storage
    for k in range(4):
        assert all("cannot see" not in json.dumps(a) for a in attempts(cfg, "test_resnet", k))  # failed before training


def test_jobs_take_one_gpu_each_and_spread_over_nodes(data_dir, tmp_path, cluster):
    from pipeline.train.jobs import train_all
    from pipeline.train.ray_jobs import RayOptions

    # num_gpus here are stand-ins: Ray counts them, nothing uses CUDA (train.device=cpu)
    nodes = [cluster.add_node(num_cpus=2, num_gpus=1), cluster.add_node(num_cpus=2, num_gpus=1)]
    ray.init(address=cluster.address, log_to_driver=False)
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1", "folds.n_splits=4", "train.device=cpu",
                      "train.refit=true")
    table = train_all(cfg, ray=RayOptions(gpus_per_job=1, cpus_per_job=1), log=lambda m: None)
    assert set(table["status"]) == {"done"} and table["node"].nunique() == 2 and table["host"].notna().all()
    # the refit is a task like the pairs: it ran on a worker node (the head has no CPU for tasks), not the driver
    refit = table[table["fold"].isna()].iloc[0]
    assert refit["node"] in {n.node_id[:12] for n in nodes}
    refit_runs = [json.loads(x) for x in (refit_dir(cfg.run_dir, "test_resnet") / "attempts.jsonl").read_text()
                  .splitlines()]
    assert refit_runs[0]["node"] == refit["node"] and (refit_dir(cfg.run_dir, "test_resnet") / "done.json").is_file()
    spans = {refit["node"]: [(refit_runs[0]["start"], refit_runs[-1]["end"])]}
    for k in range(4):
        a = attempts(cfg, "test_resnet", k)
        spans.setdefault(a[0]["node"], []).append((a[0]["start"], a[-1]["end"]))
    for node, s in spans.items():  # one "GPU" per node: its jobs never overlap in time
        s.sort()
        assert all(end <= nxt for (_, end), (nxt, _) in zip(s, s[1:])), (node, s)


def test_a_killed_driver_then_a_rerun_finishes_every_pair_once(data_dir, tmp_path, cluster):
    from pipeline.train.jobs import train_all
    from pipeline.train.ray_jobs import RayOptions

    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    sets = [*TINY, "train.epochs=4", "train.batch_size=4"]
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=4", "train.batch_size=4")
    cmd = [sys.executable, "-m", "pipeline.cli"] + cli_args("train-all", tmp_path, data_dir, *sets) + [
        "--backend", "ray", "--address", cluster.address]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and not (pair_dir(cfg.run_dir, "test_resnet", 0) / "last.pt").is_file():
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    ray.init(address=cluster.address, log_to_driver=False)
    table = train_all(cfg, ray=RayOptions(cpus_per_job=1), log=lambda m: None)
    assert set(table["status"]) <= {"done", "skipped"} and len(table) == 2, table.to_string()
    for k in (0, 1):
        assert epochs_once(cfg, "test_resnet", k, 4)
    oof = [np.load(pair_dir(cfg.run_dir, "test_resnet", k) / "oof.npz")["image_id"] for k in (0, 1)]
    assert len(set(oof[0]) & set(oof[1])) == 0
