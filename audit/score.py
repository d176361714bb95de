"""Scoring suspects on arrays: the OOF probabilities of every training photo against its labels.

Every score is a log-likelihood ratio in nats, per photo changed: how much better the OOF probabilities fit the
labels with the change than without it, averaged over the photos the change touches (a person's 7 photos for gender
and age, 2 photos for a swap, 1 for a single photo), plus the log prior of the kind of error. So the kinds share one
scale, and a suspect with a score above 0 is one whose change the models' evidence favours.

Gender and age band are one fact per person, so the evidence is pooled over the person's photos; a swap is a pair of
photos of one person whose mask labels fit better exchanged; a photo's mask state can also be wrong on its own.
Other single photos come from cleanlab's confident learning (cleanlab.filter.find_label_issues).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pipeline.labels import GENDERS, MASKS, PHOTOS, age_band_names, class_names, decode_label

EPS = 1e-3  # probabilities are clipped here, so that one photo moves a mean by at most log(999) = 6.9 nats
# Log priors of the kinds of mask error: the published fixes are all incorrect/normal swaps; a worn mask swapped
# with another state, or a single photo labelled wrongly, are rarer.
PRIOR_SWAP_IN = 0.0
PRIOR_SWAP_OTHER = -0.5
PRIOR_SINGLE = -1.0
COLUMNS = ["kind", "person_id", "field", "old", "new", "score", "reason", "marked"]


def task_probs(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) mask, (N, 2) gender and (N, 3) age-band probabilities: label = mask*6 + gender*3 + band."""
    t = probs.reshape(len(probs), 3, 2, 3)
    return t.sum((2, 3)), t.sum((1, 3)), t.sum((1, 2))


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, EPS, 1.0))


