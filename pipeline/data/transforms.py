"""Albumentations pipelines named in config.

Steps are {name: <albumentations class>, ...arguments}. CenterCrop/RandomCrop sizes given as fractions (<= 1) are
read as fractions of the cache size, so one config serves any cache size. The final resize to the backbone's
image size is appended here; normalisation happens on the device (see pipeline.model.inference.to_model_input), because a
uint8 batch is a quarter of the bytes of a float one.
"""
from __future__ import annotations

import inspect

import albumentations as A

from pipeline.config.typed_yaml import ConfigError

# Lambda takes functions, which YAML cannot give; Normalize and ToTensorV2 are refused below with their own reason.
NOT_FROM_CONFIG = {"Lambda"}
FRACTION_KEYS = {"CenterCrop": ("height", "width"), "RandomCrop": ("height", "width")}


def build_transform(steps: list[dict], cache_size: tuple[int, int], img_size: tuple[int, int], where: str = "augment"):
    cw, ch = cache_size
    ops = []
    for i, step in enumerate(steps):
        step = dict(step)
        name = step.pop("name", None)
        if name in ("Normalize", "ToTensorV2"):
            raise ConfigError(f"{where}.{i}: {name} is applied by the pipeline itself (per backbone); remove it")
        cls = getattr(A, name, None) if isinstance(name, str) and not name.startswith("_") else None
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)) or name in NOT_FROM_CONFIG:
            raise ConfigError(f"{where}.{i}: {name!r} is not an albumentations transform that a config can name "
                              f"(for example HorizontalFlip, Affine, ColorJitter)")
        known = inspect.signature(cls).parameters
        unknown = [k for k in step if k not in known]
        if unknown:  # albumentations only warns about these; a typo must not pass silently
            raise ConfigError(f"{where}.{i}: {name} has no argument(s) {', '.join(unknown)}")
        for key, full in zip(FRACTION_KEYS.get(name, ()), (ch, cw)):
            if isinstance(step.get(key), float) and step[key] <= 1:
                step[key] = max(1, round(step[key] * full))
        try:
            ops.append(cls(**step))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}.{i}: {name} rejects its arguments {step}: {e}") from None
    w, h = img_size
    ops.append(A.Resize(height=h, width=w, interpolation=1))
    return A.Compose(ops)
