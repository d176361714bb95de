"""Blending out-of-fold and test predictions of several members (a member: one backbone of one run).

Works on arrays only; ensemble.run reads the files. The blends: a soft or hard vote with equal weights; weights
searched on the simplex; greedy ensemble selection (Caruana et al. 2004: forward selection with replacement, the
weights being how often each member was picked); stacking (a multinomial logistic regression on the members'
log-probabilities). Macro F1 rewards recall on rare classes that argmax under-predicts, so per-class offsets on
log-probabilities can be tuned on top of any of them. Everything fitted uses OOF predictions, so its honest gain
is measured nested: fitted on some persons (stacking: some folds), scored on the others.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from ensemble.simplex import simplex_search
from pipeline.labels import NUM_CLASSES
from pipeline.model.metrics import fast_macro_f1

OFFSET_GRID = np.round(np.arange(-2.0, 2.01, 0.1), 2)
# Fitted weights and stackers by their inputs: a blend with offsets starts from the same fit as the blend without,
# on every outer set and every nested part, so each is fitted once per ensemble run.
_FITS: OrderedDict = OrderedDict()
_FITS_KEPT = 64


def _note(notes: list[str] | None, line: str) -> None:
    """A line for the user in the caller's `notes` (once each: e.g. a stacker not converged), where it keeps any."""
    if notes is not None and line not in notes:
        notes.append(line)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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
    logp = np.maximum(probs, 1e-12)  # the searches call this hundreds of times: one buffer, logged in place
    np.log(logp, out=logp)
    if offsets is not None:
        logp += offsets
    return logp.argmax(1)


