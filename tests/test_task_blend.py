"""The per-task blend (ensemble.task_blend): weights per task over the members' mask, gender and age marginals,
recomposed into 18 classes, and judged nested on held-out persons like every fitted blend."""
from __future__ import annotations

import numpy as np

from ensemble import blend, task_blend
from pipeline.labels import NUM_CLASSES, decode_label, task_sums


def _member(y: np.ndarray, good: set[int], rng) -> np.ndarray:
    """(N, 18) probabilities that know the tasks in `good` (0 mask, 1 gender, 2 age) and guess the others."""
    truth = decode_label(y)
    parts = []
    for t, n in enumerate((3, 2, 3)):
        p = rng.dirichlet(np.ones(n), len(y))
        if t in good:
            p = 0.3 * p + 0.7 * np.eye(n)[truth[t]]
        parts.append(p)
    return task_blend.recompose(parts)


def _two_members(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, n)
    return y, [_member(y, {0}, rng), _member(y, {1, 2}, rng)]  # a mask member, a person member


def test_marginals_and_product_invert_each_other_and_keep_a_distribution():
    y, probs = _two_members(50)
    for p in probs:
        assert np.allclose(task_blend.recompose(task_sums(p)), p)
    mixed = task_blend.apply_task_weights([[0.3, 0.7], [1, 0], [0.5, 0.5]], probs)
    assert np.allclose(mixed.sum(1), 1)
    assert np.allclose(task_sums(mixed)[1], task_sums(probs[0])[1])


def test_each_task_weights_the_member_that_knows_it_and_the_blend_beats_both_members():
    y, probs = _two_members()
    weights = task_blend.fit_task_weights(probs, y)
    assert weights.shape == (3, 2) and np.allclose(weights.sum(1), 1)
    assert weights[0, 0] > weights[0, 1] and weights[1, 1] > weights[1, 0] and weights[2, 1] > weights[2, 0]
    fitted = blend.fit_blend("tasks", probs, y, offsets=False)
    f1 = blend.fast_macro_f1(y, blend.predict_with(blend.apply_blend(fitted, probs)))
    best_single = max(blend.fast_macro_f1(y, p.argmax(1)) for p in probs)
    one_weight = blend.fast_macro_f1(y, blend.predict_with(blend.apply_blend(blend.fit_blend("weights", probs, y,
                                                                                               False), probs)))
    assert f1 > best_single + 0.2 and f1 > one_weight + 0.1


def test_the_nested_figure_fits_each_part_on_the_other_persons_only(monkeypatch):
    y, probs = _two_members(300, seed=1)
    persons = np.repeat(np.arange(100), 3)
    part = blend.person_parts(persons, 3, seed=0)
    fitted_on = []
    real = task_blend.fit_task_weights

    def recording(p, labels):
        fitted_on.append(len(labels))
        rows = [np.array_equal(labels, y[part != k]) for k in range(3)]
        assert any(rows), "fitted on rows that are not exactly the other parts' persons"
        return real(p, labels)

    monkeypatch.setattr(task_blend, "fit_task_weights", recording)
    pred = blend.nested_blend("tasks", probs, y, part, offsets=True)
    assert len(fitted_on) == 3
    for k in range(3):  # each part's held-out rows are predicted by the fit that never saw them
        held = part == k
        fitted = blend.fit_blend("tasks", [p[~held] for p in probs], y[~held], True)
        own = blend.predict_with(blend.apply_blend(fitted, [p[held] for p in probs]), fitted["offsets"])
        assert np.array_equal(pred[held], own)


def test_the_test_scores_of_fold_means_equal_the_mean_of_each_fold_blended():
    """Linear in each member's marginals: the fold means blended are the blend of the fold means."""
    y, probs = _two_members(40, seed=2)
    rng = np.random.default_rng(3)
    folds = [[p, rng.dirichlet(np.ones(NUM_CLASSES), len(p))] for p in probs]
    fitted = {"weights": np.ones(2) / 2, "stacker": None, "task_weights": [[0.2, 0.8], [0.6, 0.4], [1.0, 0.0]]}
    scores = blend.apply_to_test(fitted, folds)
    means = [np.mean(f, axis=0) for f in folds]
    assert np.allclose(scores, task_blend.apply_task_weights(fitted["task_weights"], means))

