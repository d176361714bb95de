"""Typed configuration.

A YAML file may name a base with ``extends:``; dicts merge key by key, lists replace. Every key is checked
against the dataclasses below, so a typo is an error naming the key and the file instead of a silently
ignored setting (the most common competition-code bug).
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

from pipeline.config.rules import check_age_cuts, check_choices, check_ranges
from pipeline.config.schema import (
    NOT_IN_PAIR_HASH,
    AugmentConfig,
    BackboneConfig,
    Config,
    DataConfig,
    EnsembleConfig,
    ExternalConfig,
    FoldsConfig,
    LossTerm,
    MixConfig,
    PseudoConfig,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
)
from pipeline.config.typed_yaml import ConfigError, apply_set, blamed_on_sets, build, read_yaml
from pipeline.labels import TASKS

__all__ = ["AugmentConfig", "BackboneConfig", "Config", "ConfigError", "DataConfig", "EnsembleConfig",
           "ExternalConfig", "FoldsConfig", "LossTerm", "MixConfig", "NOT_IN_PAIR_HASH", "PseudoConfig",
           "TrackingConfig", "TrainConfig", "TuneConfig",
           "config_from_dict",
           "load_config", "save_config"]


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    path = Path(path)
    data = read_yaml(path, Config)
    for s in overrides:
        apply_set(data, s, Config)
    cfg = build(Config, data, "", str(path))
    if cfg.run_dir is None:
        cfg.run_dir = str(Path("runs") / path.stem)
    try:
        _check_places(cfg, str(path))
        _validate(cfg, str(path))
    except ConfigError as e:
        raise blamed_on_sets(e, str(path), overrides) from None
    return cfg


def _check_places(cfg: Config, source: str) -> None:
    """An empty folder name would mean the working folder: a run's files would land among the project's own."""
    for key in ("data_dir", "run_dir", "cache_dir"):
        if not getattr(cfg, key).strip():
            raise ConfigError(f"{source}: '{key}' is empty; name a folder (relative paths are read from the working "
                              f"directory, so '.' is the working folder itself)")


def load_choices(cfg: Config) -> dict[str, tuple]:
    """The names checked at load, {key: (value, allowed)} (the docs' config reference lists them too)."""
    return {
        "train.amp": (cfg.train.amp, AMP_MODES),
        "ensemble.method": (cfg.ensemble.method, ENSEMBLE_METHODS),
        "data.crop": (cfg.data.crop, CROPS),
        "external.landmarks": (cfg.external.landmarks, LANDMARK_SOURCES),
        "ensemble.test_from": (cfg.ensemble.test_from, TEST_FROM),
        "tune.pruner": (cfg.tune.pruner, TUNE_PRUNERS),
        "tune.metric": (cfg.tune.metric, TUNE_METRICS),
        "folds.same_face": (cfg.folds.same_face, SAME_FACE_MODES),
        **{f"backbones.{i}.kind": (b.kind, BACKBONE_KINDS) for i, b in enumerate(cfg.backbones)},
    }


def _validate(cfg: Config, source: str) -> None:
    """Types and cross-field rules only: the names that need a registry, timm, albumentations or an installed
    extra are checked by the commands' preflight (pipeline.preflight), so loading a config imports none of them."""
    check_choices(load_choices(cfg), source)
    if not cfg.backbones:
        raise ConfigError(f"{source}: 'backbones' is empty; name at least one timm model")
    for i, b in enumerate(cfg.backbones):
        if b.kind == "face_embedding":
            _network_keys_unset(b, f"backbones.{i}", source)
    names = cfg.backbone_names()
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: 'backbones' names a model twice: {names}")
    for key, size in [("data.cache_size", cfg.data.cache_size), ("train.img_size", cfg.train.img_size)] + [
        (f"backbones.{i}.img_size", b.img_size) for i, b in enumerate(cfg.backbones) if b.img_size
    ]:
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"{source}: '{key}' must be [width, height], got {size}")
    check_age_cuts(cfg, source)
    check_ranges(cfg, source)
    if cfg.folds.n_splits < 2:
        raise ConfigError(f"{source}: 'folds.n_splits' must be at least 2")
    if not 0 < cfg.folds.same_face_threshold < 2:
        raise ConfigError(f"{source}: 'folds.same_face_threshold' is {cfg.folds.same_face_threshold}; a face-embedding "
                          f"distance between 0 and 2, e.g. 0.35 (dlib's same-person threshold is 0.6)")
    _check_techniques(cfg, source)
    _check_age_head(cfg, source)
    ext = cfg.external
    if ext.max_age is not None and ext.max_age < ext.min_age:
        raise ConfigError(f"{source}: 'external.max_age' ({ext.max_age}) is below 'external.min_age' ({ext.min_age}); "
                          f"use null (no upper age) or an age from {ext.min_age} up")
    if not 0 < cfg.pseudo.threshold <= 1:
        raise ConfigError(f"{source}: 'pseudo.threshold' is {cfg.pseudo.threshold}; a probability in (0, 1], e.g. 0.9")
    for t in cfg.tta:
        if t not in ("orig", "hflip") and not (t.startswith("crop") and t[4:].isdigit() and 50 <= int(t[4:]) < 100):
            raise ConfigError(f"{source}: 'tta' entry {t!r}; use orig, hflip or cropNN (50-99)")


