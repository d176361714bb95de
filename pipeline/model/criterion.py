"""The training loss a config asks for: the head's own (train.head), or the age distribution's (train.age_head:
years), which is built on the three heads."""
from __future__ import annotations

import numpy as np
from torch import nn

from pipeline.config.schema import TrainConfig
from pipeline.model.heads import HEADS
from pipeline.model.years import YearsLoss


def build_criterion(t: TrainConfig, counts: np.ndarray) -> nn.Module:
    """The training loss for train.head, from the training photos' per-class counts (for class weights)."""
    if t.age_head == "years":
        return YearsLoss(t, counts)
    return HEADS[t.head].loss(t, counts)