def _persons(photos: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    groups = photos.groupby("person_id", sort=False).indices
    return [(str(p), np.asarray(rows)) for p, rows in groups.items()]


def gender_suspects(photos: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """Every person, scored by the mean over their photos of log P(other gender) - log P(labelled gender)."""
    _, pg, _ = task_probs(probs)
    out = []
    for person, rows in _persons(photos):
        old = photos["gender"].iat[rows[0]]
        g = GENDERS.index(old)
        llr = _log(pg[rows, 1 - g]) - _log(pg[rows, g])
        other = pg[rows, 1 - g]
        out.append(("gender", person, "gender", old, GENDERS[1 - g], float(llr.mean()),
                    f"P({GENDERS[1 - g]}) {other.mean():.2f} on average over {len(rows)} photos (lowest "
                    f"{other.min():.2f}), labelled {old}", ""))
    return pd.DataFrame(out, columns=COLUMNS)


def _nearest_age(old_band: int, new_band: int, cuts) -> int:
    """The age nearest the labelled one that lies in new_band: the cut itself going up (30, 60), one year under it
    going down (29, 59)."""
    return int(cuts[new_band - 1]) if new_band > old_band else int(cuts[new_band]) - 1


def age_suspects(photos: pd.DataFrame, probs: np.ndarray, cuts) -> pd.DataFrame:
    """Every person, scored by the best other band's mean log-probability over their photos against the labelled
    band's; the new age is the nearest one across the cut into that band."""
    _, _, pa = task_probs(probs)
    names = age_band_names(cuts)
    out = []
    for person, rows in _persons(photos):
        age, band = int(photos["age"].iat[rows[0]]), int(photos["age_band"].iat[rows[0]])
        mean_log = _log(pa[rows]).mean(0)
        others = [b for b in range(len(names)) if b != band]
        best = max(others, key=lambda b: mean_log[b])
        shares = ", ".join(f"{n} {v:.2f}" for n, v in zip(names, pa[rows].mean(0)))
        new = _nearest_age(band, best, cuts)
        out.append(("age", person, "age", str(age), str(new), float(mean_log[best] - mean_log[band]),
                    f"mean P(band) {shares}; labelled {age} ({names[band]}), {new} moves them to {names[best]}", ""))
    return pd.DataFrame(out, columns=COLUMNS)


def _best_mask_change(lpm: np.ndarray, masks: np.ndarray) -> tuple[float, tuple]:
    """The best of: every pair of photos with different mask labels exchanged, every photo alone relabelled.
    Returns (score, ("swap", i, j)) or (score, ("mask", i, new mask code)), i and j rows within the person."""
    best = (-np.inf, None)
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            a, b = masks[i], masks[j]
            if a == b:
                continue
            gain = (lpm[i, b] + lpm[j, a] - lpm[i, a] - lpm[j, b]) / 2
            prior = PRIOR_SWAP_IN if {a, b} == {MASKS.index("incorrect"), MASKS.index("normal")} else PRIOR_SWAP_OTHER
            if gain + prior > best[0]:
                best = (gain + prior, ("swap", i, j))
        for m in range(len(MASKS)):
            if m != masks[i] and lpm[i, m] - lpm[i, masks[i]] + PRIOR_SINGLE > best[0]:
                best = (lpm[i, m] - lpm[i, masks[i]] + PRIOR_SINGLE, ("mask", i, m))
    return best


def mask_suspects(photos: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """Every person, with the best mask change found: a swap of two photos (field swap) or one photo relabelled
    (field mask)."""
    pm, _, _ = task_probs(probs)
    lpm = _log(pm)
    out = []
    for person, rows in _persons(photos):
        masks = photos["mask_code"].to_numpy()[rows]
        names = photos["photo"].to_numpy()[rows]
        score, (how, i, x) = _best_mask_change(lpm[rows], masks)
        if how == "swap":
            a, b = sorted((names[i], names[x]), key=PHOTOS.index)
            ra, rb = rows[list(names).index(a)], rows[list(names).index(b)]
            reason = (f"{a} labelled {MASKS[masks[list(names).index(a)]]} looks {_shares(pm[ra])}; "
                      f"{b} labelled {MASKS[masks[list(names).index(b)]]} looks {_shares(pm[rb])}")
            out.append(("swap", person, "swap", a, b, float(score), reason, f"{a} {b}"))
        else:
            reason = f"{names[i]} labelled {MASKS[masks[i]]} looks {_shares(pm[rows[i]])}"
            out.append(("swap", person, "mask", names[i], MASKS[x], float(score), reason, names[i]))
    return pd.DataFrame(out, columns=COLUMNS)


def _shares(p: np.ndarray) -> str:
    return "/".join(f"{v:.2f}" for v in p) + " (" + "/".join(MASKS) + ")"


def photo_suspects(photos: pd.DataFrame, probs: np.ndarray, cuts) -> pd.DataFrame:
    """cleanlab's label issues among single photos, each as the row that would fix it: a photo whose mask state
    disagrees becomes a mask row; one whose gender or age band disagrees, that person's gender or age row. Scored
    like the other kinds, on the probabilities of the task that disagrees."""
    from cleanlab.filter import find_label_issues

    labels = photos["label"].to_numpy()
    with warnings.catch_warnings():  # classes too small for cleanlab's per-class estimate are only warned about
        warnings.simplefilter("ignore")
        issues = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    tasks = task_probs(probs)
    names = class_names(cuts)
    out = []
    for i in issues:
        suggested = int(probs[i].argmax())
        was, now = decode_label(labels[i]), decode_label(suggested)
        task = next((t for t in range(3) if was[t] != now[t]), None)
        if task is None:
            continue
        row = photos.iloc[i]
        p = tasks[task][i]
        score = float(_log(p[now[task]]) - _log(p[was[task]])) + PRIOR_SINGLE
        reason = (f"cleanlab: {row['photo']} labelled {names[labels[i]]} (P {probs[i, labels[i]]:.2f}), "
                  f"predicted {names[suggested]} (P {probs[i, suggested]:.2f})")
        if task == 0:
            field, old, new = "mask", row["photo"], MASKS[now[0]]
        elif task == 1:
            field, old, new = "gender", GENDERS[was[1]], GENDERS[now[1]]
        else:
            field, old, new = "age", str(int(row["age"])), str(_nearest_age(was[2], now[2], cuts))
        out.append(("photo", str(row["person_id"]), field, old, new, score, reason, row["photo"]))
    return pd.DataFrame(out, columns=COLUMNS)


def _covered(single: pd.DataFrame, people: pd.DataFrame) -> np.ndarray:
    """Photos whose change a person-level suspect already makes: a gender or age row for the same person, or a
    swap or mask row that touches the same photo. They are that suspect's evidence, not suspects of their own."""
    fields = {(r.person_id, r.field) for r in people.itertuples() if r.field in ("gender", "age")}
    touched = {(r.person_id, photo) for r in people.itertuples() for photo in r.marked.split()}
    return np.array([(r.person_id, r.field) in fields if r.field in ("gender", "age")
                     else (r.person_id, r.old) in touched for r in single.itertuples()], dtype=bool)


def rank_suspects(photos: pd.DataFrame, probs: np.ndarray, cuts) -> pd.DataFrame:
    """Every suspect whose change the evidence favours (score > 0), best first, each row once."""
    people = pd.concat([gender_suspects(photos, probs), age_suspects(photos, probs, cuts),
                        mask_suspects(photos, probs)], ignore_index=True)
    people = people[people["score"] > 0]
    single = photo_suspects(photos, probs, cuts)
    single = single[~_covered(single, people)] if len(single) else single
    key = ["person_id", "field", "old", "new"]
    single = single.sort_values("score", ascending=False, kind="stable").drop_duplicates(key)
    table = pd.concat([people, single[single["score"] > 0]], ignore_index=True)
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
