"""Blending out-of-fold and test predictions of several members (a member: one backbone of one run).

Works on arrays only; ensemble.run reads the files. The blends: a soft or hard vote with equal weights; weights
searched on the simplex; greedy ensemble selection (Caruana et al. 2004: forward selection with replacement, the
weights being how often each member was picked); stacking (a multinomial logistic regression on the members'
log-probabilities). Macro F1 rewards recall on rare classes that argmax under-predicts, so per-class offsets on
log-probabilities can be tuned on top of any of them. Everything fitted uses OOF predictions, so its honest gain
is measured nested: fitted on some persons (stacking: some folds), scored on the others.
"""
from __future__ import annotations

import numpy as np

from pipeline.contract import NUM_CLASSES

WEIGHT_GRID = np.linspace(0, 1, 11)
OFFSET_GRID = np.round(np.arange(-2.0, 2.01, 0.1), 2)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fast_macro_f1(y: np.ndarray, pred: np.ndarray, n: int = NUM_CLASSES) -> float:
    """Macro F1 from a bincount confusion; same value as sklearn's with zero_division=0, ~50x faster."""
    cm = np.bincount(y * n + pred, minlength=n * n).reshape(n, n)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(n), where=denom > 0)
    return float(f1.mean())


def soft_vote(probs: list[np.ndarray], weights=None) -> np.ndarray:
    """Weighted mean of probability arrays (N, C); weights are normalised to sum 1."""
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.ones(len(probs)) / len(probs)
    return sum(wi * p for wi, p in zip(w, probs))


def hard_vote(probs: list[np.ndarray]) -> np.ndarray:
    """Votes per class from each model's argmax, ties broken by the summed probabilities.

    Returned as a score array whose argmax is the voted class, so it plugs into the same code paths.
    """
    n, c = probs[0].shape
    votes = np.zeros((n, c))
    for p in probs:
        votes[np.arange(n), p.argmax(1)] += 1
    tie_break = sum(probs) / (len(probs) + 1)  # < 1: never outweighs a vote
    return votes + tie_break / c


