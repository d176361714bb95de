"""The face member's head: one logistic regression per task (mask, gender, age band) on standardised face
embeddings, decoded to the 18 classes as the three-head networks are (pipeline.model.heads.decode: the product of
the three tasks' distributions, label = mask*6 + gender*3 + age band).

Fitted on the training rows it is given and nothing else: the regularisation (C) of each task is chosen by an inner
cross-validation grouped by person over those rows only, so a fold's head never sees its own persons, not even to
pick C. Soft targets (ages near a cut, soft pseudo-labels) count as networks count them: a row puts its target mass
on each class as a sample weight (cross-entropy against a soft target is that weighted sum). Each photo is a
training row in each embedding view (orig and its mirror image). Kept as plain arrays, so that best.pt holds it and
`maskfold predict` applies it without pickles.
"""
from __future__ import annotations

import numpy as np

from pipeline.labels import NUM_CLASSES, TASKS, task_sums

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
INNER_SPLITS = 3
ABSENT = -30.0  # the intercept of a class no training row has: never predicted
def _expand(x: np.ndarray, mass: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows (x, class, weight, source row) for every class a row puts mass on."""
    rows, cls = np.nonzero(mass > 1e-6)
    return x[rows], cls, mass[rows, cls] * weights[cls], rows


def _class_weights(mass: np.ndarray, power: float) -> np.ndarray:
    """frequency ** -power per class, mean 1 over the classes present (train.class_weight_power, as networks)."""
    counts = mass.sum(0)
    w = np.where(counts > 0, np.maximum(counts, 1e-9) ** -power, 0.0)
    return w / w[counts > 0].mean()


def _fit_lr(x, y, w, c: float, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(coef (n, D), intercept (n,)) of a multinomial logistic regression; absent classes never predicted."""
    from sklearn.linear_model import LogisticRegression

    coef, intercept = np.zeros((n_classes, x.shape[1])), np.full(n_classes, ABSENT)
    present = np.unique(y)
    if len(present) == 1:
        intercept[present] = 0.0
        return coef, intercept
    lr = LogisticRegression(C=c, max_iter=1000, tol=1e-4)
    lr.fit(x, y, sample_weight=w)
    if len(present) == 2:  # scikit-learn keeps one row for two classes: the second's score against the first
        coef[present[1]], intercept[present] = lr.coef_[0], [0.0, lr.intercept_[0]]
    else:
        coef[present], intercept[present] = lr.coef_, lr.intercept_
    return coef, intercept


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _inner_loss(x, mass, groups, weights, c: float, n: int) -> float:
    """Mean held-out cross-entropy of C over an inner split of the training persons (weighted as in the fit)."""
    from sklearn.model_selection import GroupKFold

    losses, total = 0.0, 0.0
    splits = min(INNER_SPLITS, len(np.unique(groups)))
    for inner_train, inner_val in GroupKFold(n_splits=splits).split(x, groups=groups):
        xt, yt, wt, _ = _expand(x[inner_train], mass[inner_train], weights)
        coef, intercept = _fit_lr(xt, yt, wt, c, n)
        xv, yv, wv, _ = _expand(x[inner_val], mass[inner_val], weights)
        logp = _log_softmax(xv @ coef.T + intercept)
        losses -= float((wv * logp[np.arange(len(yv)), yv]).sum())
        total += float(wv.sum())
    return losses / max(total, 1e-12)


def fit_head(vectors: np.ndarray, targets: np.ndarray, persons: np.ndarray, class_weight_power: float = 0.0,
             log=None) -> dict:
    """The head fitted on these rows only: vectors (N, views, D), targets (N, 18), persons (N,) for the inner split.

    Returns plain arrays: mean, scale (D,), and per task coef (n, D), intercept (n,), and the C chosen."""
    n_views = vectors.shape[1]
    x = vectors.reshape(-1, vectors.shape[2]).astype(np.float64)  # row i's views at i*views .. i*views+views-1
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-12] = 1.0
    x = (x - mean) / scale
    groups = np.repeat(np.asarray(persons).astype(str), n_views)
    head = {"mean": mean, "scale": scale}
    for (task, n), mass in zip(TASKS, task_sums(targets)):
        mass = np.repeat(mass, n_views, axis=0)
        weights = _class_weights(mass, class_weight_power)
        losses = {c: _inner_loss(x, mass, groups, weights, c, n) for c in C_GRID} if len(set(groups)) > 1 else {1.0: 0}
        c = min(losses, key=losses.get)
        xt, yt, wt, _ = _expand(x, mass, weights)
        head[f"{task}_coef"], head[f"{task}_intercept"] = _fit_lr(xt, yt, wt, c, n)
        head[f"{task}_c"] = np.array(c)
        if log:
            log(f"  {task}: C {c} (inner person-grouped CV over {len(set(groups))} training persons)")
    return head


def task_log_probs(head: dict, vectors: np.ndarray) -> list[np.ndarray]:
    """Each task's (N, n) log-probabilities, averaged over the embedding views as a network's TTA averages."""
    out = []
    for task, _ in TASKS:
        views = [(v - head["mean"]) / head["scale"] @ np.asarray(head[f"{task}_coef"]).T + head[f"{task}_intercept"]
                 for v in np.moveaxis(np.asarray(vectors, np.float64), 1, 0)]
        out.append(_log_softmax(np.mean([_log_softmax(z) for z in views], axis=0)))
    return out


def class_log_probs(head: dict, vectors: np.ndarray) -> np.ndarray:
    """(N, 18) class log-probabilities: log p(mask) + log p(gender) + log p(age band), in label order."""
    m, g, a = task_log_probs(head, vectors)
    return (m[:, :, None, None] + g[:, None, :, None] + a[:, None, None, :]).reshape(len(m), NUM_CLASSES)
