"""Cross-field and range rules checked when a config loads: values of the right type that would still crash a run
or train something other than what they say. Each error names the key and the fix. Imports no heavy library: a
check that needs torch (is there a CUDA device?) is a preflight step of the commands (pipeline.preflight).
"""
from __future__ import annotations

import re

from pipeline.config.schema import Config
from pipeline.config.typed_yaml import ConfigError
from pipeline.labels import MAX_AGE

DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICES = "auto, cpu, cuda or cuda:N"
MAX_SEED = 2**32 - 1  # numpy's seeds


def check_ranges(cfg: Config, source: str) -> None:
    t, e = cfg.train, cfg.ensemble
    at_least = [("train.epochs", t.epochs, 1), ("train.batch_size", t.batch_size, 1),
                ("train.accum_steps", t.accum_steps, 1), ("train.num_workers", t.num_workers, 0),
                ("ensemble.nested_splits", e.nested_splits, 2), ("ensemble.selection_steps", e.selection_steps, 1)]
    for i, b in enumerate(cfg.backbones):
        at_least += [(f"backbones.{i}.{k}", getattr(b, k), 1) for k in ("epochs", "batch_size")
                     if getattr(b, k) is not None]
    if t.max_steps_per_epoch is not None:
        at_least.append(("train.max_steps_per_epoch", t.max_steps_per_epoch, 1))
    for key, value, low in at_least:
        if value < low:
            why = " (each fitted blend's nested figure needs persons to fit on and others to score)" \
                if key == "ensemble.nested_splits" else ""
            raise ConfigError(f"{source}: '{key}' is {value}; use at least {low}{why}")
    if not cfg.tta:
        raise ConfigError(f"{source}: 'tta' is empty; name at least one view, e.g. [orig]")
    if not DEVICE.match(t.device):
        raise ConfigError(f"{source}: 'train.device' is {t.device!r}; use {DEVICES}")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"{source}: 'seed' is {cfg.seed}; use a whole number from 0 to {MAX_SEED}")
    if not e.stacking_c > 0:
        raise ConfigError(f"{source}: 'ensemble.stacking_c' is {e.stacking_c}; use a positive number (the inverse "
                          f"regularisation strength, e.g. 1.0)")


def check_age_cuts(cfg: Config, source: str) -> None:
    cuts = cfg.data.age_cuts
    if len(cuts) != 2 or not 0 < cuts[0] < cuts[1] < MAX_AGE:
        raise ConfigError(f"{source}: 'data.age_cuts' must be two increasing ages between 1 and {MAX_AGE - 1}, "
                          f"got {cuts}; e.g. [30, 60]")


def check_choices(choices: dict[str, tuple], source: str | None = None) -> None:
    """Each key's value must be one of its allowed names: {key: (value, allowed)}."""
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}'{key}' is {value!r}; choose one of {', '.join(allowed)}")
