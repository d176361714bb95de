"""Optimisers and schedules by name: the registries below are what the config check accepts.

Schedules step once per optimiser step (plateau: once per epoch, on validation macro F1).
"""
from __future__ import annotations

import math

import torch

from pipeline.config.schema import TrainConfig


def _sgd(params, t: TrainConfig, lr: float):
    return torch.optim.SGD(params, lr=lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True)


def _adam(params, t: TrainConfig, lr: float):
    return torch.optim.Adam(params, lr=lr, weight_decay=t.weight_decay)


def _adamw(params, t: TrainConfig, lr: float):
    return torch.optim.AdamW(params, lr=lr, weight_decay=t.weight_decay)


OPTIMIZERS = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


def build_optimizer(params, t: TrainConfig, lr: float) -> torch.optim.Optimizer:
    return OPTIMIZERS[t.optimizer](params, t, lr)


def _cosine(t: TrainConfig, total: int, warm: int, steps_per_epoch: int):
    def f(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return f


def _step(t: TrainConfig, total: int, warm: int, steps_per_epoch: int):
    return lambda step: t.step_gamma ** ((step // steps_per_epoch) // t.step_size)


def _constant(t: TrainConfig, total: int, warm: int, steps_per_epoch: int):
    return lambda step: 1.0


# name -> multiplier of the base lr per optimiser step; plateau is built apart (it reads validation F1)
SCHEDULES = {"cosine": _cosine, "step": _step, "none": _constant}
SCHEDULERS = (*SCHEDULES, "plateau")


def build_scheduler(opt, t: TrainConfig, epochs: int, steps_per_epoch: int):
    if t.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=t.plateau_factor,
                                                          patience=t.plateau_patience)
    total = max(1, epochs * steps_per_epoch)
    warm = int(t.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(opt, SCHEDULES[t.scheduler](t, total, warm, steps_per_epoch))
