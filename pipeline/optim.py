"""Optimisers and schedules by name. Schedules step once per optimiser step (plateau: once per epoch)."""
from __future__ import annotations

import math

import torch

from pipeline.config import TrainConfig


def build_optimizer(params, t: TrainConfig, lr: float) -> torch.optim.Optimizer:
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=t.weight_decay)


def build_scheduler(opt, t: TrainConfig, epochs: int, steps_per_epoch: int):
    total = max(1, epochs * steps_per_epoch)
    warm = int(t.warmup_epochs * steps_per_epoch)
    if t.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=t.plateau_factor,
                                                          patience=t.plateau_patience)
    if t.scheduler == "cosine":
        def f(step):
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    elif t.scheduler == "step":
        def f(step):
            return t.step_gamma ** ((step // steps_per_epoch) // t.step_size)
    else:
        def f(step):
            return 1.0
    return torch.optim.lr_scheduler.LambdaLR(opt, f)
