"""Three heads, softened age cuts, and timm's optimisers and schedules: each on its own, then in tiny trainings."""
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ensemble.predict import predict_folder
from ensemble.report import techniques_lines, techniques_used
from ensemble.run import run_ensemble
from pipeline.config import BackboneConfig, ConfigError, DataConfig, LossTerm, TrainConfig
from pipeline.data.targets import training_targets
from pipeline.labels import NUM_CLASSES, decode_label
from pipeline.layout import pair_dir
from pipeline.model import models
from pipeline.model.heads import ThreeHeadLoss, ThreeHeads, decode, marginals, split_target, timm_body
from pipeline.model.losses import CrossEntropy, build_loss
from pipeline.model.optim import build_optimizer, build_scheduler
from pipeline.preflight import check_config
from pipeline.records import BestMeta
from pipeline.train.job import fold_job
from pipeline.train.jobs import train_all
from pipeline.train.rundata import load_run_data
from pipeline.train.trainer import Trainer
from tests.conftest import make_config, straight_and_resumed, tiny_config

QUIET = {"log": lambda m: None}


# -- three heads


def test_three_heads_decode_to_the_product_of_their_distributions():
    torch.manual_seed(0)
    z = torch.randn(5, 8) * 3
    logp = decode(z)
    assert logp.shape == (5, NUM_CLASSES)
    assert torch.allclose(logp.exp().sum(1), torch.ones(5), atol=1e-6)
    pm, pg, pa = F.softmax(z[:, :3], 1), F.softmax(z[:, 3:5], 1), F.softmax(z[:, 5:], 1)
    for c in range(NUM_CLASSES):
        mask, gender, age = decode_label(c)
        assert torch.allclose(logp[:, c].exp(), pm[:, mask] * pg[:, gender] * pa[:, age], atol=1e-6)
    # the marginals of the decoded distribution are the heads' own log-probabilities
    for got, head in zip(marginals(logp), (z[:, :3], z[:, 3:5], z[:, 5:])):
        assert torch.allclose(got, F.log_softmax(head, 1), atol=1e-5)


def test_soft_18_class_targets_split_into_the_three_heads():
    t = torch.zeros(2, NUM_CLASSES)
    t[0, 0 * 6 + 1 * 3 + 0] = 0.625  # wear/F/<30 ...
    t[0, 0 * 6 + 1 * 3 + 1] = 0.375  # ... and wear/F/30-59 (a softened age)
    t[1, 2 * 6 + 0 * 3 + 2] = 0.5  # a CutMix of normal/M/60+ ...
    t[1, 1 * 6 + 1 * 3 + 0] = 0.5  # ... and incorrect/F/<30
    mask, gender, age = split_target(t)
    assert torch.allclose(mask, torch.tensor([[1.0, 0, 0], [0, 0.5, 0.5]]))
    assert torch.allclose(gender, torch.tensor([[0, 1.0], [0.5, 0.5]]))
    assert torch.allclose(age, torch.tensor([[0.625, 0.375, 0], [0.5, 0, 0.5]]))
    hard = split_target(torch.tensor([17]))
    assert [int(h.argmax()) for h in hard] == [2, 1, 2]


def test_three_head_ce_equals_18_class_ce_of_the_product():
    """-log p(class) = -log p(mask) - log p(gender) - log p(age): with weights [1, 1, 1] the losses agree."""
    torch.manual_seed(1)
    z = torch.randn(6, 8)
    target = F.softmax(torch.randn(6, NUM_CLASSES), 1)  # any soft target; hard ones are a special case
    loss = ThreeHeadLoss(TrainConfig(head="multi"), np.ones(NUM_CLASSES))
    whole = CrossEntropy(NUM_CLASSES)(decode(z), target)
    parts = sum(CrossEntropy(n)(F.log_softmax(h, 1), tt)
                for n, h, tt in zip((3, 2, 3), z.split([3, 2, 3], 1), split_target(target)))
    assert loss(decode(z), target).item() == pytest.approx(parts.item(), abs=1e-5)
    assert whole.item() == pytest.approx(parts.item(), abs=1e-5)
    hard = torch.tensor([0, 5, 17, 9, 3, 12])
    assert loss(decode(z), hard).item() == pytest.approx(CrossEntropy(NUM_CLASSES)(decode(z), hard).item(), abs=1e-5)
    # head weights scale each head's term; f1 is taken on the decoded 18 classes
    weighted = ThreeHeadLoss(TrainConfig(head="multi", head_weights=[2.0, 0.0, 1.0],
                                         loss=[LossTerm("ce"), LossTerm("f1", 0.5)]), np.ones(NUM_CLASSES))
    m, _, a = (CrossEntropy(n)(F.log_softmax(h, 1), tt)
               for n, h, tt in zip((3, 2, 3), z.split([3, 2, 3], 1), split_target(hard)))
    f1 = build_loss([LossTerm("f1", 0.5)])(decode(z), hard)
    assert weighted(decode(z), hard).item() == pytest.approx((2 * m + a + f1).item(), abs=1e-5)


