"""Oversampling rare classes: each photo drawn with weight frequency(class) ** -power.

power 0 keeps natural frequencies, 1 draws every class equally often; in between, class c is drawn in
proportion to count_c ** (1 - power).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler


def sample_weights(labels: np.ndarray, power: float, num_classes: int = 18) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.maximum(counts, 1)[labels] ** -power


def expected_class_rate(labels: np.ndarray, power: float, num_classes: int = 18) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    rate = np.where(counts > 0, counts ** (1 - power), 0)
    return rate / rate.sum()


def build_sampler(labels: np.ndarray, power: float, generator: torch.Generator):
    if power == 0:
        return None
    w = torch.as_tensor(sample_weights(labels, power), dtype=torch.double)
    return WeightedRandomSampler(w, num_samples=len(labels), replacement=True, generator=generator)
