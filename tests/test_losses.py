"""Each loss against a value worked out by hand, with hard and with soft targets."""
import math

import pytest
import torch

from pipeline.config import LossTerm
from pipeline.model.losses import CrossEntropy, Focal, SoftMacroF1, build_loss, class_weights

LOGITS = torch.tensor([[1.0, 2.0, 3.0]])
# log softmax of [1, 2, 3]: log Z = log(e + e^2 + e^3) = 3.40760596
LOGP = [1 - 3.40760596, 2 - 3.40760596, 3 - 3.40760596]


def test_cross_entropy_hard_soft_and_smoothing():
    assert CrossEntropy(3)(LOGITS, torch.tensor([2])).item() == pytest.approx(0.40760596, abs=1e-6)
    soft = torch.tensor([[0.0, 0.5, 0.5]])
    assert CrossEntropy(3)(LOGITS, soft).item() == pytest.approx(0.5 * 1.40760596 + 0.5 * 0.40760596, abs=1e-6)
    # smoothing 0.3 over 3 classes: target [0.1, 0.1, 0.8]
    expected = -(0.1 * LOGP[0] + 0.1 * LOGP[1] + 0.8 * LOGP[2])
    assert CrossEntropy(3, label_smoothing=0.3)(LOGITS, torch.tensor([2])).item() == pytest.approx(expected, abs=1e-6)


def test_cross_entropy_class_weights():
    loss = CrossEntropy(3, class_weights=[1.0, 1.0, 2.0])(LOGITS, torch.tensor([2]))
    assert loss.item() == pytest.approx(2 * 0.40760596, abs=1e-6)


def test_focal_hard_and_soft():
    p2 = math.exp(LOGP[2])  # 0.66524
    assert Focal(3, gamma=2.0)(LOGITS, torch.tensor([2])).item() == pytest.approx((1 - p2) ** 2 * 0.40760596, abs=1e-6)
    p1 = math.exp(LOGP[1])
    soft = torch.tensor([[0.0, 0.5, 0.5]])
    expected = 0.5 * (1 - p1) ** 2 * -LOGP[1] + 0.5 * (1 - p2) ** 2 * -LOGP[2]
    assert Focal(3, gamma=2.0)(LOGITS, soft).item() == pytest.approx(expected, abs=1e-6)
    # gamma 0 is cross-entropy; alpha scales
    assert Focal(3, gamma=0.0, alpha=0.25)(LOGITS, torch.tensor([2])).item() == pytest.approx(0.25 * 0.40760596, abs=1e-6)


def test_soft_macro_f1_hard_and_soft():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    logits = probs.log()
    # tp = [0.7, 0, 0.6], fp = [0.1, 0.5, 0.1], fn = [0.3, 0, 0.4]
    f1 = [1.4 / 1.8, 0.0, 1.2 / 1.7]
    assert SoftMacroF1(3)(logits, torch.tensor([0, 2])).item() == pytest.approx(1 - sum(f1) / 3, abs=1e-5)
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    # tp = [0.35, 0.1, 0.6]; fp = [0.45, 0.4, 0.1]; fn = [0.15, 0.4, 0.4]
    f1 = [0.7 / 1.3, 0.2 / 1.0, 1.2 / 1.7]
    assert SoftMacroF1(3)(logits, soft).item() == pytest.approx(1 - sum(f1) / 3, abs=1e-5)


def test_weighted_sum_and_class_weights():
    loss = build_loss([LossTerm("ce", 1.0), LossTerm("focal", 0.5, gamma=0.0)], num_classes=3)
    assert loss(LOGITS, torch.tensor([2])).item() == pytest.approx(1.5 * 0.40760596, abs=1e-6)
    w = class_weights([100, 10, 1], power=1.0)
    assert w[2] / w[0] == pytest.approx(100) and (w * [100, 10, 1]).sum() == pytest.approx(111)
    assert class_weights([5, 5], power=0) is None
