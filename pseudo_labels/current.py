"""Whether this run's pseudo-labelled photos are still the ones its config asks for.

The photos were chosen and labelled under the settings the stage recorded in summary.json; a changed setting, or
a source run ensembled again since, needs a new `maskfold pseudo`. Only this stage knows which settings those are,
so the commands that read the photos ask it first (require_current).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.config import Config
from pipeline.data.extra import MISSING
from pipeline.errors import DataError, Problem
from pipeline.layout import blended_probs_npz, extra_train_csv, pseudo_dir, stage_summary

PSEUDO_HINT = MISSING["pseudo"][1]


def read_summary(run_dir) -> dict | None:
    try:
        return json.loads(stage_summary(pseudo_dir(run_dir)).read_text())
    except (OSError, ValueError):
        return None


def source_digest(path: Path) -> str:
    """What identifies the source run's blended eval probabilities."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def stale_reasons(cfg: Config, summary: dict) -> list[str]:
    """Why the photos on disk are not the ones this config asks for (none: they are)."""
    wrote = {"pseudo.threshold": summary.get("threshold"), "pseudo.soft": summary.get("soft"),
             "data.age_cuts": summary.get("age_cuts")}
    wanted = {"pseudo.threshold": cfg.pseudo.threshold, "pseudo.soft": cfg.pseudo.soft,
              "data.age_cuts": list(cfg.data.age_cuts)}
    if cfg.pseudo.from_run:
        wrote["pseudo.from_run"] = summary.get("from_run")
        wanted["pseudo.from_run"] = str(Path(cfg.pseudo.from_run).resolve())
    stale = [f"{k} is {wanted[k]} but the photos were written with {wrote[k]}" for k in wanted if wrote[k] != wanted[k]]
    source = blended_probs_npz(cfg.pseudo.from_run) if cfg.pseudo.from_run else None
    if source is not None and source.is_file() and source_digest(source) != summary.get("source_digest"):
        stale.append(f"{source} changed (the run was ensembled again) since the photos were labelled")
    return stale


def require_current(cfg: Config) -> None:
    """Refuses, naming summary.json and the command to rerun, when data.use_pseudo is on and the photos are missing
    or were made under other settings."""
    if not cfg.data.use_pseudo:
        return
    root = pseudo_dir(cfg.run_dir)
    summary = read_summary(cfg.run_dir)
    if summary is None and extra_train_csv(root).is_file():
        raise DataError([Problem(str(stage_summary(root)), "data.use_pseudo is on but this record of the settings "
                                                           "the photos were made under is missing or damaged")],
                        hint=PSEUDO_HINT)
    if summary is None or not extra_train_csv(root).is_file():
        raise DataError([Problem(str(extra_train_csv(root)), f"data.use_pseudo is on but {MISSING['pseudo'][0]}")],
                        hint=PSEUDO_HINT)
    stale = stale_reasons(cfg, summary)
    if stale:
        raise DataError([Problem(str(stage_summary(root)), "; ".join(stale))], hint=PSEUDO_HINT)
