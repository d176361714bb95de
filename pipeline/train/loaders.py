"""A job's data loaders over the decoded-photo cache."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from pipeline.data.datasets import CachedPhotos
from pipeline.data.samplers import EpochSampler


@dataclass(frozen=True)
class Loaders:
    """Builds a job's loaders, each once: workers stay alive across epochs; the sampler carries the epoch's seed."""
    train: object  # the config's TrainConfig
    seed: int  # the config's seed
    sampler_seed: int  # the job's own (pipeline.train.job.Job.seed)
    batch_size: int
    pin_memory: bool

    def __call__(self, cache, rows, labels, transform, train: bool = False, targets=None) -> DataLoader:
        workers = self.train.num_workers
        ds = CachedPhotos(cache, rows, labels, transform, targets)
        sampler = EpochSampler(labels, self.train.sampler_power, self.sampler_seed) if train else None
        return DataLoader(
            ds, batch_size=self.batch_size, sampler=sampler, num_workers=workers, pin_memory=self.pin_memory,
            drop_last=train and len(rows) > self.batch_size, persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
            generator=torch.Generator().manual_seed(self.seed),  # workers' base seed: not the global RNG
        )