def predict_with(probs: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    logp = np.log(np.clip(probs, 1e-12, None))
    return (logp + (0 if offsets is None else offsets)).argmax(1)


def search_weights(probs: list[np.ndarray], y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Coordinate search on the simplex for backbone weights that maximise macro F1."""
    w = np.ones(len(probs)) / len(probs)
    best = fast_macro_f1(y, predict_with(soft_vote(probs, w)))
    if len(probs) == 1:
        return w
    for _ in range(rounds):
        improved = False
        for b in range(len(probs)):
            for v in WEIGHT_GRID:
                trial = w.copy()
                trial[b] = v
                if trial.sum() == 0:
                    continue
                trial /= trial.sum()
                score = fast_macro_f1(y, predict_with(soft_vote(probs, trial)))
                if score > best + 1e-9:
                    best, w, improved = score, trial, True
        if not improved:
            break
    return w


def tune_offsets(probs: np.ndarray, y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class additive offsets on log-probabilities, by coordinate ascent over a grid."""
    logp = np.log(np.clip(probs, 1e-12, None))
    offsets = np.zeros(probs.shape[1])
    best = fast_macro_f1(y, logp.argmax(1))
    for _ in range(rounds):
        improved = False
        for c in range(probs.shape[1]):
            for v in OFFSET_GRID:
                if v == offsets[c]:
                    continue
                trial = offsets.copy()
                trial[c] = v
                score = fast_macro_f1(y, (logp + trial).argmax(1))
                if score > best + 1e-9:
                    best, offsets, improved = score, trial, True
        if not improved:
            break
    return offsets


def combine(probs: list[np.ndarray], method: str, w=None) -> np.ndarray:
    return hard_vote(probs) if method == "hard" else soft_vote(probs, w)


def greedy_selection(probs: list[np.ndarray], y: np.ndarray, steps: int = 25) -> np.ndarray:
    """Caruana's forward selection with replacement: each step adds the member that most raises the bag's macro F1
    (ties: the earlier member); the weights are the pick counts over `steps`."""
    counts = np.zeros(len(probs))
    total = np.zeros_like(probs[0])
    for _ in range(steps):
        trial = [fast_macro_f1(y, predict_with((total + p) / (counts.sum() + 1))) for p in probs]
        best = int(np.argmax(trial))
        counts[best] += 1
        total = total + probs[best]
    return counts / counts.sum()


def stack_features(probs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.log(np.clip(p, 1e-7, None)) for p in probs], axis=1)


def fit_stacker(probs: list[np.ndarray], y: np.ndarray, c: float = 1.0) -> dict:
    """Multinomial logistic regression on the members' log-probabilities; returned as plain arrays so that it can
    be stored in weights.json and applied without scikit-learn's pickles."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit(stack_features(probs), y)
    coef = np.zeros((NUM_CLASSES, lr.coef_.shape[1]))
    intercept = np.full(NUM_CLASSES, -30.0)  # a class absent from y is never predicted
    coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
    return {"coef": coef, "intercept": intercept}


def apply_stacker(stacker: dict, probs: list[np.ndarray]) -> np.ndarray:
    z = stack_features(probs) @ np.asarray(stacker["coef"]).T + np.asarray(stacker["intercept"])
    return softmax(z)


# blend kind -> how it is fitted: weights for a vote, or a stacker
BLENDS = ("equal", "weights", "selection", "stacking")


def fit_blend(kind: str, probs: list[np.ndarray], y: np.ndarray, offsets: bool, method: str = "soft",
              steps: int = 25, c: float = 1.0) -> dict:
    """One blend fitted on OOF predictions: {"weights", "stacker" (or None), "offsets"}."""
    n = len(probs)
    weights, stacker = np.ones(n) / n, None
    if kind == "weights":
        weights = search_weights(probs, y)
    elif kind == "selection":
        weights = greedy_selection(probs, y, steps)
    elif kind == "stacking":
        stacker = fit_stacker(probs, y, c)
    fitted = {"weights": weights, "stacker": stacker, "offsets": np.zeros(NUM_CLASSES)}
    if offsets:
        fitted["offsets"] = tune_offsets(apply_blend(fitted, probs, method), y)
    return fitted


def apply_blend(fitted: dict, probs: list[np.ndarray], method: str = "soft") -> np.ndarray:
    """Class scores (N, C) of a fitted blend; argmax after adding fitted["offsets"] gives the classes."""
    if fitted.get("stacker") is not None:
        return apply_stacker(fitted["stacker"], probs)
    return combine(probs, method, fitted["weights"])


def apply_to_test(fitted: dict, per_fold: list[list[np.ndarray]], method: str = "soft") -> np.ndarray:
    """Class scores on the test photos, from each member's per-fold predictions (members x folds x (M, C)).

    A vote is linear, so it takes the fold means; a stacker was fitted on single-model OOF probabilities, so it is
    applied to each fold's models as they were and its outputs averaged (fold means are less confident)."""
    if fitted.get("stacker") is not None:
        folds = len(per_fold[0])
        return sum(apply_stacker(fitted["stacker"], [m[k] for m in per_fold]) for k in range(folds)) / folds
    return apply_blend(fitted, [np.mean(m, axis=0) for m in per_fold], method)


def test_scores(fitted: dict, folds: list[list[np.ndarray]] | None, refit: list[np.ndarray] | None,
                test_from: str = "folds", method: str = "soft") -> np.ndarray:
    """Class scores on the test photos from the models that ensemble.test_from names: each member's fold models
    (`folds`: members x folds x (M, C)), each member's full-data refit (`refit`: members x (M, C)), or both, as
    the mean of the two. The blend was fitted on the folds' OOF predictions either way."""
    parts = []
    if test_from in ("folds", "both"):
        parts.append(apply_to_test(fitted, folds, method))
    if test_from in ("refit", "both"):
        parts.append(apply_to_test(fitted, [[r] for r in refit], method))
    return parts[0] if len(parts) == 1 else (parts[0] + parts[1]) / 2


def nested_blend(kind: str, probs: list[np.ndarray], y: np.ndarray, part: np.ndarray, offsets: bool,
                 method: str = "soft", **kw) -> np.ndarray:
    """Each part predicted by the blend fitted on the other parts only: the honest figure of a fitted blend."""
    pred = np.zeros(len(y), dtype=np.int64)
    for k in np.unique(part):
        held = part == k
        fitted = fit_blend(kind, [p[~held] for p in probs], y[~held], offsets, method, **kw)
        pred[held] = predict_with(apply_blend(fitted, [p[held] for p in probs], method), fitted["offsets"])
    return pred


def person_parts(groups: np.ndarray, splits: int, seed: int = 0) -> np.ndarray:
    """A part number per row, the same for every row of a person: the nested split over persons."""
    uniq = np.unique(groups)
    part_of = dict(zip(uniq, np.random.default_rng(seed).permutation(len(uniq)) % splits))
    return np.array([part_of[g] for g in groups])


def error_correlation(probs: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Pairwise correlation of the members' OOF errors (1 where a member is wrong): low values add most."""
    errors = np.stack([(p.argmax(1) != y).astype(float) for p in probs])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(np.corrcoef(errors), nan=1.0)

