"""Optimisers and schedules by name, built with timm: the registries below are what the config check accepts.

Optimisers come from timm.optim.create_optimizer_v2, which puts norm and bias parameters (every 1-d parameter) in
a group without weight decay (train.no_decay_norm_bias) and can give each layer its own lr (train.layer_decay).
Schedules are timm schedulers stepped per optimiser step with step_update(updates); plateau moves once per
epoch, on validation macro F1, through step(epoch, metric). Every schedule has state_dict/load_state_dict for
last.pt.
"""
from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, StepLRScheduler
from timm.scheduler.scheduler import Scheduler

from pipeline.config.schema import TrainConfig

# config name -> timm optimiser name. timm's sgd is SGD with Nesterov momentum, as the hand-built one was.
OPTIMIZERS = {"adam": "adam", "adamw": "adamw", "sgd": "sgd"}


def build_optimizer(model: torch.nn.Module, t: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """model: the timm model itself (pipeline.model.heads.timm_body), whose layer names timm groups by."""
    name = OPTIMIZERS[t.optimizer]
    if name == "sgd" and t.momentum == 0:
        name = "momentum"  # timm's plain SGD: torch refuses Nesterov without momentum
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=t.weight_decay,
                               momentum=t.momentum, filter_bias_and_bn=t.no_decay_norm_bias, layer_decay=t.layer_decay)


def _cosine(opt, t: TrainConfig, epochs: int, steps_per_epoch: int) -> Scheduler:
    total = max(1, epochs * steps_per_epoch)
    warm = min(int(t.warmup_epochs * steps_per_epoch), total - 1)
    # warmup_prefix: the cosine runs over the steps after the warm-up and reaches min_lr at the last step
    return CosineLRScheduler(opt, t_initial=total - warm, lr_min=t.min_lr, warmup_t=warm,
                             warmup_lr_init=t.warmup_lr, warmup_prefix=True, t_in_epochs=False)


def _step(opt, t: TrainConfig, epochs: int, steps_per_epoch: int) -> Scheduler:
    # no warm-up: warmup_epochs has always been the cosine schedule's
    return StepLRScheduler(opt, decay_t=t.step_size * steps_per_epoch, decay_rate=t.step_gamma, t_in_epochs=False)


def _constant(opt, t: TrainConfig, epochs: int, steps_per_epoch: int) -> Scheduler:
    # A schedule, not none at all: timm's optimiser leaves layer_decay's lr_scale to the scheduler to apply.
    return StepLRScheduler(opt, decay_t=1, decay_rate=1.0, t_in_epochs=False)


class PlateauOnF1(Scheduler):
    """torch's ReduceLROnPlateau on validation macro F1, in timm's scheduler interface.

    timm's own PlateauLRScheduler is deprecated and saves only part of its state (not the patience counter), so a
    run resumed from last.pt would not repeat an uninterrupted one; this saves all of it.
    """

    def __init__(self, opt, factor: float, patience: int, min_lr: float):
        super().__init__(opt, "lr", t_in_epochs=True)  # applies layer_decay's lr_scale to the starting lr
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=factor, patience=patience,
                                                                min_lr=min_lr)

    def _get_lr(self, t):
        raise NotImplementedError("the plateau schedule moves on a metric, not on a step count")

    def step(self, epoch: int, metric: float | None = None) -> None:
        if metric is not None:
            self.inner.step(metric)

    def step_update(self, num_updates: int, metric: float | None = None) -> None:
        pass

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


def _plateau(opt, t: TrainConfig, epochs: int, steps_per_epoch: int) -> Scheduler:
    return PlateauOnF1(opt, t.plateau_factor, t.plateau_patience, t.min_lr)


# name -> builder(optimizer, train settings, epochs, optimiser steps per epoch)
SCHEDULES = {"cosine": _cosine, "step": _step, "plateau": _plateau, "none": _constant}
SCHEDULERS = tuple(SCHEDULES)


def build_scheduler(opt, t: TrainConfig, epochs: int, steps_per_epoch: int) -> Scheduler:
    return SCHEDULES[t.scheduler](opt, t, epochs, steps_per_epoch)
