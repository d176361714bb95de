"""Oversampling rare classes: each photo drawn with weight frequency(class) ** -power.

power 0 keeps natural frequencies, 1 draws every class equally often; in between, class c is drawn in
proportion to count_c ** (1 - power).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from pipeline.labels import NUM_CLASSES


def sample_weights(labels: np.ndarray, power: float, num_classes: int = NUM_CLASSES) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.maximum(counts, 1)[labels] ** -power


def build_sampler(labels: np.ndarray, power: float, generator: torch.Generator):
    if power == 0:
        return None
    w = torch.as_tensor(sample_weights(labels, power), dtype=torch.double)
    return WeightedRandomSampler(w, num_samples=len(labels), replacement=True, generator=generator)


class EpochSampler(Sampler):
    """Training order for one epoch, drawn from a seed that depends on the epoch alone.

    It yields (index, epoch seed) pairs: the seed travels with each index to the loader workers, which seed the
    photo's augmentation with it. So the loader can keep its workers alive across epochs (no start-up cost per
    epoch), and a run resumed at epoch e sees the same batches and augmentations as an uninterrupted one.
    """

    def __init__(self, labels: np.ndarray, power: float, base_seed: int):
        self.labels, self.power, self.base_seed = np.asarray(labels), power, base_seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        seed = self.base_seed + self.epoch
        gen = torch.Generator().manual_seed(seed)
        inner = build_sampler(self.labels, self.power, gen)
        order = iter(inner) if inner is not None else iter(torch.randperm(len(self.labels), generator=gen).tolist())
        return ((int(i), seed) for i in order)
