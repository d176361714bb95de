import re
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import ConfigError, load_config, save_config
from pipeline.labels import NUM_CLASSES
from pipeline.preflight import check_config
from tests.conftest import ROOT

# The shipped configs, found from this file (not the working directory): an empty glob would pass every test.
SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
assert SHIPPED, "no configs/*.yaml beside the tests"


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_extends_merges_and_lists_replace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # extends: is read beside the file, any other relative path from here
    write(tmp_path / "base.yaml", {"seed": 1, "train": {"epochs": 5, "lr": 0.1}, "tta": ["orig", "hflip"]})
    child = write(tmp_path / "exp.yaml", {"extends": "base.yaml", "train": {"epochs": 2}, "tta": ["orig"]})
    cfg = load_config(child)
    assert (cfg.seed, cfg.train.epochs, cfg.train.lr, cfg.tta) == (1, 2, 0.1, ["orig"])
    assert cfg.run_dir == "runs/exp"  # default run dir from the file stem


def test_set_overrides_with_types_and_list_index(tmp_path):
    child = write(tmp_path / "c.yaml", {"backbones": [{"name": "test_resnet"}, {"name": "test_vit"}]})
    cfg = load_config(child, ["train.epochs=3", "backbones.1.lr=0.5", "folds.n_splits=4", "data.use_external=true"])
    assert cfg.train.epochs == 3 and cfg.backbones[1].lr == 0.5 and cfg.folds.n_splits == 4
    assert cfg.data.use_external is True and cfg.backbones[0].lr is None


def test_unknown_key_names_key_and_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # extends: is read beside the file, any other relative path from here
    write(tmp_path / "base.yaml", {"train": {"epochs": 5}})
    child = write(tmp_path / "exp.yaml", {"extends": "base.yaml", "train": {"epoch": 2}})
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown key 'train\.epoch'"):
        load_config(child)


def test_unknown_key_in_base_names_the_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # extends: is read beside the file, any other relative path from here
    write(tmp_path / "base.yaml", {"foldz": {"n_splits": 5}})
    child = write(tmp_path / "exp.yaml", {"extends": "base.yaml"})
    with pytest.raises(ConfigError, match=r"base\.yaml: unknown key 'foldz'"):
        load_config(child)


@pytest.mark.parametrize(
    "data, key",
    [({"seed": "x"}, "seed"), ({"train": {"epochs": 2.5}}, "train.epochs"), ({"train": {"channels_last": "yes"}}, "train.channels_last"),
     ({"folds": 3}, "folds"), ({"backbones": [{"name": 3}]}, "backbones.0.name")],
)
def test_wrong_type_names_key_and_file(tmp_path, data, key):
    path = write(tmp_path / "bad.yaml", data)
    with pytest.raises(ConfigError, match=rf"bad\.yaml: '{key}' must be"):
        load_config(path)


