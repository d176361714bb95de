"""The per-task blend: members differ by task (a network sees the mask, a face member sees the person), so each task
gets its own member weights.

Each member's 18 probabilities are summed into its mask, gender and age-band marginals; each task's marginals are
averaged with that task's weights; the 18 classes are recomposed as the product of the three blended marginals,
p(class) = p(mask) p(gender) p(age band), label = mask*6 + gender*3 + age band.

Why the product rather than the blended marginals applied to a member's conditionals: the three-head networks and
the face member are products already (pipeline.model.heads.decode, pipeline.model.face_head), so for them the product
loses nothing, and it needs no choice of whose conditionals to keep (a joint-head network's correlations between the
tasks are the one thing given up; offsets on top can still move any class). The weights of each task are searched
on the simplex for that task's macro F1 (ensemble.simplex, the search blend.search_weights makes for the 18 classes); the
blend's honest figure is nested like every fitted blend's (ensemble.run).
"""
from __future__ import annotations

import numpy as np

from ensemble.simplex import simplex_search
from pipeline.labels import NUM_CLASSES, TASK_SIZES, TASKS, decode_label, task_sums
from pipeline.model.metrics import fast_macro_f1


def recompose(parts: list[np.ndarray]) -> np.ndarray:
    """The product of the mask, gender and age-band distributions, as (N, 18) in label order."""
    m, g, a = parts
    return (m[:, :, None, None] * g[:, None, :, None] * a[:, None, None, :]).reshape(len(m), NUM_CLASSES)


def _search(parts: list[np.ndarray], y: np.ndarray, n: int, rounds: int = 3) -> np.ndarray:
    """Weights on the simplex for one task's members' marginals that maximise the task's macro F1."""
    stack = np.stack(parts)
    return simplex_search(len(parts), lambda w: fast_macro_f1(y, np.tensordot(w, stack, axes=1).argmax(1), n), rounds)


def fit_task_weights(probs: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """(3, members) weights, a row per task (mask, gender, age band), each row summing to 1."""
    per_member = [task_sums(p) for p in probs]
    return np.stack([_search([pm[t] for pm in per_member], labels, n)
                     for t, (labels, n) in enumerate(zip(decode_label(y), TASK_SIZES))])


def apply_task_weights(weights, probs: list[np.ndarray]) -> np.ndarray:
    """(N, 18) blended probabilities: each task's marginals weighted per task, recomposed as their product."""
    weights = np.asarray(weights, np.float64)
    per_member = [task_sums(p) for p in probs]
    blended = [sum(w * pm[t] for w, pm in zip(weights[t], per_member)) for t in range(len(TASKS))]
    return recompose(blended)


def weight_lines(weights, names: list[str]) -> list[str]:
    """The per-task weights, a line per task: `mask: resnet10t 0.50, dlib_face 0.50`."""
    return [f"{task}: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(names, row))
            for (task, _), row in zip(TASKS, np.asarray(weights))]
