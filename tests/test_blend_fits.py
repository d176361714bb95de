"""The blends' fits at scale: offsets tuned by running counts choose as a full argmax search would, the stacker
solves scikit-learn's logistic regression, and a fit that stops short is one note instead of a warning flood."""
import warnings

import numpy as np
import pytest

from ensemble import blend
from pipeline.tools.workload import member_logits


def brute_force_offsets(probs, y, rounds=3):
    """The plain coordinate ascent: every grid value of every class tried with an argmax over all classes."""
    logp = np.log(np.clip(probs, 1e-12, None))
    offsets = np.zeros(probs.shape[1])
    best = blend.fast_macro_f1(y, logp.argmax(1))
    for _ in range(rounds):
        improved = False
        for c in range(probs.shape[1]):
            for v in blend.OFFSET_GRID:
                if v == offsets[c]:
                    continue
                trial = offsets.copy()
                trial[c] = v
                score = blend.fast_macro_f1(y, (logp + trial).argmax(1))
                if score > best + 1e-9:
                    best, offsets, improved = score, trial, True
        if not improved:
            break
    return offsets


def members(n, k, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 18, n)
    return [blend.softmax(z) for z in member_logits(y, list(rng.uniform(0.5, 2.0, k)), rng)], y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_offsets_are_those_of_the_full_argmax_search_ties_included(seed):
    probs, y = members(600, 2, seed)
    p = blend.soft_vote(probs)
    if seed:  # coarse probabilities: many exact ties between classes, settled as argmax settles them
        p = np.round(p, 1 + seed % 2) + 1e-3
    assert np.array_equal(blend.tune_offsets(p, y), brute_force_offsets(p, y))


def test_stacker_solves_sklearns_logistic_regression_without_a_warning():
    from sklearn.linear_model import LogisticRegression

    probs, y = members(3000, 3, 5)
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stacker = blend.fit_stacker(probs, y, c=0.5, notes=notes)
    x = blend.stack_features(probs)
    mean, scale = x.mean(0), x.std(0)
    lr = LogisticRegression(C=0.5, max_iter=1000, tol=1e-8).fit((x - mean) / scale, y)
    ref = {"coef": lr.coef_ / scale, "intercept": lr.intercept_ - (lr.coef_ / scale) @ mean}
    ours, theirs = blend.apply_stacker(stacker, probs), blend.apply_stacker(ref, probs)
    assert np.abs(ours - theirs).max() < 5e-3  # both within their tolerances of one optimum
    assert (ours.argmax(1) == theirs.argmax(1)).mean() > 0.995
    assert notes == []


def test_a_stacker_stopped_short_is_one_note_naming_what_to_change(monkeypatch):
    probs, y = members(800, 2, 6)
    monkeypatch.setattr(blend, "STACK_MAX_ITER", 2)
    notes = []
    for part in range(3):  # several fits, one line
        blend.fit_stacker([p[part::3] for p in probs], y[part::3], notes=notes)
    assert len(notes) == 1 and "ensemble.stacking_c" in notes[0] and "2 iterations" in notes[0]


def test_a_blend_with_offsets_reuses_the_fit_without_and_nested_stacking_starts_cold():
    """Each nested stacker is fitted from zeros on its own parts only, nothing of its held-out part in its start."""
    probs, y = members(900, 3, 7)
    plain = blend.fit_blend("selection", probs, y, offsets=False, steps=7)
    with_offsets = blend.fit_blend("selection", probs, y, offsets=True, steps=7)
    assert np.array_equal(plain["weights"], with_offsets["weights"])
    folds = np.arange(len(y)) % 3
    nested = blend.nested_blend("stacking", probs, y, folds, False)
    cold = np.zeros(len(y), np.int64)
    for k in range(3):
        held = folds == k
        stacker = blend.fit_stacker([p[~held] for p in probs], y[~held])
        cold[held] = blend.apply_stacker(stacker, [p[held] for p in probs]).argmax(1)
    assert np.array_equal(nested, cold)


def test_the_choice_of_the_best_honest_blend_is_itself_judged_nested():
    """Two blends, each right on one person split only: either has an honest figure near 0.5, but a choice made on
    the other split always takes the wrong one there, and the figure of the choosing says so."""
    from ensemble.run import choice_judged_nested
    from pipeline.model.metrics import macro_f1

    y = np.tile(np.arange(18), 4)
    part = np.repeat([0, 1], 36)
    wrong = (y + 1) % 18
    honest_pred = {"A": np.where(part == 0, y, wrong), "B": np.where(part == 1, y, wrong)}
    assert min(macro_f1(y, p) for p in honest_pred.values()) > 0.3
    assert macro_f1(y, choice_judged_nested(honest_pred, y, part)) == 0.0
    # a blend better on every split is chosen everywhere: then the choice costs nothing
    better = {"half": np.where(y % 2 == 0, y, wrong), "all but one class": np.where(y == 0, wrong, y)}
    assert np.array_equal(choice_judged_nested(better, y, part), better["all but one class"])
