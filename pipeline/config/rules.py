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


# Numbers that must lie in a range whatever else the config says: (dotted key, lowest, highest, what to use).
# A bound is (value, inclusive); None leaves that side open. Keys of list items (backbones, loss terms) take `*`.
NONNEG = ((0, True), None, "0 or more")
POSITIVE = ((0, False), None, "a number above 0")
FRACTION = ((0, True), (1, False), "a number from 0 up to (not including) 1")
PROBABILITY = ((0, True), (1, True), "a probability from 0 to 1")
OPEN_FRACTION = ((0, False), (1, False), "a number between 0 and 1 (both excluded)")
AT_LEAST_1 = ((1, True), None, "at least 1")
BOUNDS = {
    "seed": ((0, True), (MAX_SEED, True), f"a whole number from 0 to {MAX_SEED}"),
    "train.epochs": AT_LEAST_1, "train.batch_size": AT_LEAST_1, "train.accum_steps": AT_LEAST_1,
    "train.num_workers": ((0, True), None, "at least 0"), "train.max_steps_per_epoch": AT_LEAST_1,
    "backbones.*.epochs": AT_LEAST_1, "backbones.*.batch_size": AT_LEAST_1,
    "ensemble.nested_splits": ((2, True), None, "at least 2 (each fitted blend's nested figure needs persons to fit "
                                                "on and others to score)"),
    "ensemble.selection_steps": AT_LEAST_1,
    "ensemble.stacking_c": ((0, False), None, "a positive number (the inverse regularisation strength, e.g. 1.0)"),
    "train.layer_decay": ((0, False), (1, True), "null (off) or a factor in (0, 1], e.g. 0.75: each layer below the "
                                                 "head trains at that fraction of the one above"),
    "data.drop_near_cut": NONNEG, "data.crop_margin": NONNEG, "data.external_cap": NONNEG,
    "backbones.*.lr": POSITIVE, "backbones.*.drop_rate": FRACTION, "backbones.*.drop_path_rate": FRACTION,
    "backbones.*.freeze_epochs": NONNEG,
    "train.lr": ((0, False), None, "a learning rate above 0, e.g. 3e-4"),
    "train.warmup_lr": NONNEG, "train.min_lr": NONNEG, "train.weight_decay": NONNEG, "train.momentum": FRACTION,
    "train.warmup_epochs": ((0, True), None, "0 (no warm-up) or more epochs"),
    "train.patience": ((1, True), None, "1 or more epochs without a better validation F1, or null to switch early "
                                        "stopping off"),
    "train.step_size": ((1, True), None, "1 or more epochs"), "train.step_gamma": ((0, False), (1, True),
                                                                                  "a factor in (0, 1], e.g. 0.5"),
    "train.plateau_patience": NONNEG, "train.plateau_factor": OPEN_FRACTION, "train.clip_grad": POSITIVE,
    "train.ema": OPEN_FRACTION, "train.sampler_power": NONNEG, "train.class_weight_power": NONNEG,
    # the years head's settings, checked whichever head is on: a later switch to years must not meet them
    "train.age_range.*": NONNEG, "train.age_sigma": ((0, False), None, "a width in years above 0, e.g. 3"),
    "train.age_l1_weight": ((0, True), None, "0 (off) or a positive weight"),
    "train.loss.*.weight": NONNEG, "train.loss.*.label_smoothing": FRACTION, "train.loss.*.gamma": NONNEG,
    "train.loss.*.alpha": PROBABILITY,
    "train.mix.prob": PROBABILITY, "train.mix.alpha": POSITIVE, "train.mix.stop_epoch": NONNEG,
    "external.min_age": NONNEG, "external.max_age": NONNEG, "external.max_persons": NONNEG,
    "tune.trials": ((1, True), None, "1 or more"), "tune.startup_trials": NONNEG, "tune.warmup_epochs": NONNEG,
    "tune.folds.*": NONNEG,
}


def _values(node, parts: list[str], key: str = ""):
    """(dotted key, value) of every value a BOUNDS key names; `*` stands for each item of a list."""
    if not parts:
        yield key, node
        return
    head, rest = parts[0], parts[1:]
    items = enumerate(node) if head == "*" else [(head, getattr(node, head))]
    for name, child in items:
        yield from _values(child, rest, f"{key}.{name}" if key else str(name))


def _inside(value, low, high) -> bool:
    return ((low is None or (value >= low[0] if low[1] else value > low[0]))
            and (high is None or (value <= high[0] if high[1] else value < high[0])))


def check_bounds(cfg: Config, source: str) -> None:
    """Every number of BOUNDS inside its range (a None, where the schema allows one, means off)."""
    for pattern, (low, high, what) in BOUNDS.items():
        for key, value in _values(cfg, pattern.split(".")):
            if value is not None and not _inside(value, low, high):
                raise ConfigError(f"{source}: '{key}' is {value}; use {what}")


def check_ranges(cfg: Config, source: str) -> None:
    check_bounds(cfg, source)
    if not cfg.tta:
        raise ConfigError(f"{source}: 'tta' is empty; name at least one view, e.g. [orig]")
    if not DEVICE.match(cfg.train.device):
        raise ConfigError(f"{source}: 'train.device' is {cfg.train.device!r}; use {DEVICES}")


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
