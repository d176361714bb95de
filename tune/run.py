"""`maskfold tune`: an Optuna study over the keys `tune.params` names (tune.space), each trial the training of
`tune.folds` of `tune.backbones` through the ordinary trainer, in its own run directory <run_dir>/tune/trial-<n>/,
on the run's photos, folds and photo cache (loaded once). Every epoch's validation figure goes to the pruner, which
stops hopeless trials. At the end: tune/trials.csv, tune/best.yaml (the best trial as an experiment file) and
Optuna's plots as PNG.
"""
from __future__ import annotations

import statistics
import time

from pipeline.config import Config, ConfigError, load_config, save_config
from pipeline.io import file_lock
from pipeline.layout import config_yaml, trial_dir, trial_lock
from pipeline.preflight import check_config, require_training_ready
from pipeline.train.job import fold_job
from pipeline.train.rundata import RunData, load_run_data
from pipeline.train.trainer import Trainer
from tune.outputs import write_outputs
from tune.space import read_space, setting
from tune.study import counted, open_study, recover_dead


def require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("maskfold tune needs Optuna: pip install 'maskfold[tune]'") from None


class Reporting:
    """A trainer's tracker that also hands each epoch's figure to the trial, and stops the trial when the pruner
    says so (the pair's own tracker still sees every epoch)."""

    def __init__(self, inner, trial, metric: str, offset: int):
        self.inner, self.trial, self.metric, self.offset = inner, trial, metric, offset

    def epoch(self, row: dict) -> None:
        import optuna

        self.inner.epoch(row)
        self.trial.report(float(row[self.metric]), self.offset + int(row["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.metric} {row[self.metric]:.4f} at epoch {row['epoch']}")

    def done(self, record: dict, folder) -> None:
        self.inner.done(record, folder)


def tuned(cfg: Config) -> list:
    """The backbones the trials train: tune.backbones, else every network (a face member has no epochs to report,
    pipeline.train.face_job)."""
    return [cfg.backbone(b) for b in cfg.tune.backbones] or cfg.networks()


def train_trial(cfg: Config, trial_cfg: Config, trial, data: RunData, log) -> float:
    """The trial's pairs, one after another; its value: the mean over them of the best epoch's figure."""
    t = cfg.tune
    pick = min if t.metric.endswith("loss") else max
    values, offset = [], 0
    for backbone in [b.name for b in tuned(trial_cfg)]:
        for fold in t.folds:
            trainer = Trainer(trial_cfg, fold_job(trial_cfg, backbone, fold), data, progress=False, log=log)
            trainer.tracker = Reporting(trainer.tracker, trial, t.metric, offset)
            trainer.fit()
            values.append(pick(float(r[t.metric]) for r in trainer.history))
            offset += trainer.settings["epochs"]
    return statistics.fmean(values)


def run_one_trial(cfg: Config, config_path, overrides, study, space, data: RunData, log) -> None:
    """Ask the study for a trial, train it under its lock, tell the study how it went."""
    import optuna
    from optuna.trial import TrialState

    trial = study.ask()
    folder = trial_dir(cfg.run_dir, trial.number)
    with file_lock(trial_lock(cfg.run_dir, trial.number)):
        values = {p.key: p.suggest(trial) for p in space}
        trial.set_user_attr("run_dir", str(folder))
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        log(f"trial {trial.number}: {shown}")
        try:
            trial_cfg = load_config(config_path, [*overrides, *(setting(k, v) for k, v in values.items()),
                                                  f"run_dir={folder}"])
            check_config(trial_cfg, str(config_path))  # a drawn choice may name what no registry has
            save_config(trial_cfg, config_yaml(folder))
            value = train_trial(cfg, trial_cfg, trial, data, lambda m: log(f"  {m}"))
        except optuna.TrialPruned as e:
            study.tell(trial, state=TrialState.PRUNED)
            log(f"trial {trial.number}: pruned ({e})")
            return
        except BaseException as e:
            study.tell(trial, state=TrialState.FAIL)
            if isinstance(e, Exception):  # the error itself is the command's to tell
                log(f"trial {trial.number} failed; finished trials are kept in the study: fix the cause and rerun "
                    f"maskfold tune")
            raise
        study.tell(trial, value)
        log(f"trial {trial.number}: {cfg.tune.metric} {value:.4f}")


def run_tune(cfg: Config, config_path, overrides=(), log=print):
    """Trials until tune.trials count in the study (over every process sharing it); then the outputs."""
    require_optuna()
    space = read_space(cfg, config_path, overrides)
    require_training_ready(cfg, tuned(cfg), log)  # once, before the first trial
    data = load_run_data(cfg, log=log)  # checks, folds and the photo cache once, for every trial
    study = open_study(cfg)
    recover_dead(study, cfg.run_dir, log)
    log(f"study {study.study_name}: {counted(study)} of {cfg.tune.trials} trials finished or running")
    start = time.time()
    while counted(study) < cfg.tune.trials:
        run_one_trial(cfg, config_path, overrides, study, space, data, log)
        recover_dead(study, cfg.run_dir, log)  # another process sharing the study may have died meanwhile
    log(f"tune wall time: {time.time() - start:.1f}s")
    return write_outputs(cfg, config_path, overrides, study, log)
