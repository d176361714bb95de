"""ensemble.tune_age_cut: the age cuts that sum the years members' age distributions into bands, fitted on OOF.

A member with a years age head (pipeline.model.years) writes its distribution over ages beside its 18 class logits.
Shifting the cuts (30 and 60 by default) moves mass between neighbouring bands: the competition's winners trained
with 57 or 58 as the 60+ boundary because their models under-predicted 60+; here the shift is learned from the
OOF predictions instead (within +-4 years, in half years), each cut in turn, to maximise the macro F1 of the
members' equal-weight vote. Members with band heads are left as they are.

It is a fitted choice, so a blend that uses it is judged like the offsets: fitted on some persons, scored on the
others (AgeCutBlends.nested_blend refits the cut inside every nested fit, then the blend on top of it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ensemble import blend
from pipeline.data.ages import band_probs
from pipeline.layout import pair_file, refit_file

SHIFT_GRID = sorted(np.round(np.arange(-4.0, 4.01, 0.5), 2), key=abs)  # no shift first: ties keep the labelled cuts


@dataclass
class MemberAges:
    ages: np.ndarray  # the grid of ages (K,)
    oof: np.ndarray  # (N, K) OOF distributions, in the ensemble's photo order
    test: list[np.ndarray]  # each fold's (M, K) eval distributions
    refit: np.ndarray | None  # the full-data refit's, when it has one


def _age_file(path) -> dict | None:
    if not path.is_file():
        return None
    z = np.load(path)
    return {k: z[k] for k in ("image_id", "age_probs", "ages")} if "age_probs" in z else None


def load_member_ages(preds, test_from: str) -> list[MemberAges | None]:
    """Each member's age distributions (None for a bands member), read beside the predictions the ensemble uses."""
    index = pd.Series(np.arange(len(preds.image_ids)), index=preds.image_ids)
    out = []
    for m in preds.members:
        folds = [_age_file(pair_file(m.run, m.backbone, k, "oof")) for k in range(m.cfg.folds.n_splits)]
        if any(f is None for f in folds):
            out.append(None)
            continue
        oof = np.zeros((len(index), len(folds[0]["ages"])))
        for f in folds:
            oof[index.reindex(f["image_id"].astype(str)).to_numpy().astype(int)] = f["age_probs"]
        test, refit = [], None
        if preds.test is not None:
            test = [_age_file(pair_file(m.run, m.backbone, k, "test"))["age_probs"] for k in range(len(folds))]
            if test_from != "folds":
                refit = _age_file(refit_file(m.run, m.backbone, "test"))["age_probs"]
        out.append(MemberAges(folds[0]["ages"], oof, test, refit))
    return out


def shift_bands(probs: np.ndarray, age_probs: np.ndarray, ages: np.ndarray, cuts, shift) -> np.ndarray:
    """(N, 18) class probabilities with their age bands re-summed from the distribution over ages at cuts + shift.

    Each class keeps its mask and gender share: its probability is scaled by (band mass at the shifted cuts) /
    (band mass at the labelled cuts), so no shift gives the probabilities back unchanged."""
    old = band_probs(age_probs, ages, cuts)
    new = band_probs(age_probs, ages, np.asarray(cuts, dtype=np.float64) + shift)
    p = probs.reshape(len(probs), -1, 3) * (new / np.maximum(old, 1e-12))[:, None, :]
    p = p.reshape(probs.shape)
    return p / p.sum(axis=1, keepdims=True)


class AgeCutBlends:
    """The blends of ensemble.blend with the age cut fitted first: fit_blend, apply_blend and nested_blend take and
    give what blend's do, on the OOF rows (all of them unless `rows` says which)."""

    def __init__(self, members: list[MemberAges | None], cuts):
        self.members, self.cuts = members, list(cuts)

    def shifted(self, probs: list[np.ndarray], shift, rows=None, ages_of=lambda m: m.oof) -> list[np.ndarray]:
        rows = slice(None) if rows is None else rows
        return [p if m is None else shift_bands(p, ages_of(m)[rows], m.ages, self.cuts, shift)
                for p, m in zip(probs, self.members)]

    def fit_shift(self, probs: list[np.ndarray], y: np.ndarray, rows=None) -> np.ndarray:
        """The shift of each cut that maximises the equal-weight vote's macro F1 on these rows, one cut at a time."""
        shift = np.zeros(len(self.cuts))
        def score(s):
            return blend.fast_macro_f1(y, blend.predict_with(blend.soft_vote(self.shifted(probs, s, rows))))

        best = score(shift)
        for _ in range(2):
            for c in range(len(self.cuts)):
                for v in SHIFT_GRID:
                    trial = shift.copy()
                    trial[c] = v
                    s = score(trial)
                    if s > best + 1e-9:
                        best, shift = s, trial
        return shift

    def fit_blend(self, kind, probs, y, offsets, method="soft", rows=None, **kw) -> dict:
        shift = self.fit_shift(probs, y, rows)
        fitted = blend.fit_blend(kind, self.shifted(probs, shift, rows), y, offsets, method, **kw)
        return {**fitted, "age_shift": shift}

    def apply_blend(self, fitted: dict, probs, method="soft", rows=None) -> np.ndarray:
        return blend.apply_blend(fitted, self.shifted(probs, fitted["age_shift"], rows), method)

    def nested_blend(self, kind, probs, y, part, offsets, method="soft", **kw) -> np.ndarray:
        """Each part predicted with the cut and the blend fitted on the other parts only."""
        pred = np.zeros(len(y), dtype=np.int64)
        for k in np.unique(part):
            fit_rows, held = np.flatnonzero(part != k), np.flatnonzero(part == k)
            fitted = self.fit_blend(kind, [p[fit_rows] for p in probs], y[fit_rows], offsets, method, fit_rows, **kw)
            scores = self.apply_blend(fitted, [p[held] for p in probs], method, held)
            pred[held] = blend.predict_with(scores, fitted["offsets"])
        return pred

    def test_inputs(self, fitted: dict, folds: list[list[np.ndarray]], refit: list[np.ndarray] | None):
        """The members' eval probabilities (per fold, and the refits') re-summed at the fitted cuts."""
        shift = fitted["age_shift"]
        folds = [[p if m is None else shift_bands(p, m.test[k], m.ages, self.cuts, shift) for k, p in enumerate(f)]
                 for f, m in zip(folds, self.members)]
        if refit is not None:
            refit = self.shifted(refit, shift, ages_of=lambda m: m.refit)
        return folds, refit

    def cuts_used(self, fitted: dict) -> list[float]:
        return [float(c) for c in np.asarray(self.cuts) + fitted["age_shift"]]


def age_cut_blends(cfg, preds, log=print) -> AgeCutBlends | None:
    """The age-cut blends when ensemble.tune_age_cut is on and some member has a years age head; else None."""
    if not cfg.ensemble.tune_age_cut:
        return None
    members = load_member_ages(preds, preds.test_from)
    if all(m is None for m in members):
        log("ensemble.tune_age_cut: no member has a years age head (train.age_head: years); the cuts stay as labelled")
        return None
    return AgeCutBlends(members, cfg.data.age_cuts)
