"""The years age head: a distribution over ages decoded to bands, its training, and the age cut tuned honestly."""
import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, TrainConfig
from pipeline.data.ages import age_grid, band_probs, band_weights, gaussian_targets
from pipeline.labels import NUM_CLASSES, age_band
from pipeline.layout import pair_dir
from pipeline.model.years import YearsHeads, YearsLoss
from pipeline.train.job import fold_job
from pipeline.train.rundata import load_run_data
from pipeline.train.trainer import Trainer
from tests.conftest import make_config, straight_and_resumed, tiny_config

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
    trainer = Trainer(cfg, fold_job(cfg, "test_resnet", 0), data, progress=False, **QUIET)
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


# -- the age cut, tuned on OOF by the ensemble


def _members_too_young(seed=0, n=600, lag=2.0):
    """One years member that reads mask and gender right and every age `lag` years too young."""
    from ensemble.age_cut import MemberAges

    rng = np.random.default_rng(seed)
    ages = age_grid([0, 100])
    true_age = rng.integers(18, 80, n)
    mask, gender = rng.integers(0, 3, n), rng.integers(0, 2, n)
    y = mask * 6 + gender * 3 + age_band(true_age, (30, 60))
    age_probs = gaussian_targets(true_age - lag, ages, sigma=1.5).astype(np.float64)
    mg = np.full((n, 3, 2), 0.02)
    mg[np.arange(n), mask, gender] = 0.9
    mg /= mg.sum(axis=(1, 2), keepdims=True)
    probs = (mg[:, :, :, None] * band_probs(age_probs, ages, (30, 60))[:, None, None, :]).reshape(n, NUM_CLASSES)
    return probs, MemberAges(ages, age_probs, [], None), y, true_age


def test_age_cut_moves_towards_a_model_that_reads_ages_too_young_and_no_shift_changes_nothing():
    from ensemble import blend
    from ensemble.age_cut import AgeCutBlends, shift_bands

    probs, member, y, _ = _members_too_young()
    assert np.allclose(shift_bands(probs, member.oof, member.ages, [30, 60], np.zeros(2)), probs)
    cutter = AgeCutBlends([member], [30, 60])
    shift = cutter.fit_shift([probs], y)
    assert np.all(np.abs(shift + 2) <= 0.5)  # both cuts move about two years down
    plain = blend.fast_macro_f1(y, probs.argmax(1))
    fitted = cutter.fit_blend("equal", [probs], y, offsets=False)
    assert blend.fast_macro_f1(y, cutter.apply_blend(fitted, [probs]).argmax(1)) > plain
    # honest: each half of the persons is predicted with a cut fitted on the other half, and still gains here
    part = blend.person_parts(np.arange(len(y)), 2)
    assert blend.fast_macro_f1(y, cutter.nested_blend("equal", [probs], y, part, False)) > plain
    # a bands member beside it is left as it is
    both = AgeCutBlends([member, None], [30, 60]).shifted([probs, probs], np.array([-2.0, -2.0]))
    assert both[1] is probs and not np.allclose(both[0], probs)


def test_years_run_tunes_the_cut_nested_and_predict_replays_it(data_dir, tmp_path):
    """train-all with a years head, the ensemble with ensemble.tune_age_cut (its rows nested, the cut fitted on OOF
    only: scrambling the eval ages changes nothing), the report's ages, and `maskfold predict` = the submission."""
    import json
    from pathlib import Path

    import pandas as pd

    from ensemble.predict import predict_folder
    from ensemble.run import run_ensemble
    from pipeline.train.jobs import train_all

    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, data_dir, *YEARS, "train.epochs=1", "ensemble.tune_age_cut=true",
                      "ensemble.stacking=false", "ensemble.selection=false", "ensemble.task_weights=false",
                      "ensemble.choose_by_nested=false")
    assert (train_all(cfg, jobs=1, **QUIET)["status"] == "done").all()
    lines = []
    rows = run_ensemble(cfg, log=lines.append)["rows"]
    assert "ensemble + equal weights + age cut (nested, 2 person splits)" in rows
    assert "ensemble + weights + offsets + age cut (nested, 2 person splits)" in rows
    fitted = json.loads((Path(cfg.run_dir) / "ensemble" / "weights.json").read_text())
    assert fitted["chosen"] == "weights + offsets + age cut" and len(fitted["age_cut"]) == 2
    report = (Path(cfg.run_dir) / "ensemble" / "report.md").read_text()
    assert "## Ages" in report and "age MAE (years)" in report and "ensemble.tune_age_cut" in report
    test = pair_dir(cfg.run_dir, "test_resnet", 0) / "test.npz"
    z = dict(np.load(test))
    z["age_probs"] = z["age_probs"][:, ::-1].copy()
    np.savez(test, **z)
    run_ensemble(cfg, log=lambda m: None)
    again = json.loads((Path(cfg.run_dir) / "ensemble" / "weights.json").read_text())
    assert again["age_cut"] == fitted["age_cut"] and again["honest_f1"] == fitted["honest_f1"]
    np.savez(test, **{**z, "age_probs": z["age_probs"][:, ::-1].copy()})
    run_ensemble(cfg, log=lambda m: None)
    df = predict_folder(cfg.run_dir, data_dir / "eval" / "images", tmp_path / "p.csv", **QUIET)
    df["ImageID"] = [Path(p).name for p in df["path"]]
    sub = pd.read_csv(Path(cfg.run_dir) / "submission.csv").merge(df, on="ImageID")
    assert len(sub) == 12 and (sub["ans"] == sub["class"]).all()


def test_resume_with_a_years_head_repeats_a_straight_run(data_dir, tmp_path):
    torch.set_num_threads(1)
    sets = [*YEARS, "train.mix.kind=vertical", "train.age_l1_weight=0.2"]
    straight, first, resumed = straight_and_resumed(tmp_path, data_dir, *sets)
    assert resumed.prepare().last is not None and resumed.updates == first.updates > 0
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    za = np.load(pair_dir(straight.cfg.run_dir, "test_resnet", 1) / "oof.npz")
    zb = np.load(pair_dir(resumed.cfg.run_dir, "test_resnet", 1) / "oof.npz")
    assert np.array_equal(za["age_probs"], zb["age_probs"]) and np.array_equal(za["logits"], zb["logits"])
