"""The `years` age head (train.age_head: years, with train.head: multi): label-distribution learning of ages.

The age head predicts a distribution over whole years (train.age_range) instead of three bands; it is trained
towards a discretised Gaussian around the labelled age (train.age_sigma) with KL divergence, plus an optional L1
loss on the expected age (train.age_l1_weight), as in DLDL-v2 (Gao et al. 2018). The band probabilities are sums
over each band's ages (pipeline.data.ages), so the decoded 18 classes mean what the three-head model's mean.

The model's output is the 18 decoded class log-probabilities followed by the K age log-probabilities: everything
that reads class scores takes the first 18 columns (class_scores); the training targets carry the Gaussian in the
same extra columns, so CutMix and its kin mix the two photos' age distributions with the labels.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config.schema import TrainConfig
from pipeline.data.ages import age_grid, band_weights, expected_age, gaussian_targets
from pipeline.labels import NUM_CLASSES, TASKS
from pipeline.model.heads import ThreeHeadLoss, ThreeHeads, marginals, split_target

MASK_GENDER = [n for _, n in TASKS[:2]]


def years_grid(t: TrainConfig) -> np.ndarray | None:
    """The ages a years head predicts, or None for a bands head."""
    return age_grid(t.age_range) if t.age_head == "years" else None


def class_scores(out):
    """The 18 class scores of a model's output (a years head adds its age columns after them)."""
    return out[:, :NUM_CLASSES]


class YearsHeads(ThreeHeads):
    """A timm model with 3+2+K outputs (mask, gender, ages) whose forward gives the 18 decoded class
    log-probabilities followed by the K age log-probabilities."""

    def __init__(self, net, ages: np.ndarray, cuts):
        super().__init__(net)
        self.sizes = [*MASK_GENDER, len(ages)]
        with np.errstate(divide="ignore"):  # an age outside a band has weight 0: log 0 = -inf drops it from the sum
            self.register_buffer("log_bands", torch.as_tensor(np.log(band_weights(ages, cuts)), dtype=torch.float32))

    def forward(self, x):
        m, g, a = (F.log_softmax(z, dim=1) for z in self.net(x).float().split(self.sizes, dim=1))
        band = torch.logsumexp(a[:, :, None] + self.log_bands[None], dim=1)
        decoded = (m[:, :, None, None] + g[:, None, :, None] + band[:, None, None, :]).flatten(1)
        return torch.cat([decoded, a], dim=1)

    def head_logits(self, x) -> list[torch.Tensor]:
        return list(self.net(x).split(self.sizes, dim=1))


class YearsLoss(ThreeHeadLoss):
    """Mask and gender heads as ThreeHeadLoss has them; the age head: KL(target || predicted ages), weighted by
    the age entry of train.head_weights, plus train.age_l1_weight times |expected age - target's mean age|."""

    def __init__(self, t: TrainConfig, counts: np.ndarray):
        super().__init__(t, counts)
        self.l1_weight = t.age_l1_weight
        self.register_buffer("ages", torch.as_tensor(years_grid(t), dtype=torch.float32))

    def forward(self, out, target):
        logp, age_logp = out[:, :NUM_CLASSES], out[:, NUM_CLASSES:].float()
        classes, ages = target[:, :NUM_CLASSES], target[:, NUM_CLASSES:].float()
        parts = zip(self.head_weights[:2], self.heads[:2], marginals(logp)[:2], split_target(classes)[:2])
        loss = sum(w * head(lp, tt) for w, head, lp, tt in parts) + self.whole(logp, classes)
        loss = loss + self.head_weights[2] * F.kl_div(age_logp, ages, reduction="batchmean")
        if self.l1_weight:
            gap = age_logp.exp() @ self.ages - ages @ self.ages
            loss = loss + self.l1_weight * gap.abs().mean()
        return loss


def with_age_targets(targets: np.ndarray, folds, t: TrainConfig) -> np.ndarray:
    """(N, 18) training targets -> (N, 18 + K) with each photo's Gaussian over ages; unchanged for a bands head."""
    grid = years_grid(t)
    if grid is None:
        return targets
    return np.concatenate([targets, gaussian_targets(folds["age"].to_numpy(), grid, t.age_sigma)], axis=1)


def prediction_arrays(out: np.ndarray, t: TrainConfig) -> dict:
    """What oof.npz and test.npz hold of a model's output: the 18 class logits, and for a years head the
    distribution over ages (age_probs), its mean (age_expected, years) and the grid of ages (ages)."""
    arrays = {"logits": class_scores(out)}
    grid = years_grid(t)
    if grid is not None:
        z = out[:, NUM_CLASSES:].astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        arrays.update(age_probs=p.astype(np.float32), age_expected=expected_age(p, grid).astype(np.float32),
                      ages=grid)
    return arrays
