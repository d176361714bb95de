"""Class algebra: the 18 classes as mask state x gender x age band, and the names of each part.

label = mask*6 + gender*3 + age band. Numpy only (no pandas, no torch), so heads, losses, metrics, mixing and
samplers can take NUM_CLASSES from here without loading the table readers.
"""
from __future__ import annotations

import numpy as np

PHOTOS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
MASKS = ("wear", "incorrect", "normal")
GENDERS = ("male", "female")
NUM_CLASSES = 18
AGE_BANDS = 3
# The three tasks a label combines, in label order: label = mask*6 + gender*3 + age band, so a (N, 18) array
# reshaped to (N, 3, 2, 3) has one axis per task.
TASKS = (("mask", len(MASKS)), ("gender", len(GENDERS)), ("age", AGE_BANDS))
TASK_SIZES = tuple(n for _, n in TASKS)  # label = mask*6 + gender*3 + age band: an 18-class axis is a 3x2x3 cube
MAX_AGE = 120


def age_band_names(cuts=(30, 60)) -> tuple[str, str, str]:
    """Names of the three age bands for the given cuts: ('<30', '30-59', '60+') for the default ones."""
    return (f"<{cuts[0]}", f"{cuts[0]}-{cuts[1] - 1}", f"{cuts[1]}+")


def class_names(cuts=(30, 60)) -> list[str]:
    """The 18 class names in label order, e.g. 'wear/M/<30'."""
    return [f"{m}/{g[0].upper()}/{a}" for m in MASKS for g in GENDERS for a in age_band_names(cuts)]


def photo_mask(photo: str) -> str:
    return "wear" if photo.startswith("mask") else ("incorrect" if photo == "incorrect_mask" else "normal")


def mask_photo(mask: str) -> str:
    """The photo name that stands for a mask state (the inverse of photo_mask): mask1, incorrect_mask, normal."""
    return {"wear": "mask1", "incorrect": "incorrect_mask", "normal": "normal"}[mask]


def age_band(age, cuts=(30, 60)):
    """0: below the first cut, 1: between, 2: at or above the second. Works on scalars and arrays."""
    return np.searchsorted(np.asarray(cuts), np.asarray(age), side="right")


def band_age(band: int, cuts=(30, 60)) -> int:
    """An age well inside an age band (15, 45, 70 for the default cuts), for photos whose age is unknown and only
    the band was predicted: far from the cuts, so data.drop_near_cut never drops them."""
    return (cuts[0] // 2, (cuts[0] + cuts[1]) // 2, cuts[1] + 10)[band]


def encode_label(mask, gender, band):
    """mask*6 + gender*3 + age band, from names or integer codes."""
    m = MASKS.index(mask) if isinstance(mask, str) else mask
    g = GENDERS.index(gender) if isinstance(gender, str) else gender
    return m * 6 + g * 3 + band


def decode_label(label):
    """(mask, gender, age band) integer codes of one or many labels."""
    label = np.asarray(label)
    return label // 6, (label // 3) % 2, label % 3


def task_sums(values) -> list[np.ndarray]:
    """Per-class values over a last axis of 18 (probabilities, soft targets, counts) -> each task's values over a
    last axis of its own size (mask 3, gender 2, age band 3), the other two tasks summed out."""
    values = np.asarray(values, np.float64)
    cube = values.reshape(*values.shape[:-1], *TASK_SIZES)
    lead = values.ndim - 1
    return [cube.sum(axis=tuple(lead + d for d in range(3) if d != axis)) for axis in range(3)]
