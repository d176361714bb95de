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


def _partners(labels: torch.Tensor, gen: np.random.Generator, elder_only: bool) -> torch.Tensor:
    n = len(labels)
    perm = torch.as_tensor(gen.permutation(n), device=labels.device)
    if elder_only:
        elders = torch.nonzero(labels % 3 == 2).flatten()
        if len(elders):
            pick = torch.as_tensor(gen.integers(0, len(elders), n), device=labels.device)
            perm = elders[pick]
    return perm


def mix_batch(x: torch.Tensor, labels: torch.Tensor, kind: str, alpha: float, gen: np.random.Generator,
              num_classes: int = 18) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Returns (mixed x, soft targets, lambda = label mass kept by each photo's own label)."""
    t = torch.nn.functional.one_hot(labels.long(), num_classes).float()
    b, _, h, w = x.shape
    perm = _partners(labels, gen, elder_only=(kind == "elder_half"))
    if kind == "mixup":
        lam = float(gen.beta(alpha, alpha))
        x = lam * x + (1 - lam) * x[perm]
    elif kind in ("vertical", "elder_half"):
        cut = int(round(w * float(np.clip(gen.normal(0.5, 0.05), 0.35, 0.65))))
        x = x.clone()
        x[:, :, :, cut:] = x[perm][:, :, :, cut:]
        lam = cut / w
    elif kind == "cutmix":
        lam = float(gen.beta(alpha, alpha))
        ch, cw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
        cy, cx = int(gen.integers(h)), int(gen.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the exact pasted area, after clipping at the border
    else:
        raise ValueError(f"unknown mix kind {kind!r}")
    return x, lam * t + (1 - lam) * t[perm], lam
