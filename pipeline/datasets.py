"""Datasets over the photo cache. Items are uint8 HWC tensors: the batch goes to the device as bytes."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.cache import open_cache


class CachedPhotos(Dataset):
    def __init__(self, cache_path, rows: np.ndarray, labels: np.ndarray | None = None, transform=None,
                 seed: int | None = None):
        self.cache_path = str(cache_path)
        # Albumentations keeps its own random state, untouched by torch/numpy seeds; seeding it per item from
        # (seed, index) makes every augmentation a function of the epoch and the photo, whatever the number of
        # loader workers, so a resumed run sees exactly the batches an uninterrupted one would have.
        self.seed = seed
        self.rows = np.asarray(rows)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self._arr = None  # opened lazily: each loader worker maps the file itself

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if self._arr is None:
            self._arr = open_cache(self.cache_path)
        img = np.asarray(self._arr[self.rows[i]])
        if self.transform is not None:
            if self.seed is not None:
                self.transform.set_random_seed(self.seed * 1_000_003 + int(i))
            img = self.transform(image=img)["image"]
        x = torch.from_numpy(np.ascontiguousarray(img))
        y = -1 if self.labels is None else int(self.labels[i])
        return x, y

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arr"] = None
        return state
