"""The search space a config's `tune.params` names, and the experiment file a trial's settings make.

    tune:
      params:
        backbones.0.lr: [log, 1.0e-4, 3.0e-3]    # a number drawn on a log scale
        train.mix.prob: [float, 0.0, 0.8]        # a number drawn evenly
        train.epochs: [int, 4, 12]               # a whole number
        train.mix.kind: [choice, cutmix, vertical]

Keys are the dotted keys `--set` takes. A trial trains on the run's own photos, folds and photo cache, so keys that
would change those (data.*, folds.*, paths) cannot be tuned.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ConfigError, load_config
from pipeline.errors import MaskfoldError
from pipeline.preflight import check_config

KINDS = ("log", "float", "int", "choice")
FIXED = ("data_dir", "run_dir", "cache_dir", "data.", "folds.", "tune.", "tracking.", "external.", "pseudo.")
FORMS = "[log, low, high], [float, low, high], [int, low, high] or [choice, a, b, ...]"


@dataclass
class Param:
    key: str
    kind: str
    values: list  # low and high, or the choices

    def suggest(self, trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, self.values)
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.values)
        return trial.suggest_float(self.key, *self.values, log=self.kind == "log")


def _param(key: str, spec, source: str) -> Param:
    where = f"{source}: 'tune.params.{key}'"
    if key.startswith(FIXED):
        raise ConfigError(f"{where}: trials train on the run's own photos, folds and cache, so this key cannot be "
                          f"tuned; tune train.*, backbones.*, augment.* or seed")
    if not isinstance(spec, list) or len(spec) < 2 or spec[0] not in KINDS:
        raise ConfigError(f"{where} is {spec!r}; write {FORMS}")
    kind, values = spec[0], spec[1:]
    if kind == "choice":
        return Param(key, kind, values)
    number = int if kind == "int" else (int, float)
    if len(values) != 2 or not all(isinstance(v, number) and not isinstance(v, bool) for v in values) \
            or values[0] >= values[1] or (kind == "log" and values[0] <= 0):
        raise ConfigError(f"{where} is {spec!r}; {kind} wants a low and a high{' above 0' if kind == 'log' else ''} "
                          f"with low < high{' (whole numbers)' if kind == 'int' else ''}, e.g. [{kind}, 1, 8]")
    return Param(key, kind, values)


def read_space(cfg, config_path, overrides) -> list[Param]:
    """The params of `tune.params`, each value checked before any trial trains: the config is loaded and preflighted
    with every choice and both ends of every range (the other params at their first value), so an unknown key, a
    wrong type or a name no registry has stops `tune` at once, naming the param and the value."""
    source = str(config_path)
    if not cfg.tune.params:
        raise ConfigError(f"{source}: 'tune.params' is empty; name the keys to tune, e.g. "
                          f"tune: {{params: {{train.lr: [log, 1.0e-4, 3.0e-3]}}}}")
    space = [_param(str(k), v, source) for k, v in cfg.tune.params.items()]
    first = [setting(p.key, p.values[0]) for p in space]
    # every param at its first value is one config, checked once; then each other value in turn
    checks = [(0, space[0].values[0])] + [(i, v) for i, p in enumerate(space) for v in p.values[1:]]
    for i, value in checks:
        try:
            check_config(load_config(config_path, [*overrides, *first[:i], setting(space[i].key, value),
                                                   *first[i + 1:]]), source)
        except MaskfoldError as e:
            raise ConfigError(f"{source}: 'tune.params.{space[i].key}' value {value!r} cannot be used: {e}") from None
    for b in cfg.tune.backbones:
        cfg.backbone(b)  # names one the config has
    for k in cfg.tune.folds:
        if not 0 <= k < cfg.folds.n_splits:
            raise ConfigError(f"{source}: 'tune.folds' names fold {k}; folds.n_splits is {cfg.folds.n_splits}")
    return space


def setting(key: str, value) -> str:
    """A `--set` of one value (JSON is YAML, so numbers, words and lists read back as they were)."""
    return f"{key}={json.dumps(value)}"


def _walk(d, parts: list[str]):
    for p in parts:
        d = d[int(p)] if isinstance(d, list) else d[p]
    return d


def experiment(base: Path, resolved: dict, keys: list[str], run_dir: str, note: str) -> str:
    """A YAML experiment that extends `base` (by its absolute path, which reads the same from any folder) and names
    `keys` with their values in `resolved`; a key inside a list writes that whole list, since lists replace."""
    import yaml

    out: dict = {}
    for key in keys:
        parts = key.split(".")
        cut = next((i for i, p in enumerate(parts) if p.isdigit()), len(parts))
        parts = parts[:cut]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _walk(resolved, parts)
    out["run_dir"] = run_dir
    body = yaml.safe_dump(out, sort_keys=False, default_flow_style=None)
    return f"# {note}\nextends: {Path(base).resolve()}\n{body}"
