"""The years age head: a distribution over ages decoded to bands, its training, and the age cut tuned honestly."""
import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, TrainConfig
from pipeline.contract import NUM_CLASSES, age_band
from pipeline.data.ages import age_grid, band_probs, band_weights, gaussian_targets
from pipeline.layout import pair_dir
from pipeline.model.years import YearsHeads, YearsLoss
from pipeline.train.rundata import load_run_data
from pipeline.train.trainer import Trainer
from tests.conftest import make_config, tiny_config

QUIET = {"log": lambda m: None}
YEARS = ["train.head=multi", "train.age_head=years"]


class Fixed(torch.nn.Module):
    """A stand-in backbone whose output is given: the head's arithmetic alone is under test."""

    def __init__(self, z):
        super().__init__()
        self.z = z

    def forward(self, x):
        return self.z


def test_band_sums_of_the_age_distribution_are_the_decoded_class_probabilities():
    torch.manual_seed(0)
    ages = age_grid([0, 100])
    z = torch.randn(4, 5 + len(ages)) * 3
    out = YearsHeads(Fixed(z), ages, [30, 60])(torch.zeros(4))
    logp, age_logp = out[:, :NUM_CLASSES], out[:, NUM_CLASSES:]
    assert torch.allclose(logp.exp().sum(1), torch.ones(4), atol=1e-5)
    bands = band_probs(age_logp.exp().numpy(), ages, [30, 60])
    decoded_bands = logp.exp().view(4, 3, 2, 3).sum(dim=(1, 2)).numpy()
    assert np.allclose(bands, decoded_bands, atol=1e-5)
    # the mask and gender heads are plain softmaxes, as with three band heads
    assert torch.allclose(logp.exp().view(4, 3, 2, 3).sum(dim=(2, 3)), torch.softmax(z[:, :3], 1), atol=1e-5)


def test_a_person_aged_exactly_at_a_cut_lands_in_the_upper_band():
    ages = age_grid([0, 100])
    w = band_weights(ages, [30, 60])
    assert np.allclose(w.sum(1), 1)
    assert list(w[29]) == [1, 0, 0] and list(w[30]) == [0, 1, 0]
    assert list(w[59]) == [0, 1, 0] and list(w[60]) == [0, 0, 1]
    assert (w.argmax(1) == age_band(ages, (30, 60))).all()
    # a fractional cut splits one year: 57.5 puts half of age 57 above it
    half = band_weights(ages, [30, 57.5])
    assert list(half[57]) == [0, 0.5, 0.5] and list(half[58]) == [0, 0, 1]


def test_gaussian_target_sums_to_one_and_peaks_at_the_label():
    ages = age_grid([0, 100])
    t = gaussian_targets([29, 60, 3, 118], ages, sigma=3.0)
    assert t.shape == (4, 101) and np.allclose(t.sum(1), 1, atol=1e-6)
    assert list(t.argmax(1)) == [29, 60, 3, 100]  # beyond the grid: its mass at the last age
    assert t[0, 28] == pytest.approx(t[0, 30]) and t[0, 28] < t[0, 29]


def test_years_loss_is_kl_plus_l1_on_the_expected_age():
    torch.manual_seed(2)
    t = TrainConfig(head="multi", age_head="years", age_range=[0, 10], age_sigma=1.0, age_l1_weight=0.5)
    ages = age_grid(t.age_range)
    out = YearsHeads(Fixed(torch.randn(3, 5 + len(ages))), ages, [3, 6])(torch.zeros(3))
    classes = torch.nn.functional.one_hot(torch.tensor([0, 7, 14]), NUM_CLASSES).float()
    target = torch.cat([classes, torch.as_tensor(gaussian_targets([2, 4, 9], ages, 1.0))], 1)
    loss = YearsLoss(t, np.ones(NUM_CLASSES))(out, target)
    no_l1 = YearsLoss(TrainConfig(**{**t.__dict__, "age_l1_weight": 0.0}), np.ones(NUM_CLASSES))(out, target)
    p, q = out[:, NUM_CLASSES:].exp(), target[:, NUM_CLASSES:]
    grid = torch.as_tensor(ages, dtype=torch.float32)
    l1 = ((p @ grid) - (q @ grid)).abs().mean()
    assert (loss - no_l1).item() == pytest.approx(0.5 * l1.item(), rel=1e-5)
    kl = (q * (q.clamp_min(1e-30).log() - out[:, NUM_CLASSES:])).sum(1).mean()
    assert no_l1.item() > kl.item() > 0


def test_years_needs_three_heads_and_refuses_softened_cuts(tmp_path, data_dir):
    with pytest.raises(ConfigError, match="train.head: multi"):
        make_config(tmp_path, data_dir, "train.age_head=years")
    with pytest.raises(ConfigError, match="soften_near_cut"):
        make_config(tmp_path, data_dir, *YEARS, "data.soften_near_cut=2")
    with pytest.raises(ConfigError, match="age_range"):
        make_config(tmp_path, data_dir, *YEARS, "train.age_range=[40, 100]")
    with pytest.raises(ConfigError, match="age_head"):
        make_config(tmp_path, data_dir, "train.age_head=decades")
    # a bands run's identity does not depend on the years keys
    a = make_config(tmp_path, data_dir, "train.head=multi")
    b = make_config(tmp_path, data_dir, "train.head=multi", "train.age_sigma=5")
    c = make_config(tmp_path, data_dir, *YEARS)
    assert a.pair_hash("resnet10t") == b.pair_hash("resnet10t") != c.pair_hash("resnet10t")


def test_tiny_years_training_writes_ages_beside_the_18_classes(data_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, data_dir, *YEARS, "train.mix.kind=cutmix", "train.mix.prob=1.0", "tta=[orig]")
    data = load_run_data(cfg, **QUIET)
    trainer = Trainer(cfg, "test_resnet", 0, data, progress=False, **QUIET)
    assert trainer.train_targets.shape[1] == NUM_CLASSES + 101
    assert np.allclose(trainer.train_targets[:, NUM_CLASSES:].sum(1), 1, atol=1e-5)
    trainer.fit()
    z = np.load(pair_dir(cfg.run_dir, "test_resnet", 0) / "oof.npz")
    assert z["logits"].shape == (len(trainer.val_rows), NUM_CLASSES)
    assert z["age_probs"].shape == (len(trainer.val_rows), 101) and np.allclose(z["age_probs"].sum(1), 1, atol=1e-4)
    assert np.allclose(z["age_expected"], z["age_probs"] @ z["ages"], atol=1e-3)
    # one TTA view: the band sums of the saved ages are the saved classes' age marginals
    bands = band_probs(z["age_probs"], z["ages"], cfg.data.age_cuts)
    assert np.allclose(bands, np.exp(z["logits"]).reshape(-1, 3, 2, 3).sum(axis=(1, 2)), atol=1e-4)
    test = np.load(pair_dir(cfg.run_dir, "test_resnet", 0) / "test.npz")
    assert test["logits"].shape[1] == NUM_CLASSES and len(test["age_expected"]) == len(test["logits"])
