"""Classifier heads by name (train.head): what the timm model outputs, how it is wrapped, and its training loss.

- joint: one 18-way head, the timm classifier as it is.
- multi: three heads on the same backbone features, mask (3), gender (2) and age band (3). They are the rows of
  one 8-output timm classifier (a linear layer with 8 outputs is three linear heads side by side), so timm's own
  head (pooling, dropout, norm), weight loading, freezing and layer groups work unchanged. The wrapper decodes
  them to the 18 classes as the product of the heads' probabilities:
  log p(class) = log p(mask) + log p(gender) + log p(age), class = mask*6 + gender*3 + age.

Either way the model's output is 18 scores whose log_softmax is the class log-probabilities, so validation, TTA,
oof.npz/test.npz, `maskfold predict` and the ensemble never need to know which head trained it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.schema import TrainConfig
from pipeline.labels import NUM_CLASSES, TASK_SIZES, task_sums
from pipeline.model.losses import LOSSES, as_soft, build_loss, class_weights



def decode(head_logits: torch.Tensor) -> torch.Tensor:
    """(B, 3+2+3) head logits -> (B, 18) log-probabilities of the product of the three heads' distributions."""
    m, g, a = (F.log_softmax(z, dim=1) for z in head_logits.float().split(TASK_SIZES, dim=1))
    return (m[:, :, None, None] + g[:, None, :, None] + a[:, None, None, :]).flatten(1)


def marginals(logp: torch.Tensor) -> list[torch.Tensor]:
    """(B, 18) log-probabilities -> each task's (B, n) log-probabilities (summing out the other two tasks).

    For a decoded output these are exactly the heads' own log_softmax (the marginals of a product are its factors),
    so the per-head losses can be taken from the 18-class output: one forward for training and inference alike.
    """
    cube = logp.float().view(-1, *TASK_SIZES)
    return [torch.logsumexp(cube, dim=[d for d in (1, 2, 3) if d != axis]) for axis in (1, 2, 3)]


def split_target(target: torch.Tensor) -> list[torch.Tensor]:
    """(B, 18) soft targets (CutMix, softened ages) -> each task's (B, n) soft targets, each summing to 1."""
    cube = as_soft(target, NUM_CLASSES).view(-1, *TASK_SIZES)
    return [cube.sum(dim=[d for d in (1, 2, 3) if d != axis]) for axis in (1, 2, 3)]


class ThreeHeads(nn.Module):
    """A timm model with 3+2+3 outputs whose forward gives the decoded 18-class log-probabilities."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return decode(self.net(x))

    def head_logits(self, x) -> list[torch.Tensor]:
        """The three heads' logits (mask, gender, age band), for inspection; training uses marginals()."""
        return list(self.net(x).split(TASK_SIZES, dim=1))

    def get_classifier(self) -> nn.Module:
        return self.net.get_classifier()


class ThreeHeadLoss(nn.Module):
    """The configured loss terms per head, weighted by train.head_weights, on the 18-class model output.

    ce and focal are applied to each head (with class weights from that task's counts); f1 to the decoded 18-class
    distribution (see SoftMacroF1.on_heads). With plain ce and weights [1, 1, 1] this equals 18-class ce on the
    decoded distribution: -log p(class) = -log p(mask) - log p(gender) - log p(age).
    """

    def __init__(self, t: TrainConfig, counts: np.ndarray):
        super().__init__()
        head_terms = [term for term in t.loss if LOSSES[term.name].on_heads]
        whole_terms = [term for term in t.loss if not LOSSES[term.name].on_heads]
        self.head_weights = list(t.head_weights)
        self.heads = nn.ModuleList(
            build_loss(head_terms, n, class_weights(c, t.class_weight_power))
            for n, c in zip(TASK_SIZES, task_sums(counts)))
        self.whole = build_loss(whole_terms, NUM_CLASSES)

    def forward(self, logp, target):
        # the heads' log-probabilities are valid logits: their log_softmax is themselves
        parts = zip(self.head_weights, self.heads, marginals(logp), split_target(target))
        return sum(w * loss(lp, tt) for w, loss, lp, tt in parts) + self.whole(logp, target)


def _joint_loss(t: TrainConfig, counts: np.ndarray) -> nn.Module:
    return build_loss(t.loss, NUM_CLASSES, class_weights(counts, t.class_weight_power))


@dataclass(frozen=True)
class HeadKind:
    outputs: int  # classifier outputs of the timm model
    wrap: Callable[[nn.Module], nn.Module]  # timm model -> the module whose forward gives the 18 class scores
    loss: Callable[[TrainConfig, np.ndarray], nn.Module]  # (train settings, per-class counts) -> training loss


# train.head -> its kind; the config check reads the names from here
HEADS = {
    "joint": HeadKind(NUM_CLASSES, lambda net: net, _joint_loss),
    "multi": HeadKind(sum(TASK_SIZES), ThreeHeads, ThreeHeadLoss),
}


def timm_body(model: nn.Module) -> nn.Module:
    """The timm model inside a wrapper (its layer names and groups are what timm's optimizer factory reads)."""
    return model.net if isinstance(model, ThreeHeads) else model
