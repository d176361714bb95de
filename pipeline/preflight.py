"""Checks a command makes before its work starts that need more than the config: names that only a registry,
timm, albumentations or an installed extra can judge, and whether the device it names exists on this machine.
Kept out of config loading, which imports none of them; every command that takes --config runs check_config first.

The registries (heads, losses, optimizers, schedulers, mix kinds) and the augment steps are judged by the modules
that build them, which import torch (albumentations does too): about 4 s. A command that builds no model
(check-data, folds, audit) skips those two checks (`needs_model=False`) and answers at once; the commands that train
or predict make them before any work. Backbone names are checked by every command, from timm's names cached per
timm version (pipeline.model.timm_names), without importing timm. The commands that train also ask, before any work,
for the extras they write with, the folder the photo caches go to and the pretrained weights (require_training_ready).
"""
from __future__ import annotations

from pipeline.config import Config
from pipeline.config.rules import DEVICE, DEVICES, check_choices
from pipeline.config.typed_yaml import ConfigError, blamed_on_sets


def check_config(cfg: Config, source: str, stage_choices: dict[str, tuple] | None = None,
                 needs_model: bool = True, overrides=()) -> None:
    """Every name the config chooses is one the code has. `stage_choices` ({key: (value, allowed)}) are a stage's
    own names (the external stage's importers, say), handed in by the command, since the core never imports a
    stage. needs_model=False leaves out the checks that import torch (see the module's note). `overrides`: the
    --set assignments, which a fault in a value they gave is blamed on (as load_config blames them)."""
    try:
        _check_names(cfg, source, stage_choices, needs_model)
    except ConfigError as e:
        raise blamed_on_sets(e, source, overrides) from None


def _check_names(cfg: Config, source: str, stage_choices, needs_model: bool) -> None:
    if needs_model:
        check_choices(registry_choices(cfg), source)
    _check_tracking(cfg, source)
    from pipeline.faces.boxes import bad_chain

    if why := bad_chain(cfg.data.face_detector):
        raise ConfigError(f"{source}: 'data.face_detector' is {why}")
    _check_faces(cfg, source)
    _check_backbone_names(cfg, source)
    if needs_model:
        from pipeline.data.transforms import build_transform

        for section in ("train", "val"):
            build_transform(getattr(cfg.augment, section), cfg.data.cache_size, cfg.train.img_size,
                            f"{source}: augment.{section}")
    check_choices(stage_choices or {}, source)


def registry_choices(cfg: Config) -> dict[str, tuple]:
    # The registries the builders use are the lists of allowed names.
    from pipeline.data.mixing import MIX_KINDS
    from pipeline.model.heads import HEADS
    from pipeline.model.losses import LOSSES
    from pipeline.model.optim import OPTIMIZERS, SCHEDULERS
    from pipeline.tracking import TRACKERS

    return {
        "train.optimizer": (cfg.train.optimizer, tuple(OPTIMIZERS)),
        "train.scheduler": (cfg.train.scheduler, SCHEDULERS),
        "train.head": (cfg.train.head, tuple(HEADS)),
        "train.mix.kind": (cfg.train.mix.kind, MIX_KINDS),
        "tracking.kind": (cfg.tracking.kind, tuple(TRACKERS)),
        **{f"train.loss.{i}.name": (term.name, tuple(LOSSES)) for i, term in enumerate(cfg.train.loss)},
    }


def _check_tracking(cfg: Config, source: str) -> None:
    """A tracker whose extra is missing fails every command at once, with the pip line (before any epoch)."""
    from pipeline.tracking import missing_extra

    if why := missing_extra(cfg.tracking.kind):
        raise ConfigError(f"{source}: 'tracking.kind' is {cfg.tracking.kind} but {why}")


def require_tracking_store(cfg: Config, source: str) -> None:
    """The commands that track open the store before any work: refused here with its own reason and the fix."""
    from pipeline.tracking import store_problem

    if why := store_problem(cfg):
        raise ConfigError(f"{source}: 'tracking.kind' is {cfg.tracking.kind} but {why}")


def _check_faces(cfg: Config, source: str) -> None:
    """A face crop needs dlib: refused before any work, not at the first photo."""
    from pipeline.faces.landmarks import missing_extra

    if cfg.data.crop == "face" and (why := missing_extra()):
        raise ConfigError(f"{source}: 'data.crop' is face but {why}, or set data.crop: none")


def _check_backbone_names(cfg: Config, source: str) -> None:
    """Every backbone is a timm model (a pretrained tag such as `.a1_in1k` allowed), with close names suggested."""
    from pipeline.model.timm_names import backbone_name_problem

    for i, b in enumerate(cfg.backbones):
        if b.kind != "timm":  # a face member is no timm model (pipeline.train.face_job)
            continue
        if ":" in b.name:  # `hf-hub:org/name` is resolved by timm when the model is made
            continue
        if why := backbone_name_problem(b.name):
            raise ConfigError(f"{source}: 'backbones.{i}.name' {b.name!r} {why}")


def require_training_ready(cfg: Config, backbones, log=print) -> None:
    """What a training command checks before any work, past the config: the tensorboard extra where
    train.tensorboard is on, the folder the photo caches go to, and the pretrained weights of the backbones it
    trains (checked once here, not retried by each pair)."""
    from pipeline.model.weights import require_weights
    from pipeline.storage import require_folder
    from pipeline.train.board import require_tensorboard

    require_tensorboard(cfg)  # not after the first epoch
    require_folder(cfg.cache_dir, "cache_dir")
    require_weights([b for b in backbones if b.kind == "timm"], log)  # a face member's ship with the `faces` extra


def require_device(name: str, where: str) -> None:
    """Refuse a device this machine lacks; `where` says where it was set (`--device cuda`, `'train.device' is 'cuda'`)."""
    if not DEVICE.match(name):
        raise ConfigError(f"{where}: use {DEVICES}")
    if not name.startswith("cuda"):
        return
    import torch

    fix = "use auto or cpu, or run where torch sees a GPU"
    if not torch.cuda.is_available():
        raise ConfigError(f"{where}: this machine has no CUDA device (torch.cuda.is_available() is false); {fix}")
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"{where}: this machine has {torch.cuda.device_count()} CUDA device(s) (0-based); {fix}")


def require_config_device(cfg) -> None:
    require_device(cfg.train.device, f"'train.device' is {cfg.train.device!r}")
