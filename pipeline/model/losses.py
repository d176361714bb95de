"""Losses by name; every one takes soft targets (B, C) so CutMix and mixup labels pass straight through.

Hard integer targets are turned into one-hot rows first. A config lists weighted terms, e.g. ce + 0.5 * f1.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.schema import LossTerm
from pipeline.labels import NUM_CLASSES


def as_soft(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    if target.dim() == 1:
        return F.one_hot(target.long(), num_classes).float()
    return target.float()


class CrossEntropy(nn.Module):
    """-sum_c w_c t_c log p_c, averaged over the batch; label smoothing mixes t with the uniform vector.

    Targets go to F.cross_entropy as probabilities even when hard: with class-index targets and class weights it
    divides by the summed weights of the batch's labels instead of by the batch size, which is another loss.
    """

    on_heads = True  # a sum over photos of a per-class term: it applies to each of the three heads as it stands

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, class_weights=None, **_):
        super().__init__()
        self.num_classes, self.eps = num_classes, label_smoothing
        self.register_buffer("w", _weights(class_weights, num_classes))

    def forward(self, logits, target):
        return F.cross_entropy(logits.float(), as_soft(target, self.num_classes), weight=self.w,
                               label_smoothing=self.eps)


class Focal(nn.Module):
    """-alpha * sum_c w_c t_c (1 - p_c)^gamma log p_c: down-weights photos the model already gets right."""

    on_heads = True

    def __init__(self, num_classes: int, gamma: float = 2.0, alpha: float | None = None, class_weights=None,
                 label_smoothing: float = 0.0, **_):
        super().__init__()
        self.num_classes, self.gamma, self.alpha, self.eps = num_classes, gamma, alpha, label_smoothing
        self.register_buffer("w", _weights(class_weights, num_classes))

    def forward(self, logits, target):
        t = as_soft(target, self.num_classes)
        t = t * (1 - self.eps) + self.eps / self.num_classes
        logp = F.log_softmax(logits.float(), dim=1)
        loss = -(t * (1 - logp.exp()).pow(self.gamma) * logp * self.w).sum(1).mean()
        return loss * (self.alpha if self.alpha is not None else 1.0)


class SoftMacroF1(nn.Module):
    """1 - mean over classes of the soft F1 computed from probabilities: the metric itself, made smooth."""

    # With three heads it is computed on the decoded 18-class distribution, not per head: the score is macro F1
    # over the 18 classes, and F1 does not split over the tasks (a rare class such as incorrect/F/60+ counts
    # 1/18 of the score, but inside the age head its band is a third of the age F1), so only the 18-class
    # form keeps "the metric itself"; its gradient still reaches every head through the product.
    on_heads = False

    def __init__(self, num_classes: int, eps: float = 1e-7, **_):
        super().__init__()
        self.num_classes, self.eps = num_classes, eps

    def forward(self, logits, target):
        t = as_soft(target, self.num_classes)
        p = F.softmax(logits.float(), dim=1)
        tp = (p * t).sum(0)
        fp = (p * (1 - t)).sum(0)
        fn = ((1 - p) * t).sum(0)
        f1 = 2 * tp / (2 * tp + fp + fn + self.eps)
        return 1 - f1.mean()


LOSSES = {"ce": CrossEntropy, "focal": Focal, "f1": SoftMacroF1}


def _weights(class_weights, num_classes):
    if class_weights is None:
        return torch.ones(num_classes)
    return torch.as_tensor(np.asarray(class_weights), dtype=torch.float32)


class Combined(nn.Module):
    def __init__(self, terms: list[tuple[float, nn.Module]]):
        super().__init__()
        self.weights = [w for w, _ in terms]
        self.terms = nn.ModuleList(m for _, m in terms)

    def forward(self, logits, target):
        return sum(w * m(logits, target) for w, m in zip(self.weights, self.terms))


def class_weights(counts: np.ndarray, power: float) -> np.ndarray | None:
    """frequency ** -power, scaled so the average photo keeps weight 1; None when power is 0."""
    if power == 0:
        return None
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    w = counts ** -power
    return w * counts.sum() / (w * counts).sum()


def build_loss(terms: list[LossTerm], num_classes: int = NUM_CLASSES, weights=None) -> nn.Module:
    built = []
    for t in terms:
        kw = {"label_smoothing": t.label_smoothing, "gamma": t.gamma, "alpha": t.alpha, "class_weights": weights}
        built.append((t.weight, LOSSES[t.name](num_classes, **kw)))
    return Combined(built)
