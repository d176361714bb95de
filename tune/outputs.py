"""What a study leaves: tune/trials.csv, tune/best.yaml and Optuna's plots (PNG through matplotlib, offline)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config import load_config
from pipeline.io import atomic_path, atomic_write_csv, atomic_write_text
from pipeline.layout import config_yaml, tune_best_yaml, tune_plot, tune_trials_csv
from tune.space import experiment

PLOTS = {"history": "plot_optimization_history", "importances": "plot_param_importances",
         "epochs": "plot_intermediate_values"}


def trials_table(study) -> pd.DataFrame:
    """One row per trial: number, state, value, its settings, epochs reported, seconds, and where it trained."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value, **t.params,
                     "epochs": len(t.intermediate_values), "seconds": seconds and round(seconds, 1),
                     "retry_of": t.user_attrs.get("retry_of"), "run_dir": t.user_attrs.get("run_dir")})
    return pd.DataFrame(rows)


def write_best(cfg, config_path, overrides, study) -> Path | None:
    """best.yaml: the tuned config plus the `--set`s tune ran with and the best trial's settings."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    folder = best.user_attrs["run_dir"]
    resolved = load_config(config_yaml(folder)).to_dict()
    keys = [s.split("=", 1)[0] for s in overrides if not s.startswith("run_dir=")] + list(best.params)
    note = (f"The best trial ({best.number}, {cfg.tune.metric} {best.value:.4f}) of study {study.study_name}: "
            f"train it as any experiment (maskfold folds, train-all, ensemble --config this file).")
    out = tune_best_yaml(cfg.run_dir)
    atomic_write_text(out, experiment(Path(config_path), resolved, list(dict.fromkeys(keys)),
                                      f"{Path(cfg.run_dir)}-best", note))
    load_config(out)  # it must read as an ordinary experiment
    return out


def write_plots(cfg, study, log) -> None:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    for kind, fn in PLOTS.items():
        path = tune_plot(cfg.run_dir, kind)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                ax = getattr(plots, fn)(study)
            fig = (ax if not hasattr(ax, "__len__") else ax.flat[0]).figure
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        except Exception as e:  # noqa: BLE001 - a plot that cannot be drawn (too few trials) is only a note
            log(f"{path.name} not drawn: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def write_outputs(cfg, config_path, overrides, study, log) -> pd.DataFrame:
    table = trials_table(study)
    atomic_write_csv(table, tune_trials_csv(cfg.run_dir), float_format="%.6g")
    best = write_best(cfg, config_path, overrides, study)
    write_plots(cfg, study, log)
    shown = table.drop(columns=["run_dir"]).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    log(f"\ntrials ({tune_trials_csv(cfg.run_dir)}):\n{shown}")
    if best is not None:
        log(f"best trial {study.best_trial.number}: {cfg.tune.metric} {study.best_value:.4f}; experiment file {best}")
    return table