def test_multi_head_model_freezes_loads_and_runs_channels_last(tmp_path):
    torch.manual_seed(0)
    bb = BackboneConfig(name="test_resnet")
    model = models.create(bb, head="multi")
    assert isinstance(model, ThreeHeads) and model.get_classifier().out_features == 8
    models.set_backbone_trainable(model, False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"net.fc.weight", "net.fc.bias"}
    models.set_backbone_trainable(model, True)
    model = model.to(memory_format=torch.channels_last).eval()
    x = torch.randn(3, 3, 48, 40).contiguous(memory_format=torch.channels_last)
    out = model(x)
    assert out.shape == (3, NUM_CLASSES) and torch.allclose(out.exp().sum(1), torch.ones(3), atol=1e-5)
    assert [h.shape[1] for h in model.head_logits(x)] == [3, 2, 3]
    assert models.norm_stats(model) == models.norm_stats(timm_body(model))
    meta = BestMeta(backbone={"name": "test_resnet"}, config={"train": {"head": "multi"}}, mean=[0.5] * 3,
                    std=[0.5] * 3, img_size=[48, 40], epoch=1, f1=0.0, hash="h", data=None, fold=0)
    again = models.model_from_best(meta, model.state_dict())
    assert torch.equal(again(x), out)


# -- softened age cuts


def test_soft_targets_near_a_cut_sum_to_one_and_touch_only_those_photos():
    ages = np.arange(18, 75)
    df = pd.DataFrame({"age": ages, "label": 2 * 6 + 1 * 3 + np.searchsorted([30, 60], ages, side="right")})
    hard = training_targets(df, DataConfig())
    assert (hard == np.eye(NUM_CLASSES)[df["label"]]).all()
    soft = training_targets(df, DataConfig(soften_near_cut=3))
    assert np.allclose(soft.sum(1), 1) and (soft >= 0).all()
    near = ((ages >= 27) & (ages <= 29)) | ((ages >= 57) & (ages <= 59))
    assert (soft[~near] == hard[~near]).all()  # exactly one-hot elsewhere
    assert (soft[near] != hard[near]).any(1).all()
    lab = df["label"].to_numpy()
    up = soft[np.arange(len(df)), np.minimum(lab + 1, NUM_CLASSES - 1)]
    share = dict(zip(ages[near], up[near]))
    assert share == pytest.approx({27: 0.125, 28: 0.25, 29: 0.375, 57: 0.125, 58: 0.25, 59: 0.375})
    assert (soft.argmax(1) == lab).all()  # the labelled band keeps the larger share
    assert (np.count_nonzero(soft[near], axis=1) == 2).all()  # only the band above receives mass


def test_technique_keys_are_checked(tmp_path):
    for bad, key in [("train.head=triple", "train.head"), ("train.head_weights=[1.0, 1.0]", "train.head_weights"),
                     ("data.soften_near_cut=30", "data.soften_near_cut"), ("data.soften_near_cut=-1", "data.soften_near_cut"),
                     ("train.layer_decay=1.5", "train.layer_decay"), ("train.min_lr=1.0", "train.min_lr"),
                     ("train.warmup_lr=-0.1", "train.warmup_lr")]:
        with pytest.raises(ConfigError, match=f"'{key}'"):  # at load, or (train.head's registry) at the preflight
            check_config(make_config(tmp_path, tmp_path / "data", bad), "demo.yaml")  # before any data is read


# -- optimisers and schedules from timm


