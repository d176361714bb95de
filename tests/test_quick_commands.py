"""The commands that build no model answer at once: neither they nor `--help` import torch, timm or
albumentations (4 s before any work), and a backbone's name is checked from timm's names cached per version."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "albumentations")
# The modules behind --help, check-data, folds, compare, cache and audit, with the functions those commands call.
MODULES = ["pipeline.cli", "pipeline.commands.options", "pipeline.commands.tools", "pipeline.preflight",
           "pipeline.checks", "pipeline.model.weights", "pipeline.model.timm_names", "folds.make",
           "pseudo_labels.current", "external_data.run", "ensemble.compare", "pipeline.data.cache", "audit.run"]


def _heavy_after(code: str, env: dict | None = None) -> list[str]:
    probe = f"{code}\nimport sys; print(repr([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    return eval(out.stdout.strip().splitlines()[-1])


def test_the_modules_behind_the_quick_commands_import_no_torch():
    assert _heavy_after("\n".join(f"import {m}" for m in MODULES)) == []


@pytest.mark.parametrize("args", [["--help"], ["folds", "--help"], ["train", "--help"], ["check-data", "--help"]])
def test_help_imports_no_torch(args):
    code = (f"from pipeline.cli import main\ntry:\n    main({args!r}, prog_name='maskfold')\n"
            f"except SystemExit:\n    pass")
    assert _heavy_after(code) == []


def test_check_data_folds_and_cache_run_without_torch(tmp_path, data_dir, monkeypatch):
    """The config's preflight for a command that builds no model, then the command, in a fresh process: the timm
    names come from their cached file (written first, as a previous command would have)."""
    from pipeline.model.timm_names import cache_file, timm_names

    monkeypatch.setenv("MASKFOLD_CACHE_DIR", str(tmp_path / "cache"))
    timm_names()
    assert cache_file().is_file()
    sets = [f"data_dir={data_dir}", f"run_dir={tmp_path / 'run'}", "data.use_external=false"]
    args = ["--config", "configs/demo.yaml", *[w for s in sets for w in ("--set", s)]]
    code = ("from pipeline.cli import main\n"
            f"for cmd in (['check-data', *{args!r}], ['folds', *{args!r}], ['cache', '--dir', {str(tmp_path)!r}]):\n"
            f"    try:\n        main(cmd, prog_name='maskfold')\n"
            f"    except SystemExit as e:\n        assert not e.code, e.code\n")
    assert _heavy_after(code) == []
    assert (tmp_path / "run" / "folds.csv").is_file()


def test_the_timm_names_file_is_per_version_and_rebuilt_when_missing(tmp_path, monkeypatch):
    from pipeline.model import timm_names as tn

    monkeypatch.setenv("MASKFOLD_CACHE_DIR", str(tmp_path))
    built = []
    monkeypatch.setattr(tn, "_from_timm", lambda: built.append(1) or {"models": ["resnet18"],
                                                                         "pretrained": ["resnet18.a1_in1k"]})
    monkeypatch.setattr(tn, "version", lambda name: "9.9")
    assert tn.timm_names()["models"] == ["resnet18"] and tn.timm_names() and built == [1]  # built once, then read
    assert json.loads((tmp_path / "timm-names-9.9.json").read_text())["models"] == ["resnet18"]
    monkeypatch.setattr(tn, "version", lambda name: "10.0")  # timm upgraded: a new list
    tn.timm_names()
    assert built == [1, 1] and (tmp_path / "timm-names-10.0.json").is_file()
    (tmp_path / "timm-names-10.0.json").write_text("{broken")
    tn.timm_names()
    assert built == [1, 1, 1]


def test_backbone_names_are_judged_as_timm_judges_them():
    import timm

    from pipeline.model.timm_names import backbone_name_problem

    names = {"models": timm.list_models(), "pretrained": timm.list_pretrained()}
    for name in ("resnet18", "resnet18.a1_in1k", "test_resnet", "convnext_tiny.fb_in22k"):
        assert backbone_name_problem(name, names) is None, name
    assert "did you mean resnet18" in backbone_name_problem("resnet181", names)
    assert backbone_name_problem("resnet18.no_such_tag", names).startswith("is not a timm model")


def test_the_checks_that_need_torch_are_left_to_the_commands_that_build_a_model():
    """A bad optimizer or augment step is refused before any work by the commands that train (needs_model), and
    left alone by check-data, folds and audit, which never build one."""
    from pipeline.config import ConfigError, load_config
    from pipeline.preflight import check_config

    for bad, key in (("train.optimizer=adamz", "'train.optimizer'"), ("augment.train=[{name: NoSuchStep}]",
                                                                       "augment.train.0")):
        cfg = load_config(ROOT / "configs" / "demo.yaml", [bad])
        check_config(cfg, "demo.yaml", needs_model=False)
        with pytest.raises(ConfigError, match=key):
            check_config(cfg, "demo.yaml")
