"""Typed configuration.

A YAML file may name a base with ``extends:``; dicts merge key by key, lists replace. Every key is checked
against the dataclasses below, so a typo is an error naming the key and the file instead of a silently
ignored setting (the most common competition-code bug).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class FoldsConfig:
    n_splits: int = 5


@dataclass
class DataConfig:
    age_cuts: list[int] = field(default_factory=lambda: [30, 60])
    # People whose age lies this many years below a cut (3: ages 27-29 and 57-59) are left out of training
    # folds only; validation keeps them so out-of-fold F1 stays honest.
    drop_near_cut: int = 0
    label_fixes: str | None = "configs/label_fixes.csv"
    cache_size: list[int] = field(default_factory=lambda: [192, 256])  # width, height of the decoded cache
    crop: str = "none"  # none | face: crop every photo to the detected face box (plus margin)
    crop_margin: float = 0.6
    use_external: bool = False  # add <run_dir>/external pseudo-persons to every training fold
    external_cap: int = 0  # at most this many external persons (0: all)


@dataclass
class BackboneConfig:
    name: str
    pretrained: bool = False
    weights: str | None = None  # local weights file (timm checkpoint or state dict); implies pretrained
    img_size: list[int] | None = None  # width, height; falls back to train.img_size
    batch_size: int | None = None
    lr: float | None = None
    epochs: int | None = None
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    freeze_epochs: int = 0  # train only the classifier head for this many epochs first


@dataclass
class LossTerm:
    name: str = "ce"  # ce | focal | f1
    weight: float = 1.0
    label_smoothing: float = 0.0
    gamma: float = 2.0
    alpha: float | None = None


@dataclass
class MixConfig:
    kind: str = "none"  # none | cutmix | vertical | elder_half | mixup
    prob: float = 0.5
    alpha: float = 1.0
    stop_epoch: int | None = None  # no mixing from this epoch on (0-based)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    img_size: list[int] = field(default_factory=lambda: [288, 384])
    lr: float = 3e-4
    optimizer: str = "adamw"  # adam | adamw | sgd
    weight_decay: float = 0.01
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine | step | plateau | none
    warmup_epochs: float = 1.0
    step_size: int = 3
    step_gamma: float = 0.5
    plateau_patience: int = 1
    plateau_factor: float = 0.5
    accum_steps: int = 1
    clip_grad: float | None = None
    amp: str = "bf16"  # bf16 | fp16 | none; used on CUDA only
    channels_last: bool = True
    compile: bool = False
    ema: float | None = None  # EMA decay, e.g. 0.999
    patience: int | None = None  # early stopping on validation macro F1
    num_workers: int = 4
    sampler_power: float = 0.0  # 0: natural frequencies, 1: every class drawn equally often
    class_weight_power: float = 0.0  # loss weight per class = frequency ** -power (normalised)
    loss: list[LossTerm] = field(default_factory=lambda: [LossTerm()])
    mix: MixConfig = field(default_factory=MixConfig)
    tensorboard: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    max_steps_per_epoch: int | None = None  # cap for smoke runs


@dataclass
class AugmentConfig:
    # Each step: {name: <albumentations transform>, ...its arguments}. Applied to the cached uint8 photo;
    # a final resize to the backbone's image size and normalisation are added by the pipeline.
    train: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)


@dataclass
class EnsembleConfig:
    method: str = "soft"  # soft | hard
    search_weights: bool = True
    tune_offsets: bool = True
    nested_splits: int = 2
    # Use the variant (equal weights, weights, weights + offsets) with the best honest OOF F1, fitted ones judged
    # by their nested figure; false: always apply every enabled fit.
    choose_by_nested: bool = True


@dataclass
class ExternalConfig:
    source: str = "utkface"  # utkface | fairface | csv
    path: str | None = None  # folder (utkface), or table (fairface, csv)
    images_dir: str | None = None  # where a table's file paths point; default: the table's folder
    min_age: int = 60
    max_age: int | None = None
    balance_gender: bool = True
    max_persons: int = 0  # 0: all
    landmarks: str = "dlib"  # dlib | file (landmarks.json beside the table, as the demo pool ships)
    templates: str | None = None  # MaskTheFace folder holding masks/masks.cfg; none: procedural masks only


@dataclass
class Config:
    data_dir: str = "data"
    run_dir: str | None = None
    seed: int = 42
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    backbones: list[BackboneConfig] = field(default_factory=lambda: [BackboneConfig(name="efficientnet_b0")])
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tta: list[str] = field(default_factory=lambda: ["orig"])  # orig | hflip | crop<percent>, e.g. crop90
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    external: ExternalConfig = field(default_factory=ExternalConfig)

    def backbone(self, name: str) -> BackboneConfig:
        for b in self.backbones:
            if b.name == name:
                return b
        raise ConfigError(f"backbone '{name}' is not in the config (have: {', '.join(self.backbone_names())})")

    def backbone_names(self) -> list[str]:
        return [b.name for b in self.backbones]

    def resolved(self, backbone: BackboneConfig) -> dict:
        """The training settings one backbone actually uses: its own values, else train.*."""
        t = self.train
        return {
            "img_size": list(backbone.img_size or t.img_size),
            "batch_size": backbone.batch_size or t.batch_size,
            "lr": backbone.lr if backbone.lr is not None else t.lr,
            "epochs": backbone.epochs if backbone.epochs is not None else t.epochs,
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def pair_hash(self, backbone: str) -> str:
        """Hash of the settings that change one backbone's weights; a finished pair with the same hash is skipped.

        Paths are left out (the photos, labels and folds they lead to are identified by content, see
        pipeline.layout), and so is what does not change the weights: where and how fast it runs, logging, TTA
        (predictions are redone when only TTA changes) and the ensemble.
        """
        d = self.to_dict()
        d["backbones"] = [dataclasses.asdict(self.backbone(backbone))]
        for k in NOT_IN_PAIR_HASH:
            section, _, key = k.rpartition(".")
            (d[section] if section else d).pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


NOT_IN_PAIR_HASH = ("data_dir", "run_dir", "tta", "ensemble", "data.label_fixes", "external.path",
                    "external.images_dir", "external.templates", "train.num_workers", "train.device",
                    "train.tensorboard")


# ---------------------------------------------------------------- checking and building


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(tp, value, key: str, source: str):
    """Return value converted to tp, or raise a ConfigError naming key and source."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(a, value, key, source)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key, source)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_check_value(item, v, f"{key}.{i}", source) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: '{key}' has unsupported type {_type_name(tp)}")