def test_norm_and_bias_parameters_get_no_weight_decay():
    model = models.create(BackboneConfig(name="test_resnet"))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.05), 1e-3)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert len(decay) == len(names)
    for name, p in names.items():
        is_norm_or_bias = p.ndim <= 1 or name.endswith(".bias")
        assert decay[id(p)] == (0.0 if is_norm_or_bias else 0.05), name
    assert any(decay[id(names[n])] == 0.0 for n in names if ".bn" in n) and decay[id(names["fc.weight"])] == 0.05
    everything = build_optimizer(model, TrainConfig(weight_decay=0.05, no_decay_norm_bias=False), 1e-3)
    assert {g["weight_decay"] for g in everything.param_groups} == {0.05}
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.8), 1e-3)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8


def test_layer_decay_gives_lower_layers_a_smaller_lr():
    model = models.create(BackboneConfig(name="test_resnet"), head="multi")
    t = TrainConfig(layer_decay=0.5, scheduler="none")
    opt = build_optimizer(timm_body(model), t, 1e-3)
    build_scheduler(opt, t, epochs=2, steps_per_epoch=5)  # timm's schedules apply each group's lr_scale
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model.net.fc.weight)] == pytest.approx(1e-3)
    assert lr_of[id(model.net.conv1[0].weight)] < lr_of[id(model.net.layer4[0].conv1.weight)] < 1e-3


def lrs(t: TrainConfig, epochs=4, steps=5, metric=None):
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, t, 1e-2)
    sched = build_scheduler(opt, t, epochs, steps)
    out = [opt.param_groups[0]["lr"]]
    for n in range(1, epochs * steps + 1):
        sched.step_update(n)
        if n % steps == 0:
            sched.step(n // steps, metric)
        out.append(opt.param_groups[0]["lr"])
    return out, sched


def test_cosine_warms_up_from_warmup_lr_and_ends_at_min_lr():
    out, _ = lrs(TrainConfig(scheduler="cosine", warmup_epochs=1, warmup_lr=1e-4, min_lr=1e-5))
    assert out[0] == pytest.approx(1e-4)  # the first update runs at warmup_lr
    assert out[1:5] == pytest.approx([1e-4 + k * (1e-2 - 1e-4) / 5 for k in range(1, 5)])
    assert out[5] == pytest.approx(1e-2)  # warm-up over: the full lr, then cosine down
    assert all(a >= b for a, b in itertools.pairwise(out[5:]))
    assert out[-1] == pytest.approx(1e-5)
    step, _ = lrs(TrainConfig(scheduler="step", step_size=2, step_gamma=0.5))
    assert step[0] == step[9] == pytest.approx(1e-2) and step[10] == step[19] == pytest.approx(5e-3)
    flat, _ = lrs(TrainConfig(scheduler="none"))
    assert set(flat) == {1e-2}


def test_plateau_lowers_the_lr_and_saves_its_patience():
    out, sched = lrs(TrainConfig(scheduler="plateau", plateau_patience=1, plateau_factor=0.5), metric=0.5)
    assert out[0] == 1e-2 and out[-1] < 1e-2
    state = sched.state_dict()
    assert "num_bad_epochs" in state and "best" in state
    _, fresh = lrs(TrainConfig(scheduler="plateau"), epochs=1)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state


def test_cross_entropy_matches_the_weighted_formula():
    """F.cross_entropy with probability targets: mean over photos of -sum_c w_c t'_c log p_c, t' smoothed."""
    torch.manual_seed(2)
    logits, target = torch.randn(7, 5), F.softmax(torch.randn(7, 5) * 2, 1)
    w, eps = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.7]), 0.2
    smoothed = target * (1 - eps) + eps / 5
    manual = -(smoothed * F.log_softmax(logits, 1) * w).sum(1).mean()
    assert CrossEntropy(5, label_smoothing=eps, class_weights=w.numpy())(logits, target).item() == pytest.approx(
        manual.item(), abs=1e-6)
    hard = torch.tensor([0, 1, 2, 3, 4, 0, 2])  # hard labels: the same formula, not the weight-normalised mean
    manual = -(F.one_hot(hard, 5) * F.log_softmax(logits, 1) * w).sum(1).mean()
    assert CrossEntropy(5, class_weights=w.numpy())(logits, hard).item() == pytest.approx(manual.item(), abs=1e-6)


# -- trainings


