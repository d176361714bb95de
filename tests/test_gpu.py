"""The CUDA paths: AMP (bf16, and fp16 with its gradient scaler), resume on the GPU, torch.compile, predict.

Skipped without CUDA; pipeline/tools/gpu_check.sh runs them on a GPU machine (see BENCHMARKS.md)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ensemble.predict import predict_folder
from ensemble.run import run_ensemble
from pipeline.layout import pair_dir
from pipeline.train.job import fold_job
from pipeline.train.pair import train_pair
from pipeline.train.rundata import load_run_data
from pipeline.train.trainer import Trainer
from tests.conftest import tiny_config

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
QUIET = dict(log=lambda m: None)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_trains_and_predicts_on_cuda(data_dir, tmp_path, amp):
    cfg = tiny_config(tmp_path, data_dir, f"train.amp={amp}", "train.device=cuda", "train.epochs=2",
                      "train.num_workers=2")
    info = train_pair(cfg, "test_resnet", 0, progress=False, **QUIET)
    d = pair_dir(cfg.run_dir, "test_resnet", 0)
    assert info.status == "done" and info.done.device.startswith("cuda")
    logits = np.load(d / "oof.npz")["logits"]
    assert np.isfinite(logits).all() and logits.shape[1] == 18
    metrics = pd.read_csv(d / "metrics.csv")
    assert np.isfinite(metrics["train_loss"]).all()
    if amp == "fp16":
        assert torch.load(d / "last.pt", weights_only=True)["scaler"] is not None  # the scaler state is saved


def test_resume_on_cuda_gives_the_same_weights(data_dir, tmp_path):
    sets = ("train.device=cuda", "train.amp=bf16")
    a = tiny_config(tmp_path / "a", data_dir, *sets)
    straight = Trainer(a, fold_job(a, "test_resnet", 0), load_run_data(a, **QUIET), progress=False, **QUIET)
    straight.fit()
    b = tiny_config(tmp_path / "b", data_dir, *sets)
    first = Trainer(b, fold_job(b, "test_resnet", 0), load_run_data(b, **QUIET), progress=False, **QUIET)
    first.settings["epochs"] = 1
    first.fit()
    resumed = Trainer(b, fold_job(b, "test_resnet", 0), load_run_data(b, **QUIET), progress=False, **QUIET)
    assert resumed.prepare().last is not None and resumed.epoch == 1
    resumed.fit()
    x, y = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(x[k].float(), y[k].float(), atol=1e-5) for k in x)


def test_torch_compile_trains_on_cuda(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.device=cuda", "train.compile=true", "train.epochs=1")
    assert train_pair(cfg, "test_resnet", 0, progress=False, **QUIET).status == "done"


def test_predict_on_cuda_reproduces_the_submission(data_dir, tmp_path):
    cfg = tiny_config(tmp_path, data_dir, "train.device=cuda", "train.epochs=1")
    for k in (0, 1):
        train_pair(cfg, "test_resnet", k, progress=False, **QUIET)
    run_ensemble(cfg, **QUIET)
    df = predict_folder(cfg.run_dir, data_dir / "eval" / "images", tmp_path / "p.csv", device="cuda", **QUIET)
    df["ImageID"] = [Path(p).name for p in df["path"]]
    sub = pd.read_csv(Path(cfg.run_dir) / "submission.csv").merge(df, on="ImageID")
    assert len(sub) == 12 and (sub["ans"] == sub["class"]).mean() >= 0.9  # bf16 kernels may flip a close call
