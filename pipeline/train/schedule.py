"""The one loop every backend runs train-all through: it starts the planned jobs (pipeline.train.plan) as the backend
has room, longest first, adds a refit the moment its backbone's folds are finished, and collects a result row per
job as each ends, in whatever order they end.

A backend is anything with room(), start(job), running() and next_result(): the local one runs jobs in this
process or in worker processes (pipeline.train.jobs), the Ray one on a cluster (pipeline.train.ray_jobs).
"""
from __future__ import annotations

from contextlib import ExitStack

from pipeline.config import Config
from pipeline.progress import bar as progress_bar
from pipeline.progress import say
from pipeline.train.job import JobResult, refit_job
from pipeline.train.plan import cost, plan, refit_epochs, waiting_refits
from pipeline.train.state import FINISHED, job_state


def _triage(cfg: Config, jobs: list, rows: list) -> list:
    """The jobs still to run: finished ones become skipped rows."""
    todo = []
    for job in jobs:
        state = job_state(cfg, job)
        if state.status == FINISHED:
            rows.append(JobResult.of(job, "skipped", done=state.done))
        else:
            todo.append(job)
    return todo


def _refit_now(cfg: Config, backbone: str, planned: set) -> list:
    """The backbone's refit, once its folds are all finished and where it is not planned yet."""
    if not cfg.train.refit or backbone in planned:
        return []
    epochs, _ = refit_epochs(cfg, backbone)
    if epochs is None:
        return []
    planned.add(backbone)
    return [refit_job(cfg, backbone, epochs)]


def _announce(cfg: Config, todo: list, rows: list, log) -> int:
    """The opening counts; how many jobs will run (refits whose folds are still to train included)."""
    pairs = [j for j in todo if j.fold is not None]
    log(f"{len(pairs)} pair(s) to train, {sum(r.fold is not None for r in rows)} already finished")
    if not cfg.train.refit:
        return len(pairs)
    finished = sum(r.fold is None for r in rows)
    refits = len(cfg.backbone_names()) - finished
    log(f"{refits} refit(s) to train, {finished} already finished")
    return len(pairs) + refits


def run_plan(cfg: Config, backend, log=print) -> list[JobResult]:
    """Every job of plan(cfg) through `backend`; a row per job (skipped, done, failed, busy, or waiting for a
    refit whose folds did not all finish)."""
    rows, jobs = [], plan(cfg)  # planned once; a refit joins when its backbone's folds are all finished
    planned = {j.backbone for j in jobs if j.fold is None}
    queue = _triage(cfg, jobs, rows)
    total, ended = _announce(cfg, queue, rows, log), 0
    with ExitStack() as stack:
        outer = stack.enter_context(progress_bar(total=total, desc="train-all", unit="job", leave=True))
        while True:
            queue.sort(key=lambda j: -cost(cfg, j))
            while queue and backend.room():
                job = queue.pop(0)
                beside = backend.running()
                backend.start(job)
                if beside:
                    log(f"{job.name}: started beside {', '.join(beside)}")
            if not backend.running():
                break
            row = backend.next_result()
            rows.append(row)
            ended += 1
            outer.update(1)
            say(f"job {ended} of {total}: {row.name} {row.status} ({row.seconds}s)", log)
            queue += _triage(cfg, _refit_now(cfg, row.backbone, planned), rows)
    for b, why in waiting_refits(cfg).items():
        log(f"{b} refit waits: {why}")
        rows.append(JobResult(b, None, "waiting", error=f"no refit yet: {why}"))
    return rows
