"""The fuzz test's machinery: a case is one mutation of a small demo set or of its config, run through
`maskfold check-data` and `maskfold folds`, and judged against the unmutated set's results.

A mutation is a function registered with @mutation(kind); it changes one thing in a fresh copy (a `Work`) and
returns a `Case` that says what it did and what a correct answer looks like.
"""
from __future__ import annotations

import dataclasses
import os
import random
import re
import shutil
import signal
from pathlib import Path

import pandas as pd
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.layout import read_folds
from pipeline.tables.folds import fold_problems

COMMANDS = ("check-data", "folds")
# What must not change when a mutation keeps the set's meaning. race is free text carried along; path keeps
# its folder and photo name but not its extension's case or spelling (mask1.jpg and mask1.JPG are one photo).
MEANING_COLUMNS = ["image_id", "person_id", "gender", "age", "age_band", "mask", "photo", "label", "source", "fold"]
# The parts of check-data's summary that carry the training set's meaning (junk counts, notes and the eval count
# may change: a train-only set without eval/ means the same for training).
SUMMARY_LINES = re.compile(r"^(persons: \d+ +photos: \d+|photos per class: .*|label fixes applied: .*)", re.M)
CASE_SECONDS = 60  # a case that takes longer has hung (a FIFO opened, a loop followed)

MUTATIONS: dict[str, callable] = {}
DEFAULT_SEED = 22


def fuzz_seed() -> int:
    """The run's seed: MASKFOLD_FUZZ_SEED, else a fixed one so that the suite's answer does not vary."""
    return int(os.environ.get("MASKFOLD_FUZZ_SEED") or DEFAULT_SEED)


def fuzz_cases(default: int) -> int:
    return int(os.environ.get("MASKFOLD_FUZZ_CASES") or default)


def mutation(kind: str):
    def register(fn):
        assert kind not in MUTATIONS, kind
        MUTATIONS[kind] = fn
        return fn

    return register


@dataclasses.dataclass
class Case:
    """One mutation and what a correct answer to it is.

    what: the exact change, printed with the seed when the case fails.
    names: what a refusal must say; each entry is a word, or a tuple of words of which one is enough.
    refuse: commands that must refuse (a broken photo passes `folds`, which does not decode photos).
    meaning: on exit 0, "same" (the tables equal the unmutated set's) or "any" (a valid folds table suffices).
    warn: check-data must name it even when it exits 0 (questionable input that must not pass without a word).
    sets: --set arguments added to the command line.
    """

    what: str
    names: tuple = ()
    refuse: frozenset = frozenset()
    meaning: str = "same"
    warn: bool = False
    sets: tuple = ()


@dataclasses.dataclass
class Work:
    """A fresh copy of the demo set, its label-fix file and its config, for one case to damage."""

    root: Path
    rng: random.Random

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "fuzz.yaml"

    @property
    def fixes(self) -> Path:
        return self.root / "label_fixes.csv"

    @property
    def train_csv(self) -> Path:
        return self.data / "train" / "train.csv"

    @property
    def images(self) -> Path:
        return self.data / "train" / "images"

    @property
    def info_csv(self) -> Path:
        return self.data / "eval" / "info.csv"

    def table(self) -> pd.DataFrame:
        return pd.read_csv(self.train_csv, dtype=str, keep_default_na=False)

    def person(self) -> tuple[int, str]:
        """A random person: (train.csv line, folder name)."""
        paths = list(self.table()["path"])
        i = self.rng.randrange(len(paths))
        return i + 2, paths[i]

    def photo(self, folder: str | None = None) -> Path:
        folder = folder or self.person()[1]
        files = sorted(f for f in (self.images / folder).iterdir() if not f.name.startswith("."))
        return self.rng.choice(files)

    def eval_photo(self) -> Path:
        return self.data / "eval" / "images" / self.rng.choice(list(pd.read_csv(self.info_csv, dtype=str)["ImageID"]))

    def outside(self, name: str) -> Path:
        """A path in the case folder but outside the data set (link targets, moved copies)."""
        return self.root / "outside" / name

    def load_config(self) -> dict:
        return yaml.safe_load(self.config.read_text())

    def save_config(self, data: dict) -> None:
        self.config.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def rel(work: Work, path: Path) -> str:
    """How a message names a file: its last two parts (person folder and photo, or folder and table)."""
    return "/".join(path.relative_to(work.data).parts[-2:])