def _check_techniques(cfg: Config, source: str) -> None:
    """Numbers that would train something other than what they say: each error names the key and the fix."""
    t, d = cfg.train, cfg.data
    if len(t.head_weights) != len(TASKS) or min(t.head_weights) < 0 or sum(t.head_weights) <= 0:
        raise ConfigError(f"{source}: 'train.head_weights' is {t.head_weights}; give {len(TASKS)} non-negative loss "
                          f"weights, one per head ({', '.join(name for name, _ in TASKS)}), e.g. [1.0, 1.0, 1.0]")
    if sum(term.weight for term in t.loss) <= 0:  # a loss of zero trains nothing, silently
        raise ConfigError(f"{source}: 'train.loss' has no term with a weight above 0; give at least one, e.g. "
                          f"[{{name: ce, weight: 1.0}}]")
    gap = min(d.age_cuts[0], d.age_cuts[1] - d.age_cuts[0])
    for key in ("drop_near_cut", "soften_near_cut"):
        if not 0 <= getattr(d, key) < gap:
            raise ConfigError(f"{source}: 'data.{key}' is {getattr(d, key)}; use 0 (off) or a number of years below "
                              f"each cut, less than {gap} so that it stays inside one age band")
    for i, b in enumerate(cfg.backbones):
        lr = cfg.resolved(b)["lr"]
        if t.min_lr >= lr:
            key = f"backbones.{i}.lr" if b.lr is not None else "train.lr"
            raise ConfigError(f"{source}: 'train.min_lr' ({t.min_lr}) is not below '{key}' ({lr}); the schedule would "
                              f"never lower the lr: set train.min_lr below it (default 0)")


AGE_HEADS = ("bands", "years")


def _network_keys_unset(b: BackboneConfig, key: str, source: str) -> None:
    """A face member trains no network: a network's setting on it would be ignored in silence, so it is refused."""
    default = BackboneConfig(name=b.name, kind=b.kind)
    for f in dataclasses.fields(BackboneConfig):
        if f.name not in ("name", "kind") and getattr(b, f.name) != getattr(default, f.name):
            raise ConfigError(f"{source}: '{key}.{f.name}' is set, but a face_embedding member trains no network "
                              f"(dlib's embeddings and a head per fold): remove it, or make it a timm backbone")


def _check_age_head(cfg: Config, source: str) -> None:
    """train.age_head and its settings: years needs the three heads and a grid of ages that spans both cuts."""
    t, cuts = cfg.train, cfg.data.age_cuts
    if t.age_head not in AGE_HEADS:
        raise ConfigError(f"{source}: 'train.age_head' is {t.age_head!r}; choose one of {', '.join(AGE_HEADS)}")
    if t.age_head == "bands":
        return
    if t.head != "multi":
        raise ConfigError(f"{source}: 'train.age_head' is years but 'train.head' is {t.head!r}; an age distribution "
                          f"is one of the three heads: set train.head: multi, or train.age_head: bands")
    if cfg.data.soften_near_cut:
        raise ConfigError(f"{source}: 'data.soften_near_cut' is {cfg.data.soften_near_cut} with train.age_head: years, "
                          f"whose Gaussian over ages already spreads a label across a cut; set data.soften_near_cut: 0")
    lo, hi = (t.age_range + [None, None])[:2]
    if len(t.age_range) != 2 or not 0 <= lo < cuts[0] or not cuts[1] <= hi <= 150:
        raise ConfigError(f"{source}: 'train.age_range' is {t.age_range}; give [first, last] whole years with "
                          f"first below {cuts[0]} and last from {cuts[1]} up to 150, e.g. [0, 100]")


AMP_MODES = ("bf16", "fp16", "none")
BACKBONE_KINDS = ("timm", "face_embedding")  # a network trained here; face embeddings with a head per fold
SAME_FACE_MODES = ("group", "warn", "off")  # folds.same_face (pipeline.faces.identity)
ENSEMBLE_METHODS = ("soft", "hard")
CROPS = ("none", "face")
LANDMARK_SOURCES = ("dlib", "file")
# which models predict the eval set; auto: the folds, and the refits too where the run has them
TEST_FROM = ("folds", "refit", "both", "auto")
TUNE_PRUNERS = ("median", "none")
TUNE_METRICS = ("val_f1", "val_acc", "val_loss")  # metrics.csv columns; a loss is minimised, the others maximised


def save_config(cfg: Config, path: str | Path, held: list | None = None) -> None:
    """held: the output set it belongs to, where it lands with one (pipeline.switch.one_unit)."""
    from pipeline.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False), held)


def config_from_dict(data: dict, source: str = "checkpoint") -> Config:
    return build(Config, data, "", source)
