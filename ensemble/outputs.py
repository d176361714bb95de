"""The ensemble's outputs as one unit: submission.csv, everything under ensemble/ (report, charts, weights.json,
oof.npz, test_probs.npz) and the run's config.yaml come from one `maskfold ensemble`, or stay as they were.

Written as temporaries and switched in together (pipeline.switch), the submission last: a refused, failed or
interrupted ensemble, or one that meets a full disk, leaves the previous complete set in place.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.layout import ensemble_dir, submission_csv
from pipeline.switch import one_unit


def current_outputs(run_dir) -> list[Path]:
    """The files of the ensemble outputs in place now (temporaries, locks and other hidden files left out)."""
    folder = ensemble_dir(run_dir)
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")) if folder.is_dir() else []
    return files + [p for p in [submission_csv(run_dir)] if p.is_file()]


def ensemble_outputs(run_dir):
    """A block whose atomic writes land as one set when it ends (see the module docstring); it yields the Switch,
    whose `held` list each write of the set is handed (atomic_path's `held`), and which says when the set is in."""
    return one_unit(run_dir, lambda: current_outputs(run_dir), last=[submission_csv(run_dir)])