def make_work(source: Path, config_text: str, fixes: Path, root: Path, rng: random.Random) -> Work:
    work = Work(root, rng)
    shutil.copytree(source, work.data, symlinks=True)
    shutil.copy(fixes, work.fixes)
    work.config.write_text(config_text.replace("@ROOT@", str(root)))
    (root / "outside").mkdir()
    return work


def config_text(base: dict) -> str:
    """The fuzz config: the demo config resolved to one file (no extends), its paths under @ROOT@."""
    return yaml.safe_dump(base, sort_keys=False)


@dataclasses.dataclass
class Outcome:
    code: int
    output: str
    error: str | None  # an exception that escaped the command: a traceback for a user
    table: pd.DataFrame | None  # folds.csv when folds succeeded
    read_back: pd.DataFrame | None = None  # the same file as training reads it


class Hung(Exception):
    pass


def _alarm(signum, frame):
    raise Hung(f"no answer within {CASE_SECONDS} s")


def run_command(command: str, work: Work, case: Case) -> Outcome:
    args = [command, "--config", str(work.config)] + [w for s in case.sets for w in ("--set", s)]
    folds = work.root / "run" / "folds.csv"
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        res = CliRunner().invoke(main, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    error = None
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        error = f"{type(res.exception).__name__}: {res.exception}"
    table = read_back = None
    if command == "folds" and folds.is_file():
        table = pd.read_csv(folds, dtype=str, keep_default_na=False)
        read_back = read_folds(folds.parent)[0]
    return Outcome(res.exit_code, res.output, error, table, read_back)


def meaning(table: pd.DataFrame) -> pd.DataFrame:
    """A folds table reduced to what it means: sorted rows, the meaning columns and each path without extension."""
    out = table[MEANING_COLUMNS].copy()
    out["path"] = table["path"].str.replace(r"\.[A-Za-z]+$", "", regex=True)
    return out.sort_values("image_id").reset_index(drop=True)


def _named(output: str, names) -> list[str]:
    """The names (or groups of alternatives) that output fails to mention."""
    missing = []
    for n in names:
        options = n if isinstance(n, tuple) else (n,)
        if not any(o in output for o in options):
            missing.append(" or ".join(map(repr, options)))
    return missing


def judge(command: str, case: Case, out: Outcome, baseline: dict) -> list[str]:
    """What is wrong with one command's answer to a case; empty when it is a correct one."""
    wrong = []
    if out.error or "Traceback" in out.output:
        return [f"{command}: escaped exception {out.error or ''} (a traceback, not a message)"]
    if out.code != 0:
        if missing := _named(out.output, case.names):
            wrong.append(f"{command}: refused without naming {', '.join(missing)}")
        return wrong
    if command in case.refuse:
        return [f"{command}: exit 0 where it must refuse"]
    if command == "check-data":
        if case.meaning == "same" and SUMMARY_LINES.findall(out.output) != baseline["summary"]:
            wrong.append("check-data: exit 0 but the data summary changed (silently different data)")
        if case.warn and (missing := _named(out.output, case.names)):
            wrong.append(f"check-data: exit 0 without a word on {', '.join(missing)}")
    elif out.table is None:
        wrong.append("folds: exit 0 but no folds.csv")
    elif case.meaning == "same" and not meaning(out.table).equals(baseline["folds"]):
        wrong.append("folds: exit 0 but folds.csv differs from the unmutated set's (silently different data)")
    elif problems := fold_problems(out.table.astype({"fold": int})):
        wrong.append(f"folds: exit 0 with invalid folds: {problems}")
    elif not _read_back(out.table, out.read_back):
        wrong.append("folds: folds.csv as training reads it differs from what was written (ids read as numbers or NaN)")
    return wrong


def _read_back(written: pd.DataFrame, read: pd.DataFrame) -> bool:
    cols = ["image_id", "person_id", "path"]
    return read[cols].astype(object).equals(written[cols].astype(object))
