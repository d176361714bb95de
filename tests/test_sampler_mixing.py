import numpy as np
import pytest
import torch

from pipeline.data.mixing import mix_batch
from pipeline.data.samplers import build_sampler


def expected_class_rate(labels: np.ndarray, power: float) -> np.ndarray:
    """What the module docstring promises: class c drawn in proportion to count_c ** (1 - power)."""
    counts = np.bincount(labels).astype(np.float64)
    rate = np.where(counts > 0, counts ** (1 - power), 0)
    return rate / rate.sum()


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_sampler_draws_rare_classes_at_configured_rate(power):
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    sampler = build_sampler(labels, power, torch.Generator().manual_seed(0))
    drawn = np.concatenate([labels[list(sampler)] for _ in range(40)])
    rate = np.bincount(drawn, minlength=3) / len(drawn)
    want = expected_class_rate(labels, power)[:3]
    assert np.allclose(rate, want, atol=0.01)
    if power == 1.0:
        assert np.allclose(rate, 1 / 3, atol=0.01)
    assert build_sampler(labels, 0.0, torch.Generator()) is None


def const_batch(labels, h=40, w=50):
    """Photo i is filled with the value i, so every pixel tells where it came from."""
    n = len(labels)
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).contiguous()
    return x, torch.tensor(labels)


def own_fraction(mixed):
    n = mixed.shape[0]
    return torch.stack([(mixed[i] == i).float().mean() for i in range(n)])


def test_vertical_halves_and_label_mass():
    x, y = const_batch([0, 1, 5, 9, 17, 3])
    out, target, lam = mix_batch(x, y, "vertical", 1.0, np.random.default_rng(0))
    cut = round(lam * 50)
    assert 0.35 <= lam <= 0.65
    for i in range(6):
        assert (out[i, :, :, :cut] == i).all()  # left part is the photo's own
        right = out[i, :, :, cut:]
        assert (right == right[0, 0, 0]).all()  # right part is one other photo
    assert torch.allclose(target.sum(1), torch.ones(6))
    own = own_fraction(out)
    for i in range(6):
        if (out[i, 0, 0, -1] != i):
            assert target[i, y[i]] == pytest.approx(lam) and own[i] == pytest.approx(lam, abs=1e-6)


def test_elder_half_takes_a_60_plus_partner():
    labels = [0, 1, 3, 4, 6, 8, 10]  # 8 is the only 60+ photo (label % 3 == 2)
    x, y = const_batch(labels)
    out, target, lam = mix_batch(x, y, "elder_half", 1.0, np.random.default_rng(1))
    cut = round(lam * 50)
    assert (out[:, :, :, cut:] == 5).all()  # every right half comes from photo 5 (label 8)
    for i in range(7):
        if i != 5:
            assert target[i, 8] == pytest.approx(1 - lam) and target[i, labels[i]] == pytest.approx(lam)


def test_cutmix_box_area_is_label_mass():
    x, y = const_batch(list(range(8)), h=64, w=64)
    for seed in range(5):
        out, target, lam = mix_batch(x, y, "cutmix", 1.0, np.random.default_rng(seed))
        own = own_fraction(out)
        for i in range(8):
            pasted_from_other = out[i, 0] != i
            if pasted_from_other.any():
                assert own[i].item() == pytest.approx(lam, abs=1e-6)
                assert target[i, i].item() == pytest.approx(lam, abs=1e-6)
                rows = torch.nonzero(pasted_from_other.any(1)).flatten()
                cols = torch.nonzero(pasted_from_other.any(0)).flatten()
                # the pasted region is one rectangle
                assert pasted_from_other.sum() == len(rows) * len(cols)
        assert torch.allclose(target.sum(1), torch.ones(8))


def test_mixup_blend():
    x, y = const_batch([0, 1, 2, 3])
    out, target, lam = mix_batch(x, y, "mixup", 0.4, np.random.default_rng(3))
    assert 0 < lam < 1
    partners = []
    for i in range(4):
        # photo i holds the value i everywhere, so a blend with photo j is lam*i + (1-lam)*j everywhere: j must come
        # out a whole photo index, the same at every pixel, and the partners a permutation of the batch
        assert torch.allclose(out[i], out[i, 0, 0, 0].expand_as(out[i]))
        partner = ((out[i, 0, 0, 0] - lam * i) / (1 - lam)).item()
        j = int(round(partner))
        assert partner == pytest.approx(j, abs=1e-4) and 0 <= j < 4
        partners.append(j)
        expected = torch.zeros(18)
        expected[i] += lam
        expected[j] += 1 - lam
        assert torch.allclose(target[i], expected, atol=1e-6)
    assert sorted(partners) == [0, 1, 2, 3]


def test_epoch_sampler_carries_the_epoch_seed_and_repeats_per_epoch():
    from pipeline.data.samplers import EpochSampler

    labels = np.array([0] * 50 + [1] * 5)
    s = EpochSampler(labels, 1.0, base_seed=100)
    s.set_epoch(3)
    first = list(s)
    assert len(first) == 55 and {seed for _, seed in first} == {103}
    s.set_epoch(4)
    other = list(s)
    s.set_epoch(3)
    assert list(s) == first and other != first
    plain = EpochSampler(labels, 0.0, base_seed=0)
    assert sorted(i for i, _ in plain) == list(range(55))  # power 0: a permutation
