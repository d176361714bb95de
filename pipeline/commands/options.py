"""--config and --set: every command that works on a run loads its config, runs the preflight, checks the run's
folder and logs itself to <run_dir>/log.txt the same way."""
from __future__ import annotations

import functools
import shlex
from pathlib import Path

import click

from pipeline.config import load_config
from pipeline.io import run_log
from pipeline.layout import log_txt
from pipeline.outcome import logged_outcome
from pipeline.storage import require_folder


def config_options(f=None, *, stage_choices=None, needs_model=True, tracked=False):
    """--config and --set, the config loaded and preflighted (`stage_choices(cfg)`: a stage's own names to check;
    needs_model=False: a command that builds no model skips the checks that import torch; `tracked`: the command
    logs to the tracking store, which must open now), the run's folder checked, and the command logged to
    <run_dir>/log.txt."""
    if f is None:
        return functools.partial(config_options, stage_choices=stage_choices, needs_model=needs_model,
                                 tracked=tracked)

    @click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                  help="YAML config, e.g. configs/demo.yaml.")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override a config key, e.g. --set train.epochs=3 (repeatable).")
    @functools.wraps(f)
    def wrapper(config_path, overrides, **kw):
        from pipeline.preflight import check_config, require_tracking_store

        cfg = load_config(config_path, overrides)
        source = str(Path(config_path))
        check_config(cfg, source, stage_choices and stage_choices(cfg), needs_model, overrides)
        require_folder(cfg.run_dir, "run_dir")
        if tracked:
            require_tracking_store(cfg, source)
        log = log_txt(cfg.run_dir)
        with run_log(log, _command_line(config_path, overrides, kw)), logged_outcome(log, cfg.run_dir):
            return f(cfg, **kw)

    return wrapper


def _command_line(config_path, overrides, params: dict) -> str:
    """The command as a user would type it, for the first line of its entry in <run_dir>/log.txt."""
    words = ["maskfold", *click.get_current_context().command_path.split()[1:], "--config", config_path]
    words += [w for s in overrides for w in ("--set", s)]
    for k, v in params.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            words.append(flag)
        elif v not in (None, False, ()):
            words += [w for item in (v if isinstance(v, tuple) else (v,)) for w in (flag, str(item))]
    return shlex.join(words)
