"""train-all: every (backbone, fold) pair of a config, skipping finished ones, surviving failures; then, with
train.refit, each backbone's full-data refit (pipeline.train.refit), whose epoch count comes from its folds.

Pairs are independent jobs. Locally they run through joblib (one process per job, one GPU each where there are
several); `--backend ray` hands them to a Ray cluster (pipeline.train.ray_jobs).
"""
from __future__ import annotations

import os
import time
import traceback
from contextlib import ExitStack, contextmanager

import pandas as pd
from joblib import Parallel, delayed

from pipeline.config import Config, save_config
from pipeline.io import Busy, file_lock
from pipeline.layout import REFIT, config_yaml, gpu_lock, job_lines
from pipeline.model.metrics import backbone_oof
from pipeline.model.models import require_weights
from pipeline.progress import bar as progress_bar
from pipeline.progress import relay, say
from pipeline.tracking import open_tracking
from pipeline.train.pair import train_pair
from pipeline.train.rundata import RunData, load_run_data
from pipeline.train.state import FINISHED, pair_state, refit_epochs, refit_state
from pipeline.train.trainer import require_tensorboard


def pairs_of(cfg: Config) -> list[tuple[str, int]]:
    return [(b, k) for b in cfg.backbone_names() for k in range(cfg.folds.n_splits)]


def pending_pairs(cfg: Config) -> tuple[list[tuple[str, int]], list[dict]]:
    """Which pairs are left to train, and a summary row for each finished one (every backend asks this)."""
    todo, rows = [], []
    for b, k in pairs_of(cfg):
        state = pair_state(cfg, b, k)
        if state.status == FINISHED:
            done = state.done
            rows.append({"backbone": b, "fold": k, "status": "skipped", "val_f1": done.val_f1,
                         "host": done.host, "device": done.device, "seconds": 0.0})
        else:
            todo.append((b, k))
    return todo, rows


@contextmanager
def claim_gpu(run_dir, n_gpus: int):
    """Hold one free GPU for this job: a lock per GPU under the run dir.

    Jobs finish at different times, so a fixed round-robin could put two running jobs on one GPU; a claim
    cannot. The locks are flock()s, so a killed job's claim is free at once.
    """
    with ExitStack() as held:
        for i in range(n_gpus):
            try:
                held.enter_context(file_lock(gpu_lock(run_dir, i)))
            except Busy:
                continue
            yield f"cuda:{i}"
            return
        yield f"cuda:{os.getpid() % n_gpus}"  # more jobs than GPUs: share


def run_one(cfg: Config, backbone: str, fold: int, device: str | None, threads: int | None, progress: bool,
            n_gpus: int = 0, data: RunData | None = None, lines_file: str | None = None,
            lock_wait_s: float | None = None) -> dict:
    """One job: never raises, so one pair's failure cannot stop the others.

    `data` is the checked folds table and caches that train-all loaded once before starting its jobs. A job in a
    process of its own appends its lines to `lines_file`, which the parent prints (progress.relay).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    if n_gpus > 1 and device is None:
        with claim_gpu(cfg.run_dir, n_gpus) as gpu:
            return run_one(cfg, backbone, fold, gpu, threads, progress, data=data, lines_file=lines_file,
                           lock_wait_s=lock_wait_s)
    start = time.time()

    def log(message: str) -> None:
        if lines_file:
            with open(lines_file, "a") as f:  # O_APPEND: parallel jobs' lines never interleave mid-line
                f.write(message + "\n")
        else:
            print(message, flush=True)

    try:
        info = train_pair(cfg, backbone, fold, data=data, device=device, progress=progress, log=log,
                          lock_wait_s=lock_wait_s)
    except Exception as e:  # noqa: BLE001 - reported in the summary
        traceback.print_exc()
        return {"backbone": backbone, "fold": fold, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "seconds": round(time.time() - start, 1)}
    return {"backbone": backbone, "fold": fold, "host": info.get("host"), "device": info.get("device"),
            "val_f1": info.get("val_f1"), "status": info["status"], "seconds": round(time.time() - start, 1),
            **({"error": info["error"]} if info.get("error") else {})}


def gpus_to_share(device: str) -> int:
    """How many GPUs the local jobs spread over: all of them when the config says auto or cuda."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 0


