"""The docs site builds without a broken link or a missing page, and its reference pages follow the code: the config
reference the schema, the errors page every MaskfoldError subclass."""
from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.docs_ref import PACKAGES, config_reference, errors_reference

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_build_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    for page in ("index.html", "reference/config/index.html", "reference/cli/index.html",
                 "reference/errors/index.html", "benchmarks/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def test_the_config_reference_follows_the_schema(tmp_path):
    schema = ROOT / "pipeline" / "config" / "schema.py"
    page = config_reference(schema)
    assert "| `folds.n_splits` | `int` | `5` |" in page
    assert "| `train.optimizer` | `str` | `adamw` | adam, adamw, sgd |" in page  # the optimizer registry's names
    assert "`backbones.N.lr`" in page and "`train.loss.N.name`" in page
    copy = tmp_path / "schema.py"
    text = schema.read_text()
    assert text.count("    n_splits: int = 5") == 1
    copy.write_text(text.replace("    n_splits: int = 5", "    n_splits: int = 7"))
    assert "| `folds.n_splits` | `int` | `7` |" in config_reference(copy)
    # a field without its comment cannot reach the reference silently
    copy.write_text(text.replace("    seed: int = 42  # the seed", "    seed: int = 42\n    # the seed"
                                 ).replace("    seed: int = 42\n    # the seed", "    seed: int = 42\n\n    # the seed"))
    with pytest.raises(ValueError, match="Config.seed has no comment"):
        config_reference(copy)


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def _all_modules():
    """Every module of the project that imports here (optional extras that are missing are passed over)."""
    for pkg in PACKAGES:
        for info in pkgutil.walk_packages([str(ROOT / pkg)], prefix=f"{pkg}."):
            try:
                importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - a module of a missing extra; its errors are found from the others
                continue


def test_every_user_error_is_on_the_errors_page():
    from pipeline.errors import MaskfoldError

    _all_modules()
    subclasses, todo = set(), [MaskfoldError]
    while todo:
        cls = todo.pop()
        subclasses.add(cls)
        todo += cls.__subclasses__()
    page = errors_reference()
    assert len(subclasses) > 5
    missing = [c.__name__ for c in subclasses if f"\n## {c.__name__}\n" not in page]
    assert not missing, f"not on the errors page: {missing}"
    assert "Fix:" in page.split("## ConfigError", 1)[1].split("##", 1)[0]