def search_weights(probs: list[np.ndarray], y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Coordinate search on the simplex for backbone weights that maximise macro F1."""
    return simplex_search(len(probs), lambda w: fast_macro_f1(y, predict_with(soft_vote(probs, w))), rounds)


def tune_offsets(probs: np.ndarray, y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class additive offsets on log-probabilities, by coordinate ascent over a grid: class by class, the grid
    value that most raises macro F1 (the first of equals), the other classes' offsets held."""
    logp = np.log(np.clip(probs, 1e-12, None))
    offsets = np.zeros(probs.shape[1])
    best = fast_macro_f1(y, logp.argmax(1))
    true_counts = np.bincount(y, minlength=probs.shape[1])
    for _ in range(rounds):
        improved = False
        for c in range(probs.shape[1]):
            for v, score in zip(OFFSET_GRID, _offset_scores(logp, y, offsets, c, true_counts)):
                if v != offsets[c] and score > best + 1e-9:  # as if each grid value were tried in turn
                    best, improved = score, True
                    offsets = offsets.copy()
                    offsets[c] = v
        if not improved:
            break
    return offsets


def _offset_scores(logp: np.ndarray, y: np.ndarray, offsets: np.ndarray, c: int, true_counts: np.ndarray) -> np.ndarray:
    """Macro F1 with each OFFSET_GRID value as class c's offset, the others held: O(N log N) for the whole grid, with
    the very choices of an argmax over every class at every grid value (ties going to the lower class).

    With the others held, a row moves from its best other class to c at some grid value and stays there for every
    larger one; found by bisection for every row at once, the rows counted by that value and summed up the grid give
    every grid value's confusion counts."""
    n_classes = logp.shape[1]
    others = logp + offsets
    others[:, c] = -np.inf
    other = others.argmax(1)
    other_score, wins_ties, own = others[np.arange(len(y)), other], c < other, np.ascontiguousarray(logp[:, c])
    lo, hi = np.zeros(len(y), np.int64), np.full(len(y), len(OFFSET_GRID))  # first grid index predicting c
    while (lo < hi).any():
        mid = (lo + hi) // 2
        score = own + OFFSET_GRID[np.minimum(mid, len(OFFSET_GRID) - 1)]
        takes = ((score > other_score) | ((score == other_score) & wins_ties)) & (lo < hi)
        hi, lo = np.where(takes, mid, hi), np.where(takes | (lo >= hi), lo, mid + 1)
    grid = len(OFFSET_GRID)

    def running(rows, by=None):  # rows counted by the grid index they move at (and by class), summed up the grid
        keys = lo[rows] if by is None else lo[rows] * n_classes + by[rows]
        width = 1 if by is None else n_classes
        return np.bincount(keys, minlength=(grid + 1) * width).reshape(grid + 1, width)[:grid].cumsum(0).squeeze()

    everyone = slice(None)
    moved, hits = running(everyone), running(everyone, other)  # rows predicting c; those, by their other class
    right = running(y == other, other)  # those whose other class is their true class
    true_c = running(y == c)
    predicted = np.bincount(other, minlength=n_classes) - hits
    predicted[:, c] += moved
    tp = (np.bincount(other[y == other], minlength=n_classes) - right).astype(np.float64)
    tp[:, c] += true_c
    denom = predicted + true_counts
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    return f1.mean(1)


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


STACK_MAX_ITER = 500
STACK_TOL = 1e-4  # on the largest gradient entry of the mean loss, as scikit-learn's lbfgs


def fit_stacker(probs: list[np.ndarray], y: np.ndarray, c: float = 1.0, notes: list[str] | None = None) -> dict:
    """Multinomial logistic regression on the members' log-probabilities (L2 on the coefficients, strength 1/c, as
    scikit-learn's LogisticRegression(C=c)); returned as plain arrays so that it can be stored in weights.json and
    applied without pickles.

    Fitted on standardised features: log-probabilities span -16..0, which left lbfgs unconverged after 2,000
    iterations; standardised, it converges in tens. The scaling is then folded into the coefficients, so the
    stored stacker applies to the raw features. A fit that still stops short is one line in `notes`, which the
    ensemble prints, not a library warning. Every fit starts from zeros: a nested fit that started from the fit on
    every photo would start from what its held-out part taught, and its figure would no longer be honest."""
    x = stack_features(probs)
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-12] = 1.0  # a constant feature (a class a member never predicts) carries nothing
    classes = np.unique(y)
    coef_s, intercept_s, converged = _multinomial_lbfgs((x - mean) / scale, np.searchsorted(classes, y), c)
    if not converged:
        _note(notes, f"stacking: a logistic regression stopped at {STACK_MAX_ITER} iterations before converging "
                     f"(C = {c}); a smaller ensemble.stacking_c regularises more and converges sooner")
    coef = np.zeros((NUM_CLASSES, x.shape[1]))
    intercept = np.full(NUM_CLASSES, -30.0)  # a class absent from y is never predicted
    coef[classes] = coef_s / scale
    intercept[classes] = intercept_s - coef[classes] @ mean
    return {"coef": coef, "intercept": intercept}


