"""Checks a command makes before its work starts that need more than the config: whether the device it names
exists on this machine. Kept out of config loading, which imports no torch."""
from __future__ import annotations

from pipeline.config.rules import DEVICE, DEVICES
from pipeline.config.typed_yaml import ConfigError


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
