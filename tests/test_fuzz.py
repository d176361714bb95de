"""Fuzz test: seeded, bounded random single mutations of a small demo set and of its config, each run through
`maskfold check-data` and `maskfold folds`.

Each command must answer each mutation in one of two ways: exit 0 with the set unchanged in meaning (folds.csv and
check-data's figures equal the unmutated set's), or a non-zero exit without a traceback whose message names the
offending file or key. Kinds are drawn round-robin in a seeded order, so every kind runs once the case count
reaches their number; the rest of each mutation (which person, photo, cell, value) is drawn from the case's seed.

    MASKFOLD_FUZZ_CASES=2000 pytest tests/test_fuzz.py        # a longer run (default: DEFAULT_CASES)
    MASKFOLD_FUZZ_SEED=7 pytest tests/test_fuzz.py            # another seed (default: DEFAULT_SEED)
    MASKFOLD_FUZZ_SEED=7 pytest tests/test_fuzz.py -k case0017  # replay one case

A failing case prints its mutation, its seed and the line that replays it.
"""
import random
import shutil

import pytest

from pipeline.tools.demo_data import make_demo_data

# importing them registers their mutations
from tests import fuzz_config, fuzz_fixes, fuzz_photos, fuzz_tables  # noqa: F401
from tests.conftest import ROOT, make_config
from tests.fuzz_kit import (
    COMMANDS,
    MUTATIONS,
    SUMMARY_LINES,
    Case,
    config_text,
    fuzz_cases,
    fuzz_seed,
    judge,
    make_work,
    meaning,
    run_command,
)

# The default run: every kind once and then some, a minute or two on 2 CPU cores.
DEFAULT_CASES = 120
SEED = fuzz_seed()
CASES = fuzz_cases(DEFAULT_CASES)


def plan(seed: int, cases: int) -> list[str]:
    """The kind of each case: a seeded order of every kind, repeated."""
    kinds = sorted(MUTATIONS)
    random.Random(seed).shuffle(kinds)
    return [kinds[i % len(kinds)] for i in range(cases)]


def _params():
    for i, kind in enumerate(plan(SEED, CASES)):
        yield pytest.param(i, kind, id=f"seed{SEED}-case{i:04d}-{kind}")


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    """The unmutated set, its fuzz config and the answers both commands give on it."""
    root = tmp_path_factory.mktemp("fuzz")
    source = make_demo_data(root / "source", persons=12, eval_images=4, seed=3, elder_pool=0, n_jobs=1)
    cfg = make_config(root, source, "folds.n_splits=2", "backbones=[{name: test_resnet}]", "train.num_workers=0",
                      "data.cache_size=[48,64]", "train.img_size=[40,48]")
    base = cfg.to_dict()
    base.update(data_dir="@ROOT@/data", run_dir="@ROOT@/run", cache_dir="@ROOT@/run/cache")
    base["data"]["label_fixes"] = "@ROOT@/label_fixes.csv"
    text = config_text(base)
    fixes = ROOT / "configs" / "label_fixes.csv"
    work = make_work(source, text, fixes, root / "baseline", random.Random(0))
    out = {c: run_command(c, work, Case("no mutation")) for c in COMMANDS}
    assert all(o.code == 0 for o in out.values()), {c: o.output for c, o in out.items()}
    return {"source": source, "config": text, "fixes": fixes,
            "summary": SUMMARY_LINES.findall(out["check-data"].output), "folds": meaning(out["folds"].table)}


@pytest.mark.parametrize("index,kind", list(_params()))
def test_fuzz(index, kind, fuzz_base, tmp_path, monkeypatch):
    rng = random.Random(f"{SEED}:{index}")
    work = make_work(fuzz_base["source"], fuzz_base["config"], fuzz_base["fixes"], tmp_path / "case", rng)
    monkeypatch.chdir(work.root)  # whatever a mutation makes relative lands in the case's folder
    case = MUTATIONS[kind](work)
    wrong, outputs = [], []
    for command in COMMANDS:
        out = run_command(command, work, case)
        wrong += judge(command, case, out, fuzz_base)
        outputs.append(f"--- maskfold {command} (exit {out.code}):\n{out.output.strip()[-3000:]}")
    if not wrong:
        shutil.rmtree(work.root)  # an unexpected failure's copy stays for a look
    if wrong:
        pytest.fail(f"fuzz case {index} ({kind}), seed {SEED}: {case.what}\n" + "\n".join(f"  {w}" for w in wrong)
                    + f"\nreplay: MASKFOLD_FUZZ_SEED={SEED} MASKFOLD_FUZZ_CASES={max(CASES, index + 1)} "
                      f"python -m pytest tests/test_fuzz.py -k case{index:04d}\n" + "\n".join(outputs),
                    pytrace=False)