def pending_refits(cfg: Config) -> tuple[list[tuple[str, str]], list[dict]]:
    """Which backbones' refits are left to train (as (backbone, REFIT) jobs), and a summary row for each other one:
    skipped when finished, waiting while a fold of its backbone is not finished (its epoch count is not known)."""
    todo, rows = [], []
    for b in cfg.backbone_names():
        state = refit_state(cfg, b)
        if state is not None and state.status == FINISHED:
            rows.append({"backbone": b, "fold": REFIT, "status": "skipped", "host": state.done.host,
                         "device": state.done.device, "seconds": 0.0})
        elif state is None:
            why = refit_epochs(cfg, b)[1]
            rows.append({"backbone": b, "fold": REFIT, "status": "waiting", "error": f"no refit yet: {why}",
                         "seconds": 0.0})
        else:
            todo.append((b, REFIT))
    return todo, rows


def train_all(cfg: Config, jobs: int = 1, log=print) -> pd.DataFrame:
    """Every pending pair, then (train.refit) every backbone's full-data refit; a summary row for each."""
    require_tensorboard(cfg)
    require_weights(cfg.backbones, log)  # once, before any job: not a minute of retries in every pair
    data = load_run_data(cfg, log=log)  # check data and build caches once, before any job starts
    save_config(cfg, config_yaml(cfg.run_dir))  # what compare, a blend of runs and predict read back; once accepted
    open_tracking(cfg, log)  # the run's tracked run, made here before the jobs log their children to it
    todo, rows = pending_pairs(cfg)
    log(f"{len(todo)} pair(s) to train, {len(rows)} already finished")
    results = run_jobs(cfg, todo, data, jobs, log)
    table = pd.DataFrame(rows + results).sort_values(["backbone", "fold"]).reset_index(drop=True)
    if cfg.train.refit:
        table = pd.concat([table, pd.DataFrame(train_refits(cfg, data, jobs, log))], ignore_index=True)
    return table


def train_refits(cfg: Config, data: RunData, jobs: int = 1, log=print) -> list[dict]:
    """The refits after the folds: their summary rows (fold = REFIT), in backbone order."""
    todo, rows = pending_refits(cfg)
    log(f"{len(todo)} refit(s) to train, {sum(r['status'] == 'skipped' for r in rows)} already finished")
    for r in rows:
        if r["status"] == "waiting":
            log(f"{r['backbone']} refit waits: {r['error']}")
    results = run_jobs(cfg, todo, data, jobs, log, noun="refit") if todo else []
    order = {b: i for i, b in enumerate(cfg.backbone_names())}
    return sorted(rows + results, key=lambda r: order[r["backbone"]])


def run_jobs(cfg: Config, todo: list[tuple], data: RunData, jobs: int, log, noun: str = "pair") -> list[dict]:
    """The jobs of `todo` ((backbone, fold) pairs, or (backbone, REFIT) refits) through joblib; their result rows
    as they finish."""
    jobs = max(1, min(jobs, len(todo) or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    n_gpus = gpus_to_share(cfg.train.device) if jobs > 1 else 0
    results = []
    lines = job_lines(cfg.run_dir)
    calls = (delayed(run_one)(cfg, b, k, None, threads, progress=jobs == 1, n_gpus=n_gpus, data=data,
                              lines_file=str(lines) if jobs > 1 else None) for b, k in todo)
    # One outer bar over the pairs (with an ETA); results arrive as jobs finish, in any order. Parallel jobs'
    # lines are relayed above it.
    with ExitStack() as stack:
        if jobs > 1:
            stack.enter_context(relay(lines, log))
        desc = "train-all" if noun == "pair" else noun
        outer = stack.enter_context(progress_bar(total=len(todo), desc=desc, unit=noun, leave=True))
        for r in Parallel(n_jobs=jobs, backend="loky" if jobs > 1 else "sequential",
                          return_as="generator_unordered")(calls):
            results.append(r)
            outer.update(1)
            what = r["backbone"] if r["fold"] == REFIT else f"{r['backbone']} fold {r['fold']}"
            say(f"{noun} {len(results)} of {len(todo)}: {what} {r['status']} ({r['seconds']}s)", log)
    return results


def oof_scores(cfg: Config) -> dict[str, dict]:
    """Each backbone's out-of-fold scores over the folds that have predictions."""
    out = {}
    for b in cfg.backbone_names():
        oof = backbone_oof(cfg.run_dir, b, cfg.folds.n_splits)
        if oof:
            out[b] = {**oof["scores"], "folds": oof["folds"]}
    return out
