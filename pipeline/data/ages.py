"""Ages in years for the `years` age head (train.age_head): the grid of ages it predicts, the discretised Gaussian
it is trained towards, and how a distribution over ages is summed into the age bands.

An integer age a stands for the year [a, a + 1) of a life, so a cut c puts the share clip(a + 1 - c, 0, 1) of age
a's mass in the band above: a whole-year cut sends a person aged exactly c to the upper band (as
pipeline.labels.age_band does), and a fractional cut (57.5, tuned by the ensemble) splits one year between two
bands. Numpy only: the ensemble reads these without torch.
"""
from __future__ import annotations

import numpy as np


def age_grid(age_range) -> np.ndarray:
    """The ages a years head predicts: every whole year from age_range[0] to age_range[1], both included."""
    return np.arange(int(age_range[0]), int(age_range[1]) + 1, dtype=np.float64)


def band_weights(ages: np.ndarray, cuts) -> np.ndarray:
    """(K, 3): the share of each age's mass in each band for cuts (c1, c2), which may be fractional."""
    ages = np.asarray(ages, dtype=np.float64)
    above = [np.clip(ages + 1 - c, 0.0, 1.0) for c in cuts]
    return np.stack([1 - above[0], above[0] - above[1], above[1]], axis=1)


def band_probs(age_probs: np.ndarray, ages: np.ndarray, cuts) -> np.ndarray:
    """(N, K) distributions over ages -> (N, 3) band probabilities: the sum over each band's ages."""
    return np.asarray(age_probs, dtype=np.float64) @ band_weights(ages, cuts)


def gaussian_targets(age, ages: np.ndarray, sigma: float) -> np.ndarray:
    """(N, K) training targets: a Gaussian of width sigma (years) around each labelled age, over the grid, summing
    to one; an age outside the grid puts its mass at the nearest end."""
    age = np.asarray(age, dtype=np.float64).reshape(-1, 1)
    logits = -0.5 * ((np.asarray(ages)[None, :] - age) / sigma) ** 2
    t = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (t / t.sum(axis=1, keepdims=True)).astype(np.float32)


def expected_age(age_probs: np.ndarray, ages: np.ndarray) -> np.ndarray:
    """The mean of each (N, K) distribution over ages, in years."""
    p = np.asarray(age_probs, dtype=np.float64)
    return p @ np.asarray(ages, dtype=np.float64) / p.sum(axis=1)