def test_tiny_multi_head_training_writes_valid_log_probabilities(data_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, data_dir, "train.head=multi", "train.head_weights=[1.0, 0.5, 2.0]",
                      "data.soften_near_cut=3", "train.mix.kind=cutmix", "train.mix.prob=0.5",
                      "train.loss=[{name: ce, label_smoothing: 0.1}, {name: focal, weight: 0.5}, {name: f1, weight: 0.5}]",
                      "train.class_weight_power=0.5", "train.sampler_power=0.5", "train.layer_decay=0.8", "tta=[orig]",
                      "backbones=[{name: test_resnet, lr: 0.003, freeze_epochs: 1}]")
    data = load_run_data(cfg, **QUIET)
    trainer = Trainer(cfg, fold_job(cfg, "test_resnet", 0), data, progress=False, **QUIET)
    near = np.isin(data.folds["age"].to_numpy()[trainer.train_rows], [27, 28, 29, 57, 58, 59])
    assert near.any() and (trainer.train_targets[near].max(1) < 1).all()
    assert (trainer.train_targets[~near].max(1) == 1).all()
    info = trainer.fit()
    d = pair_dir(cfg.run_dir, "test_resnet", 0)
    oof = np.load(d / "oof.npz")
    logp = oof["logits"]
    assert logp.shape == (len(trainer.val_rows), NUM_CLASSES) and (logp <= 1e-6).all()
    assert np.allclose(np.exp(logp).sum(1), 1, atol=1e-5)
    test = np.load(d / "test.npz")["logits"]
    assert np.allclose(np.exp(test).sum(1), 1, atol=1e-5)
    assert info.epochs_run == 2 and pd.read_csv(d / "metrics.csv")["train_loss"].notna().all()
    assert torch.load(d / "best.pt", weights_only=True)["config"]["train"]["head"] == "multi"


def test_resume_with_the_new_techniques_repeats_a_straight_run(data_dir, tmp_path):
    """Stop after one epoch and resume == two epochs straight, with three heads, soft ages and a plateau schedule."""
    torch.set_num_threads(1)
    sets = ["train.head=multi", "data.soften_near_cut=2", "train.scheduler=plateau", "train.plateau_patience=0",
            "train.mix.kind=vertical", "train.layer_decay=0.7"]
    straight, first, resumed = straight_and_resumed(tmp_path, data_dir, *sets)
    assert resumed.prepare().last is not None and resumed.updates == first.updates > 0
    assert resumed.sched.state_dict() == first.sched.state_dict()
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [g["lr"] for g in straight.opt.param_groups] == [g["lr"] for g in resumed.opt.param_groups]
    assert straight.history[-1]["val_f1"] == resumed.history[-1]["val_f1"]


def test_multi_head_run_ensembles_predicts_and_names_its_techniques(data_dir, tmp_path):
    """Three heads through the whole chain: train-all, ensemble (report line), `maskfold predict` (the same classes)."""
    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path, data_dir, "train.head=multi", "data.soften_near_cut=3", "train.epochs=1")
    assert (train_all(cfg, jobs=1, **QUIET)["status"] == "done").all()
    lines = []
    run_ensemble(cfg, log=lines.append)
    assert "techniques: train.head=multi, data.soften_near_cut=3" in lines
    assert "techniques: train.head=multi, data.soften_near_cut=3" in (Path(cfg.run_dir) / "ensemble" / "report.md").read_text()
    df = predict_folder(cfg.run_dir, data_dir / "eval" / "images", tmp_path / "p.csv", **QUIET)
    df["ImageID"] = [Path(p).name for p in df["path"]]
    sub = pd.read_csv(Path(cfg.run_dir) / "submission.csv").merge(df, on="ImageID")
    assert len(sub) == 12 and (sub["ans"] == sub["class"]).all()


# -- the report


def test_report_names_the_techniques_away_from_their_defaults():
    cfg = {"train": {"head": "multi", "layer_decay": None}, "data": {"soften_near_cut": 3}}
    assert techniques_used(cfg) == ["train.head=multi", "data.soften_near_cut=3"]
    assert techniques_used({"train": {}, "data": {}}) == []
    assert techniques_lines(["train.head=multi"], {"a/resnet": ["train.head=multi"], "b/resnet": []}) == [
        "techniques: train.head=multi", "techniques of b/resnet: defaults"]
