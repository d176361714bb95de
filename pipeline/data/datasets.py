"""Datasets over the photo cache. Items are uint8 HWC tensors: the batch goes to the device as bytes."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.cache import open_cache


class CachedPhotos(Dataset):
    """Photos from the cache file (a path: each loader worker maps it itself) or from an array in memory.

    Items are (photo, label), or (photo, label, target) when targets (one (18,) row per photo: the training targets
    of pipeline.data.targets.training_targets) are given.
    """

    def __init__(self, cache, rows: np.ndarray, labels: np.ndarray | None = None, transform=None,
                 targets: np.ndarray | None = None):
        self.in_memory = isinstance(cache, np.ndarray)
        self.cache_path = None if self.in_memory else str(cache)
        self.rows = np.asarray(rows)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        self._arr = cache if self.in_memory else None  # a file is opened lazily, in the worker that reads it

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        """key: an index, or (index, epoch seed) from pipeline.samplers.EpochSampler."""
        i, seed = key if isinstance(key, tuple) else (key, None)
        if self._arr is None:
            self._arr = open_cache(self.cache_path)
        img = np.asarray(self._arr[self.rows[i]])
        if self.transform is not None:
            if seed is not None:
                # Albumentations keeps its own random state, untouched by torch/numpy seeds: seeded from
                # (epoch seed, index), a photo's augmentation no longer depends on which worker draws it.
                self.transform.set_random_seed(seed * 1_000_003 + int(i))
            img = self.transform(image=img)["image"]
        x = torch.from_numpy(np.ascontiguousarray(img))
        y = -1 if self.labels is None else int(self.labels[i])
        if self.targets is not None:
            return x, y, torch.from_numpy(self.targets[i])
        return x, y

    def __getstate__(self):
        state = dict(self.__dict__)
        if not self.in_memory:
            state["_arr"] = None
        return state