def test_set_errors(tmp_path):
    path = write(tmp_path / "c.yaml", {"seed": 1})  # an empty config is refused before any --set
    with pytest.raises(ConfigError, match="--set train.epohcs=1: unknown key 'train.epohcs'"):
        load_config(path, ["train.epohcs=1"])
    with pytest.raises(ConfigError, match="'train.epochs' must be an integer"):
        load_config(path, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(path, ["train.epochs"])


def test_bad_choice_and_missing_file(tmp_path):
    path = write(tmp_path / "c.yaml", {"train": {"optimizer": "adamax"}})
    cfg = load_config(path)  # loading checks types; the names a registry holds are the preflight's
    with pytest.raises(ConfigError, match="c.yaml: 'train.optimizer' is 'adamax'"):
        check_config(cfg, str(path))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_resolved_config_round_trips(tmp_path):
    from pipeline.config import config_from_dict

    cfg = load_config("configs/demo.yaml")
    save_config(cfg, tmp_path / "config.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again == cfg


def test_every_shipped_config_loads():
    for path in SHIPPED:
        cfg = load_config(path)
        check_config(cfg, str(path))
        assert cfg.backbones and cfg.folds.n_splits >= 2


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_builds_its_parts(path):
    """Not only loads: each backbone's model, transforms, loss, optimizer and scheduler are built from it."""
    import numpy as np

    from pipeline.data.transforms import build_transform
    from pipeline.model import models
    from pipeline.model.criterion import build_criterion
    from pipeline.model.heads import timm_body
    from pipeline.model.optim import build_optimizer, build_scheduler

    cfg = load_config(path)
    for bb in cfg.backbones:
        if bb.kind != "timm":  # a face member trains no network (tests/test_face_member.py builds its head)
            continue
        settings = cfg.resolved(bb)
        # hub weights are not needed to check the wiring
        model = models.create(bb, allow_pretrained=False, head=cfg.train.head)
        for steps in (cfg.augment.train, cfg.augment.val):
            build_transform(steps, cfg.data.cache_size, settings["img_size"])
        loss = build_criterion(cfg.train, np.ones(NUM_CLASSES))
        opt = build_optimizer(timm_body(model), cfg.train, settings["lr"])
        sched = build_scheduler(opt, cfg.train, settings["epochs"], steps_per_epoch=10)
        x = torch.zeros(2, 3, 64, 64)  # a small input: the wiring, not the speed, is under test
        out = model(x)
        loss(out, torch.tensor([0, 17])).backward()
        opt.step()
        sched.step_update(1)
        sched.step(1, 0.5)
        assert out.shape == (2, NUM_CLASSES)


def test_a_key_written_twice_is_refused_with_its_lines(tmp_path):
    (tmp_path / "twice.yaml").write_text("train:\n  refit: true\n  epochs: 3\n  refit: false\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: line 4: 'refit' is written twice in one section \(first on "
                                          r"line 2\); keep one"):
        load_config(tmp_path / "twice.yaml")


def test_loading_a_config_imports_no_torch_timm_or_albumentations():
    import subprocess
    import sys

    code = ("import sys; from pipeline.config import load_config; load_config('configs/demo.yaml'); "
            "print([m for m in ('torch', 'timm', 'albumentations') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("key, value, choices", [("external.source", "utk", "utkface, fairface, csv"),
                                                 ("external.framing", "portait", "portrait, blur")])
def test_check_data_refuses_a_bad_external_stage_choice(tmp_path, key, value, choices):
    from click.testing import CliRunner

    from pipeline.cli import main

    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    res = CliRunner().invoke(main, ["check-data", "--config", str(demo), "--set", f"run_dir={tmp_path / 'run'}",
                                    "--set", f"{key}={value}"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines() == [f"Error: --set {key}={value}: '{key}' is {value!r}; choose one of "
                                               f"{choices}"]


def test_a_face_crop_without_dlib_is_refused_by_the_preflight(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dlib" else real(name, *a))
    cfg = load_config(SHIPPED[0], ["data.crop=face"])  # loading does not look for dlib
    with pytest.raises(ConfigError, match=r"'data.crop' is face but the `faces` extra \(dlib\) is not installed: "
                                          r"pip install 'maskfold\[faces\]', or set data.crop: none"):
        check_config(cfg, "c.yaml")
    check_config(load_config(SHIPPED[0], ["data.crop=none"]), "c.yaml")


def test_a_face_member_leaves_the_networks_identity_alone_and_has_its_detectors_in_its_own():
    from pipeline.config import load_config
    root = Path(__file__).resolve().parents[1]
    demo = load_config(root / "configs" / "demo.yaml")
    faces = load_config(root / "configs" / "demo-faces.yaml")
    assert faces.pair_hash("resnet10t") == demo.pair_hash("resnet10t")
    other = load_config(root / "configs" / "demo-faces.yaml", ["data.face_detector=hog+cnn"])
    assert other.pair_hash("resnet10t") == faces.pair_hash("resnet10t")  # no face crop: the networks never see boxes
    assert other.pair_hash("dlib_face") != faces.pair_hash("dlib_face")


def test_a_yaml_boolean_where_a_word_belongs_says_to_quote_the_word():
    with pytest.raises(ConfigError, match=r"'folds.same_face' must be a string, got False; unquoted, YAML reads "
                                          r"on/off, yes/no and true/false as true or false: write the word in quotes"):
        load_config(str(ROOT / "configs" / "demo.yaml"), ["folds.same_face=off"])
    assert load_config(str(ROOT / "configs" / "demo.yaml"), ['folds.same_face="off"']).folds.same_face == "off"


@pytest.mark.parametrize("key, value", [("lr", "5"), ("pretrained", "true"), ("weights", "/x.pth"), ("epochs", "100"),
                                        ("img_size", "[64, 64]")])
def test_a_network_setting_on_a_face_member_is_refused_not_ignored(key, value):
    backbones = f"backbones=[{{name: test_resnet}}, {{name: dlib_face, kind: face_embedding, {key}: {value}}}]"
    with pytest.raises(ConfigError, match=rf"'backbones\.1\.{key}' is set, but a face_embedding member trains no "
                                          r"network"):
        load_config(str(ROOT / "configs" / "demo.yaml"), [backbones])
    assert load_config(str(ROOT / "configs" / "demo-faces.yaml")).backbones[-1].kind == "face_embedding"


def test_a_bad_value_is_blamed_on_the_set_that_gave_it_and_else_on_the_file(tmp_path):
    demo = str(ROOT / "configs" / "demo.yaml")
    with pytest.raises(ConfigError, match=r"^--set train\.lr=-1: 'train\.lr' is -1\.0; use a learning rate above 0"):
        load_config(demo, ["train.lr=0.1", "train.lr=-1"])
    with pytest.raises(ConfigError, match=r"^--set backbones=\[\{name: test_resnet, epochs: 0\}\]: 'backbones\.0\.epochs'"):
        load_config(demo, ["backbones=[{name: test_resnet, epochs: 0}]"])
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"extends: {demo}\ntrain:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(mine))}: 'train\.lr' is -1"):
        load_config(mine, ["train.epochs=2"])
