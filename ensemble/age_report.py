"""The report's section on ages: error in years of the years members, the band confusion around each cut, and the
accuracy by true age across each cut (25-34 and 55-64 for the default cuts)."""
from __future__ import annotations

import numpy as np

from ensemble.report import markdown_table
from pipeline.data.ages import expected_age
from pipeline.labels import age_band_names, decode_label


def mae_rows(names: list[str], members: list, ages: np.ndarray) -> list[list]:
    """[member, OOF age MAE in years] for each years member, and for the mean of their expected ages."""
    guesses = {n: expected_age(m.oof, m.ages) for n, m in zip(names, members) if m is not None}
    if len(guesses) > 1:
        guesses["mean of the members' expected ages"] = np.mean(list(guesses.values()), axis=0)
    return [[n, float(np.abs(g - ages).mean())] for n, g in guesses.items()]


def cut_confusion(y, pred, cuts) -> list[list]:
    """[cut, true band, photos, predicted below the cut, predicted at or above it, predicted elsewhere] for the
    photos of the two bands either side of each cut."""
    names, true_band, pred_band = age_band_names(cuts), decode_label(y)[2], decode_label(pred)[2]
    rows = []
    for b, cut in enumerate(cuts):
        for band in (b, b + 1):
            at = true_band == band
            got = pred_band[at]
            rows.append([cut, names[band], int(at.sum()), int((got == b).sum()), int((got == b + 1).sum()),
                         int((~np.isin(got, (b, b + 1))).sum())])
    return rows


def accuracy_by_age(ages, y, pred, cuts, below: int = 5, above: int = 4) -> list[list]:
    """[age, photos, age-band accuracy, class accuracy] for each age from cut - 5 to cut + 4 (25-34, 55-64)."""
    rows = []
    for cut in cuts:
        for age in range(cut - below, cut + above + 1):
            at = ages == age
            if at.any():
                rows.append([age, int(at.sum()), float((decode_label(y[at])[2] == decode_label(pred[at])[2]).mean()),
                             float((y[at] == pred[at]).mean())])
    return rows


def age_lines(names, members, ages, y, pred, cuts, cuts_used=None) -> list[str]:
    """The markdown section; members: each member's MemberAges (None for a bands member), or None when unread."""
    lines = ["## Ages", ""]
    if cuts_used is not None:
        lines += [f"Age cuts tuned on OOF (ensemble.tune_age_cut): the years members' ages are summed into bands at "
                  f"{', '.join(f'{c:g}' for c in cuts_used)} instead of {', '.join(map(str, cuts))}.", ""]
    rows = mae_rows(names, members, ages) if members else []
    if rows:
        lines += ["Mean absolute error of the expected age (years head), out of fold:", ""]
        lines += markdown_table(["member", "age MAE (years)"], rows) + [""]
    lines += ["Age bands either side of each cut (final ensemble, OOF photos of those two bands):", ""]
    lines += markdown_table(["cut", "true band", "photos", "predicted below", "predicted at or above", "elsewhere"],
                            cut_confusion(y, pred, cuts))
    lines += ["", "Accuracy by true age across each cut:", ""]
    lines += markdown_table(["age", "photos", "age-band accuracy", "class accuracy"],
                            accuracy_by_age(ages, y, pred, cuts)) + [""]
    return lines
