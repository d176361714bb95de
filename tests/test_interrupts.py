"""A job stopped at the worst moment, or a disk that fails a read: the next run neither trusts files that no longer
match their record nor throws away files it merely could not read."""
import dataclasses
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.layout import best_pt, done_json, oof_npz
from pipeline.storage import Unreadable
from pipeline.train import jobs as jobs_module
from pipeline.train import trainer as trainer_module
from pipeline.train.job import fold_job
from pipeline.train.jobs import train_all
from pipeline.train.pair import train_pair
from pipeline.train.state import FINISHED, RESUMABLE, TRAINED, job_state
from tests.conftest import tiny_config

QUIET = dict(log=lambda m: None)


def _with_tta(cfg, *views):
    return dataclasses.replace(cfg, tta=list(views))


def test_a_kill_while_predictions_are_rewritten_leaves_them_owed_under_every_tta(data_dir, tmp_path, monkeypatch):
    """Trained with [orig]; predicting again for [orig, hflip] is killed once oof.npz is rewritten. Back on [orig],
    the job must not read as finished: its oof.npz now holds hflip predictions."""
    torch.set_num_threads(1)
    cfg = _with_tta(tiny_config(tmp_path, data_dir, "train.epochs=1"), "orig")
    assert train_pair(cfg, "test_resnet", 0, progress=False, **QUIET).status == "done"
    job = fold_job(cfg, "test_resnet", 0)
    before = np.load(oof_npz(job.folder))["logits"].copy()

    def killed(self, model):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "_write_test", killed)
    with pytest.raises(KeyboardInterrupt):
        train_pair(_with_tta(cfg, "orig", "hflip"), "test_resnet", 0, progress=False, **QUIET)
    assert not np.array_equal(np.load(oof_npz(job.folder))["logits"], before)  # rewritten under the other TTA
    monkeypatch.undo()
    state = job_state(cfg, job)
    assert state.status == TRAINED and "rewritten" in state.reason
    assert train_pair(cfg, "test_resnet", 0, progress=False, **QUIET).status == "done"
    assert job_state(cfg, job).status == FINISHED
    assert np.allclose(np.load(oof_npz(job.folder))["logits"], before, atol=1e-5)


def test_a_read_error_is_no_verdict_and_removes_nothing(data_dir, tmp_path, monkeypatch):
    """An I/O error reading done.json or a checkpoint stops the job with a message; its files all stay."""
    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1")
    train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    job = fold_job(cfg, "test_resnet", 0)
    files = sorted(p.name for p in job.folder.iterdir())
    real_read = Path.read_bytes

    def failing_read(path):
        if path.name == "done.json":
            raise OSError(errno.EIO, "Input/output error")
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", failing_read)
    with pytest.raises(Unreadable, match=r"cannot read .*done.json \(Input/output error\); nothing was removed"):
        job_state(cfg, job)
    with pytest.raises(Unreadable):
        train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    assert sorted(p.name for p in job.folder.iterdir()) == files
    monkeypatch.undo()
    real_load = torch.load

    def failing_load(path, *a, **kw):
        if Path(path).name == "last.pt":
            raise OSError(errno.ESTALE, "Stale file handle")
        return real_load(path, *a, **kw)

    (done_json(job.folder)).write_text(json.dumps({"version": 2}))  # no longer finished: last.pt gets read
    monkeypatch.setattr(torch, "load", failing_load)
    with pytest.raises(Unreadable, match="Stale file handle"):
        job_state(cfg, job)
    assert sorted(p.name for p in job.folder.iterdir()) == files


def test_a_kill_between_last_pt_and_best_pt_resumes_and_rebuilds_best(data_dir, tmp_path, monkeypatch):
    """last.pt is written first; a kill before the improved epoch's best.pt leaves a job that resumes (not one that
    is retrained) and whose best.pt is rebuilt from last.pt: the run ends as a straight one does, to the bit."""
    torch.set_num_threads(1)
    straight = tiny_config(tmp_path / "a", data_dir)
    train_pair(straight, "test_resnet", 0, progress=False, **QUIET)
    cfg = tiny_config(tmp_path / "b", data_dir)
    real_save = trainer_module.atomic_torch_save

    def save_then_die(obj, path):
        if Path(path).name == "best.pt":  # epoch 1 always improves on nothing
            raise KeyboardInterrupt
        real_save(obj, path)

    monkeypatch.setattr(trainer_module, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    monkeypatch.undo()
    job = fold_job(cfg, "test_resnet", 0)
    state = job_state(cfg, job)
    assert state.status == RESUMABLE and state.last.best_epoch == 1 and not best_pt(job.folder).exists()
    assert train_pair(cfg, "test_resnet", 0, progress=False, **QUIET).status == "done"
    a = torch.load(best_pt(fold_job(straight, "test_resnet", 0).folder), weights_only=True)
    b = torch.load(best_pt(job.folder), weights_only=True)
    assert a["epoch"] == b["epoch"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads(done_json(job.folder).read_text())["best_epoch"] == a["epoch"]


def test_a_dead_worker_fails_its_jobs_and_the_run_goes_on(data_dir, tmp_path, monkeypatch):
    """With --jobs 2, a worker killed mid-job (out of memory, kill -9) fails the pool's jobs with a message that says
    how to resume; jobs not started yet run in a fresh pool, and the run ends with its summary."""
    cfg = tiny_config(tmp_path, data_dir, "train.epochs=1", "folds.n_splits=3")
    real = jobs_module.run_one

    def run_or_die(cfg, job, data, opts):
        if job.fold == 0:
            os._exit(9)
        return real(cfg, job, data, opts)

    monkeypatch.setattr(jobs_module, "run_one", run_or_die)
    table = train_all(cfg, jobs=2, **QUIET)
    failed = table[table["status"] == "failed"]
    assert 0 in set(failed["fold"]) and len(table) == 3, table
    assert all("worker process died" in e and "rerun train-all" in e for e in failed["error"])
    assert (table["status"] == "done").any(), table  # the job started after the death ran in a fresh pool
    monkeypatch.undo()
    assert set(train_all(cfg, jobs=2, **QUIET)["status"]) <= {"done", "skipped"}