def _multinomial_lbfgs(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """(coef (K, D), intercept (K,), converged) minimising the mean cross-entropy + ||coef||^2 / (2 c N), y in 0..K-1,
    from zeros.

    The objective of scikit-learn's LogisticRegression (its loss summed times c, plus half the squared norm, divided
    by c N), solved by scipy's L-BFGS-B on plain matrix products: scikit-learn's multinomial gradient cost several
    times more per iteration here."""
    from scipy.optimize import minimize

    n, d = x.shape
    k = int(y.max()) + 1
    if k < 2:  # one class: nothing to separate
        return np.zeros((1, d)), np.zeros(1), True
    rows, reg = np.arange(n), 1.0 / (c * n)

    def loss_grad(theta):
        w, b = theta[: d * k].reshape(d, k), theta[d * k:]
        z = x @ w + b
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        total = e.sum(1)
        loss = float((np.log(total) - z[rows, y]).mean() + 0.5 * reg * (w * w).sum())
        e /= total[:, None]
        e[rows, y] -= 1  # the softmax minus the one-hot truth: the gradient of the loss on the scores
        e /= n
        return loss, np.concatenate([(x.T @ e + reg * w).ravel(), e.sum(0)])

    res = minimize(loss_grad, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": STACK_MAX_ITER, "gtol": STACK_TOL, "ftol": 64 * np.finfo(float).eps})
    return res.x[: d * k].reshape(d, k).T, res.x[d * k:], res.nit < STACK_MAX_ITER


def apply_stacker(stacker: dict, probs: list[np.ndarray]) -> np.ndarray:
    z = stack_features(probs) @ np.asarray(stacker["coef"]).T + np.asarray(stacker["intercept"])
    return softmax(z)


# blend kind -> how it is fitted: weights for a vote, a stacker, or weights per task (ensemble.task_blend)
BLENDS = ("equal", "weights", "selection", "stacking", "tasks")


def fit_blend(kind: str, probs: list[np.ndarray], y: np.ndarray, offsets: bool, method: str = "soft",
              steps: int = 25, c: float = 1.0, notes: list[str] | None = None) -> dict:
    """One blend fitted on OOF predictions: {"weights", "stacker" (or None), "offsets"}; what the fit met that the
    user should hear of goes to `notes`."""
    n = len(probs)
    weights, stacker = np.ones(n) / n, None
    if kind not in ("equal", "tasks"):
        weights, stacker = _fit_members(kind, probs, y, steps, c, notes)
    fitted = {"weights": weights, "stacker": stacker, "offsets": np.zeros(NUM_CLASSES)}
    if kind == "tasks":
        from ensemble.task_blend import fit_task_weights

        fitted["task_weights"] = fit_task_weights(probs, y)
    if offsets:
        fitted["offsets"] = tune_offsets(apply_blend(fitted, probs, method), y)
    return fitted


def _fit_members(kind: str, probs: list[np.ndarray], y: np.ndarray, steps: int, c: float, notes=None):
    """(weights, stacker) of a fitted blend kind, from _FITS when these very inputs were fitted before (with the
    notes of that fit)."""
    digest = hashlib.blake2b(np.ascontiguousarray(y).tobytes(), digest_size=16)
    for p in probs:
        digest.update(np.ascontiguousarray(p).tobytes())
    key = (kind, steps if kind == "selection" else None, c if kind == "stacking" else None, digest.hexdigest())
    if key not in _FITS:
        n, met = len(probs), []
        if kind == "weights":
            _FITS[key] = (search_weights(probs, y), None, met)
        elif kind == "selection":
            _FITS[key] = (greedy_selection(probs, y, steps), None, met)
        elif kind == "stacking":
            _FITS[key] = (np.ones(n) / n, fit_stacker(probs, y, c, met), met)
        else:
            raise ValueError(f"unknown blend kind {kind!r}; one of {', '.join(BLENDS)}")
        while len(_FITS) > _FITS_KEPT:
            _FITS.popitem(last=False)
    weights, stacker, met = _FITS[key]
    for line in met:
        _note(notes, line)
    return weights.copy(), None if stacker is None else {k: v.copy() for k, v in stacker.items()}


def apply_blend(fitted: dict, probs: list[np.ndarray], method: str = "soft") -> np.ndarray:
    """Class scores (N, C) of a fitted blend; argmax after adding fitted["offsets"] gives the classes."""
    if fitted.get("stacker") is not None:
        return apply_stacker(fitted["stacker"], probs)
    if fitted.get("task_weights") is not None:
        from ensemble.task_blend import apply_task_weights

        return apply_task_weights(fitted["task_weights"], probs)
    return combine(probs, method, fitted["weights"])


def apply_to_test(fitted: dict, per_fold: list[list[np.ndarray]], method: str = "soft") -> np.ndarray:
    """Class scores on the test photos, from each member's per-fold predictions (members x folds x (M, C)).

    A vote is linear, so it takes the fold means (so is the per-task blend in each member's marginals); a stacker was fitted on single-model OOF probabilities, so it is
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

