"""The Optuna study of a run: its storage (SQLite under <run_dir>/tune/ unless tune.storage names one), its pruner,
and which trials count.

A trial is held by a lock in its own folder while a process trains it; a trial that the storage says is running but
whose lock is free (or was never taken, after a while) belongs to a process that died: it is marked failed and its
settings are queued again, so a killed `tune` resumes where it stopped and two `tune`s on one study share the work.
"""
from __future__ import annotations

import time
from pathlib import Path

from pipeline.io import Busy, file_lock
from pipeline.layout import trial_lock, tune_study_db

NEVER_LOCKED_S = 120  # a running trial with no lock file this old was never started by a live process


def storage_url(cfg) -> str:
    if cfg.tune.storage:
        return cfg.tune.storage
    db = tune_study_db(cfg.run_dir).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def open_study(cfg):
    """The run's study, made on first use; its sampler seeded by the config's seed and the trials it holds."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = cfg.tune
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=t.startup_trials, n_warmup_steps=t.warmup_epochs + 1)
              if t.pruner == "median" else optuna.pruners.NopPruner())
    study = optuna.create_study(storage=storage_url(cfg), study_name=t.study or Path(cfg.run_dir).name,
                                direction="minimize" if t.metric.endswith("loss") else "maximize", pruner=pruner,
                                load_if_exists=True)
    # A fresh study repeats exactly; a resumed one (or a second process) draws on from where the trials stand.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials))
    return study


def recover_dead(study, run_dir, log) -> None:
    """Running trials of processes that died: marked failed, their settings queued to be trained again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lock = trial_lock(run_dir, t.number)
        if lock.is_file():
            try:
                with file_lock(lock):
                    pass  # free: its holder died
            except Busy:
                continue
        elif time.time() - t.datetime_start.timestamp() < NEVER_LOCKED_S:
            continue  # just asked for: its process takes the lock next
        study.tell(t.number, state=TrialState.FAIL)
        # an enqueued trial's settings are fixed before they are drawn: a kill between the two loses only the draws
        settings = {**t.system_attrs.get("fixed_params", {}), **t.params}
        study.enqueue_trial(settings, user_attrs={"retry_of": t.number})
        log(f"trial {t.number} was left running by a process that stopped; its settings are queued again")


def counted(study) -> int:
    """Trials that count towards tune.trials: finished, pruned, or being trained by a live process."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))