def _build(cls, data: dict, prefix: str, source: str, partial: bool = False):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in data:
        if k not in hints:
            where = f"{prefix}.{k}" if prefix else k
            raise ConfigError(f"{source}: unknown key '{where}' (known here: {', '.join(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        where = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in data:
            kwargs[f.name] = _check_value(hints[f.name], data[f.name], where, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and not partial:
            raise ConfigError(f"{source}: missing required key '{where}'")
    if partial:
        return kwargs
    return cls(**kwargs)


def _check_partial(cls, data: dict, prefix: str, source: str) -> None:
    """Check one file's keys and types before merging, so an error names the file it came from."""
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        where = f"{prefix}.{k}" if prefix else k
        if k not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{source}: unknown key '{where}' (known here: {known})")
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, dict):
            _check_partial(tp, v, where, source)
        else:
            _check_value(tp, v, where, source)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _Loader(yaml.SafeLoader):
    """YAML as a user writes it: `1e-4` and `3E5` are numbers (YAML 1.1 wants `1.0e-4` and reads `1e-4` as text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path, chain: tuple = ()) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in chain:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    try:
        data = _yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    parent = data.pop("extends", None)
    _check_partial(Config, data, "", str(path))
    if parent is None:
        return data
    base = _read_yaml((path.parent / parent), chain + (path.resolve(),))
    return _merge(base, data)


def _apply_set(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set '{assignment}': expected dotted.key=value")
    key, raw = assignment.split("=", 1)
    try:
        value = _yaml(raw)
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(node, p, key)]
        else:
            if p not in node:
                node[p] = {}
            node = node[p]
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    else:
        node[last] = value
    _check_partial(Config, data, "", f"--set {assignment}")


def _list_index(node: list, p: str, key: str) -> int:
    if not p.isdigit() or int(p) >= len(node):
        raise ConfigError(f"--set {key}: '{p}' is not an index of a list of {len(node)} items")
    return int(p)


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    path = Path(path)
    data = _read_yaml(path)
    for s in overrides:
        _apply_set(data, s)
    cfg = _build(Config, data, "", str(path))
    if cfg.run_dir is None:
        cfg.run_dir = str(Path("runs") / path.stem)
    _validate(cfg, str(path))
    return cfg


def _validate(cfg: Config, source: str) -> None:
    choices = {
        "train.optimizer": (cfg.train.optimizer, ("adam", "adamw", "sgd")),
        "train.scheduler": (cfg.train.scheduler, ("cosine", "step", "plateau", "none")),
        "train.amp": (cfg.train.amp, ("bf16", "fp16", "none")),
        "train.mix.kind": (cfg.train.mix.kind, ("none", "cutmix", "vertical", "elder_half", "mixup")),
        "ensemble.method": (cfg.ensemble.method, ("soft", "hard")),
        "data.crop": (cfg.data.crop, ("none", "face")),
        "external.source": (cfg.external.source, ("utkface", "fairface", "csv")),
        "external.landmarks": (cfg.external.landmarks, ("dlib", "file")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{source}: '{key}' is {value!r}; choose one of {', '.join(allowed)}")
    for i, term in enumerate(cfg.train.loss):
        if term.name not in ("ce", "focal", "f1"):
            raise ConfigError(f"{source}: 'train.loss.{i}.name' is {term.name!r}; choose ce, focal or f1")
    if not cfg.backbones:
        raise ConfigError(f"{source}: 'backbones' is empty; name at least one timm model")
    names = cfg.backbone_names()
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: 'backbones' names a model twice: {names}")
    for key, size in [("data.cache_size", cfg.data.cache_size), ("train.img_size", cfg.train.img_size)] + [
        (f"backbones.{i}.img_size", b.img_size) for i, b in enumerate(cfg.backbones) if b.img_size
    ]:
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"{source}: '{key}' must be [width, height], got {size}")
    if sorted(cfg.data.age_cuts) != cfg.data.age_cuts or len(cfg.data.age_cuts) != 2:
        raise ConfigError(f"{source}: 'data.age_cuts' must be two increasing ages, got {cfg.data.age_cuts}")
    if cfg.folds.n_splits < 2:
        raise ConfigError(f"{source}: 'folds.n_splits' must be at least 2")
    _check_backbone_names(cfg, source)
    from pipeline.transforms import build_transform  # albumentations loads only when a config is checked

    for section in ("train", "val"):
        build_transform(getattr(cfg.augment, section), cfg.data.cache_size, cfg.train.img_size, f"{source}: augment.{section}")
    for t in cfg.tta:
        if t not in ("orig", "hflip") and not (t.startswith("crop") and t[4:].isdigit() and 50 <= int(t[4:]) < 100):
            raise ConfigError(f"{source}: 'tta' entry {t!r}; use orig, hflip or cropNN (50-99)")


def _check_backbone_names(cfg: Config, source: str) -> None:
    """Every backbone is a timm model (a pretrained tag such as `.a1_in1k` allowed), with close names suggested."""
    import difflib

    import timm
    from timm.models import is_model

    for i, b in enumerate(cfg.backbones):
        if ":" in b.name or is_model(b.name):  # `hf-hub:org/name` is resolved by timm when the model is made
            continue
        close = difflib.get_close_matches(b.name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ConfigError(f"{source}: 'backbones.{i}.name' {b.name!r} is not a timm model{hint}")


def save_config(cfg: Config, path: str | Path) -> None:
    from pipeline.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def config_from_dict(data: dict, source: str = "checkpoint") -> Config:
    return _build(Config, data, "", source)
