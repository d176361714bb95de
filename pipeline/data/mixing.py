"""CutMix variants and mixup, applied on the device to a normalised batch with soft targets.

- cutmix: a random box from another photo; label mass = box area.
- vertical: left half of one photo, right half of another (lambda near 0.5): each side keeps a whole half-face,
  so the mask state stays readable, which plain box CutMix often destroys.
- elder_half: vertical, with the second half taken from a 60+ photo when the batch has one (60+ is the rarest
  age band; this spreads its evidence over more training pairs).
- mixup: a convex blend of two photos.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.labels import NUM_CLASSES


def _partners(labels: torch.Tensor, gen: np.random.Generator, elder_only: bool) -> torch.Tensor:
    n = len(labels)
    perm = torch.as_tensor(gen.permutation(n), device=labels.device)
    if elder_only:
        elders = torch.nonzero(labels % 3 == 2).flatten()
        if len(elders):
            pick = torch.as_tensor(gen.integers(0, len(elders), n), device=labels.device)
            perm = elders[pick]
    return perm


def _mixup(x, perm, alpha, gen):
    lam = float(gen.beta(alpha, alpha))
    return lam * x + (1 - lam) * x[perm], lam


def _vertical(x, perm, alpha, gen):
    w = x.shape[3]
    cut = int(round(w * float(np.clip(gen.normal(0.5, 0.05), 0.35, 0.65))))
    x = x.clone()
    x[:, :, :, cut:] = x[perm][:, :, :, cut:]
    return x, cut / w


def _cutmix(x, perm, alpha, gen):
    h, w = x.shape[2:]
    lam = float(gen.beta(alpha, alpha))
    ch, cw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
    cy, cx = int(gen.integers(h)), int(gen.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return x, 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the exact pasted area, after clipping at the border


# name -> (mix function, whether partners are 60+ photos); "none" turns mixing off. The config check reads this.
MIXES = {"cutmix": (_cutmix, False), "vertical": (_vertical, False), "elder_half": (_vertical, True),
         "mixup": (_mixup, False)}
MIX_KINDS = ("none", *MIXES)


def mix_batch(x: torch.Tensor, labels: torch.Tensor, kind: str, alpha: float, gen: np.random.Generator,
              num_classes: int = NUM_CLASSES, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Returns (mixed x, soft targets, lambda = label mass kept by each photo's own target).

    targets: the photos' own (B, C) soft targets (softened ages) to mix; by default the labels one-hot. Partners
    are chosen by the hard labels.
    """
    if kind not in MIXES:
        raise ValueError(f"unknown mix kind {kind!r}")
    fn, elder_only = MIXES[kind]
    t = torch.nn.functional.one_hot(labels.long(), num_classes).float() if targets is None else targets.float()
    perm = _partners(labels, gen, elder_only)
    x, lam = fn(x, perm, alpha, gen)
    return x, lam * t + (1 - lam) * t[perm], lam
