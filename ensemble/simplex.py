"""Member weights on the simplex by coordinate search: the one search behind the weighted blend (ensemble.blend, the
18 classes) and the per-task blend (ensemble.task_blend, each task's marginals)."""
from __future__ import annotations

import numpy as np

WEIGHT_GRID = np.linspace(0, 1, 11)


def simplex_search(n: int, score, rounds: int = 3) -> np.ndarray:
    """Weights of n members (summing to 1) that maximise score(weights): from equal weights, each member's weight in
    turn set to each grid value (the others rescaled), kept where it scores higher, for up to `rounds` rounds or
    until a round changes nothing. Ties keep the earlier weights."""
    w = np.ones(n) / n
    best = score(w)
    for _ in range(rounds if n > 1 else 0):
        improved = False
        for m in range(n):
            for v in WEIGHT_GRID:
                trial = w.copy()
                trial[m] = v
                if trial.sum() == 0:
                    continue
                trial /= trial.sum()
                s = score(trial)
                if s > best + 1e-9:
                    best, w, improved = s, trial, True
        if not improved:
            break
    return w
