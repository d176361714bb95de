"""Which jobs a config trains and in which order: plan(cfg).

Every backbone has one fold pair per fold. With train.refit, each backbone also has a full-data refit, trained for
the median of its folds' best epochs (rounded half up); that count is known only once every fold of the backbone
is finished, so a refit joins the plan then, and waits for nothing else (another backbone's folds may still run).
The order is longest first, so that the last job to start is a short one rather than a long one alone on an
otherwise idle machine.
"""
from __future__ import annotations

import statistics

from pipeline.config import Config
from pipeline.train.job import Job, fold_job, refit_job
from pipeline.train.state import FINISHED, job_state, unfinished_reason


def refit_epochs(cfg: Config, backbone: str) -> tuple[int | None, str | None]:
    """(epochs, None): the median of the finished folds' best epochs, rounded half up; (None, why) while a fold of
    the backbone is not finished under this config."""
    best = []
    for k in range(cfg.folds.n_splits):
        state = job_state(cfg, fold_job(cfg, backbone, k))
        if state.status != FINISHED:
            return None, f"fold {k} is not finished ({unfinished_reason(cfg, backbone, k)})"
        best.append(state.done.best_epoch)
    return max(1, int(statistics.median(best) + 0.5)), None


def cost(cfg: Config, job: Job) -> float:
    """A job's length, relative to the others: epochs x photos trained on x pixels per photo."""
    h, w = cfg.resolved(cfg.backbone(job.backbone))["img_size"]
    share = 1.0 if job.fold is None else (cfg.folds.n_splits - 1) / cfg.folds.n_splits
    return job.epochs * share * h * w


def plan(cfg: Config) -> list[Job]:
    """Every job of the config that can be described now (a refit once its folds are finished), longest first;
    finished ones too (the runners skip them)."""
    jobs = [fold_job(cfg, b, k) for b in cfg.backbone_names() for k in range(cfg.folds.n_splits)]
    if cfg.train.refit:
        for b in cfg.backbone_names():
            epochs, _ = refit_epochs(cfg, b)
            if epochs is not None:
                jobs.append(refit_job(cfg, b, epochs))
    return sorted(jobs, key=lambda j: -cost(cfg, j))  # stable: equal lengths keep the config's order


def waiting_refits(cfg: Config) -> dict[str, str]:
    """backbone -> why its refit cannot be planned yet, for each backbone with train.refit whose folds are not all
    finished."""
    if not cfg.train.refit:
        return {}
    why = {b: refit_epochs(cfg, b)[1] for b in cfg.backbone_names()}
    return {b: w for b, w in why.items() if w is not None}


def refit_status(cfg: Config, backbone: str):
    """(done record, None) when the backbone's refit is finished under this config; else (record or None, why not)."""
    epochs, why = refit_epochs(cfg, backbone)
    if epochs is None:
        return None, f"no refit yet: {why}"
    state = job_state(cfg, refit_job(cfg, backbone, epochs))
    if state.status == FINISHED:
        return state.done, None
    return state.done, state.reason or "not trained"
