import shutil
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.demo_data import make_demo_data

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory) -> Path:
    """A small generated data set, made once; tests copy it before changing anything."""
    return make_demo_data(tmp_path_factory.mktemp("demo") / "data", persons=30, eval_images=12, seed=1)


@pytest.fixture
def data_dir(demo_source, tmp_path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(demo_source, dst)
    return dst


def make_config(tmp_path: Path, data_dir: Path, *overrides: str):
    """The demo config pointed at a test data set and a run folder under tmp_path."""
    return load_config(
        ROOT / "configs" / "demo.yaml",
        [f"data_dir={data_dir}", f"run_dir={tmp_path / 'run'}", f"data.label_fixes={ROOT / 'configs' / 'label_fixes.csv'}",
         *overrides],
    )
