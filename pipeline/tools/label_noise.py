"""Known label errors for the demo set (`maskfold demo-data --label-noise N`), so the label audit can be seen at work.

Three kinds, N persons each, all different persons: the gender written is the other one, the incorrect_mask and
normal photos are swapped on disk, or the age written is across the nearest age cut. The photos are always drawn from
the true person; only what the labels say is wrong. The errors are listed in train/injected_errors.csv in the
format of the label-fix file (the row that undoes each error), a file the pipeline never reads.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from pipeline.errors import BadInput
from pipeline.labels import age_band
from pipeline.tables.label_fixes import FIX_COLUMNS

KINDS = ("gender", "swap", "age")
INJECTED_ERRORS = "injected_errors.csv"  # beside train.csv; the pipeline never reads it
CUTS = (30, 60)  # the demo's age bands are drawn for the default cuts
MIN_GROUP = 2  # every gender x age band keeps at least this many persons by label (the folds stratify on it)


def across_cut(age: int, cuts=CUTS) -> int:
    """The age mirrored across its nearest cut: 29 -> 30, 25 -> 34, 35 -> 24, 55 -> 64, 70 -> 49."""
    def distance(c):
        return c - age if age < c else age - c + 1

    c = min(cuts, key=distance)
    return c + (c - 1 - age) if age < c else c - 1 - (age - c)


def _group(person: dict) -> tuple[str, int]:
    return person["label_gender"], int(age_band(person["label_age"], CUTS))


def choose_errors(people: list[dict], n: int, seed: int) -> list[tuple[int, str]]:
    """Mark n persons per kind (label_gender, label_age and swapped on each person dict); (person index, kind) each.

    Its own random stream, so the photos and every other label are those of the set without noise. A person whose
    change would leave a gender x age band with fewer than MIN_GROUP persons is passed over.
    """
    for p in people:
        p.update(label_gender=p["gender"], label_age=p["age"], swapped=False)
    if n <= 0:
        return []
    if 3 * n > len(people):
        raise BadInput(f"--label-noise {n} needs {3 * n} persons (three kinds of error) but there are "
                       f"{len(people)}; raise --persons or lower --label-noise")
    counts = Counter(_group(p) for p in people)
    chosen, done = [], Counter()
    for i in np.random.default_rng([seed, 25]).permutation(len(people)):
        kind = next((k for k in KINDS if done[k] < n), None)
        if kind is None:
            break
        p = people[i]
        before = _group(p)
        if kind != "swap" and counts[before] <= MIN_GROUP:
            continue
        if kind == "gender":
            p["label_gender"] = "male" if p["gender"] == "female" else "female"
        elif kind == "age":
            p["label_age"] = across_cut(p["age"])
        counts[before] -= 1
        counts[_group(p)] += 1
        p["swapped"] = kind == "swap"
        done[kind] += 1
        chosen.append((int(i), kind))
    short = [k for k in KINDS if done[k] < n]
    if short:
        raise BadInput(f"--label-noise {n}: only {done[short[0]]} {short[0]} errors fit without leaving a gender x "
                       f"age band with fewer than {MIN_GROUP} persons; raise --persons or lower --label-noise")
    return chosen


def errors_table(people: list[dict], chosen: list[tuple[int, str]], folders: list[str]) -> pd.DataFrame:
    """Each error as the label-fix row that undoes it, the person named by its folder."""
    rows = []
    for i, kind in chosen:
        p = people[i]
        if kind == "gender":
            old, new, why = p["label_gender"], p["gender"], f"drawn {p['gender']}, labelled {p['label_gender']}"
        elif kind == "age":
            old, new, why = p["label_age"], p["age"], f"drawn aged {p['age']}, labelled {p['label_age']}"
        else:
            old, new, why = "incorrect_mask", "normal", "incorrect_mask and normal photos swapped"
        rows.append({"person_id": folders[i], "field": kind, "old": str(old), "new": str(new),
                     "note": f"injected: {why}"})
    return pd.DataFrame(rows, columns=FIX_COLUMNS)
