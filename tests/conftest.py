import os
import shutil
from pathlib import Path

import pytest

from folds.make import write_folds
from pipeline.config import load_config
from pipeline.tools.demo_data import make_demo_data

# Every Ray node the tests start (and every process they start) listens on the loopback address only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Under pytest-xdist (`make test` runs a worker per core) each worker, and every process a test starts, takes its
# share of the cores: tiny models gain nothing from more threads, and more would only fight the other workers.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Under pytest-xdist's loadgroup: a file's tests stay on one worker (its module fixtures are built once), and
    every test that starts Ray shares one worker: ray.init joins a Ray instance another worker started."""
    for item in items:
        ray = item.get_closest_marker("ray") or item.get_closest_marker("cluster")
        item.add_marker(pytest.mark.xdist_group("ray" if ray else item.path.name))


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory) -> Path:
    """A small generated data set, made once; tests copy it before changing anything."""
    return make_demo_data(tmp_path_factory.mktemp("demo") / "data", persons=30, eval_images=12, seed=1, elder_pool=8)


@pytest.fixture
def data_dir(demo_source, tmp_path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(demo_source, dst)
    return dst


def base_sets(tmp_path: Path, data_dir: Path) -> list[str]:
    """--set overrides that point the demo config at a test data set and a run folder under tmp_path."""
    return [f"data_dir={data_dir}", f"run_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'run' / 'cache'}",
            f"data.label_fixes={ROOT / 'configs' / 'label_fixes.csv'}", "data.use_external=false",
            f"external.path={data_dir / 'elder_pool' / 'faces.csv'}",
            # the classic path (one head, no refit) unless a test names these keys: test_heads and
            # test_pseudo_refit cover the others, and a refit would double every small training here
            "train.head=joint", "train.refit=false", "ensemble.test_from=folds"]


def make_config(tmp_path: Path, data_dir: Path, *overrides: str):
    """The demo config pointed at a test data set and a run folder under tmp_path."""
    return load_config(ROOT / "configs" / "demo.yaml", [*base_sets(tmp_path, data_dir), *overrides])


def cli_args(command: str, tmp_path: Path, data_dir: Path, *overrides: str) -> list[str]:
    """Arguments for `maskfold <command>` with the demo config pointed at test data."""
    args = [command, "--config", str(ROOT / "configs" / "demo.yaml")]
    for s in (*base_sets(tmp_path, data_dir), *overrides):
        args += ["--set", s]
    return args


# A tiny model on tiny images: a pair trains in about a second on 2 CPU cores.
TINY = ["folds.n_splits=2", "data.cache_size=[48,64]", "train.img_size=[40,48]", "train.batch_size=16",
        "train.epochs=2", "train.num_workers=0", "train.patience=null", "tta=[orig,hflip]",
        "backbones=[{name: test_resnet, lr: 0.003}]"]


def tiny_config(tmp_path, data_dir, *extra):
    """The demo config shrunk by TINY, with folds.csv written."""
    cfg = make_config(tmp_path, data_dir, *TINY, *extra)
    write_folds(cfg, log=lambda m: None)
    return cfg


def pytest_report_header(config):
    from tests.fuzz_kit import fuzz_seed

    return f"fuzz seed: {fuzz_seed()} (MASKFOLD_FUZZ_SEED replays a run; MASKFOLD_FUZZ_CASES sets its length)"


def straight_and_resumed(tmp_path, data_dir, *sets, fold=1):
    """A tiny run trained straight through, and the same run stopped after one epoch with a fresh Trainer ready to
    resume it: (straight, first, resumed). The schedule of the stopped run is built for every epoch, as the straight
    one's is, so a resume that restores everything ends in the same weights."""
    from pipeline.train.job import fold_job
    from pipeline.train.rundata import load_run_data
    from pipeline.train.trainer import Trainer

    quiet = dict(log=lambda m: None)
    cfg = tiny_config(tmp_path / "a", data_dir, *sets)
    straight = Trainer(cfg, fold_job(cfg, "test_resnet", fold), load_run_data(cfg, **quiet), progress=False, **quiet)
    straight.fit()
    cfg2 = tiny_config(tmp_path / "b", data_dir, *sets)
    data2 = load_run_data(cfg2, **quiet)
    first = Trainer(cfg2, fold_job(cfg2, "test_resnet", fold), data2, progress=False, **quiet)
    first.settings["epochs"] = 1
    first.fit()
    return straight, first, Trainer(cfg2, fold_job(cfg2, "test_resnet", fold), data2, progress=False, **quiet)
