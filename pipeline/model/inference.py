"""Inference with test-time augmentation, on the device.

A batch arrives as uint8 (B, H, W, 3). Permuting it to (B, 3, H, W) gives channels_last strides for free, and the
float conversion and per-backbone normalisation happen on the device, where they are cheap.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.labels import NUM_CLASSES


def to_model_input(batch: torch.Tensor, device, mean: torch.Tensor, std: torch.Tensor,
                   channels_last: bool = True) -> torch.Tensor:
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def norm_tensors(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1))


def tta_view(x: torch.Tensor, name: str) -> torch.Tensor:
    """One test-time view: orig, hflip, or cropNN (centre NN% crop scaled back to the input size)."""
    if name == "orig":
        return x
    if name == "hflip":
        return x.flip(3)
    frac = int(name[4:]) / 100
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = x[:, :, y0 : y0 + ch, x0 : x0 + cw]
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def autocast_for(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "none":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@dataclass(frozen=True)
class Inference:
    """How a model sees photos at prediction time: its device, its backbone's normalisation (mean, std), the TTA
    views averaged, the memory format and the autocast precision (amp: none, bf16, fp16; CUDA only)."""

    device: object
    mean: tuple
    std: tuple
    tta: tuple = ("orig",)
    channels_last: bool = True
    amp: str = "none"


@torch.no_grad()
def predict_logits(model, loader, how: Inference, progress=None) -> np.ndarray:
    """Logits averaged over the TTA views, (N, C) float32 in loader order."""
    model.eval()
    device = torch.device(how.device)
    m, s = norm_tensors(how.mean, how.std, device)
    out = []
    for xb, _ in (progress(loader) if progress else loader):
        x = to_model_input(xb, device, m, s, how.channels_last)
        with autocast_for(device, how.amp):
            logits = sum(model(tta_view(x, v)).float() for v in how.tta) / len(how.tta)
        out.append(logits.cpu())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, NUM_CLASSES), np.float32)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
