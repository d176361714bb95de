"""The submission contract: `ImageID,ans`, exactly eval/info.csv's ids in its order, ans an integer 0-17."""
from __future__ import annotations

import pandas as pd

from pipeline.errors import MaskfoldError


class SubmissionError(MaskfoldError, ValueError):
    """A submission that breaks the contract; the message says how."""


def validate_submission(sub: pd.DataFrame, expected_ids: list[str]) -> None:
    if list(sub.columns) != ["ImageID", "ans"]:
        raise SubmissionError(f"submission columns are {list(sub.columns)}; they must be ImageID,ans")
    ids = sub["ImageID"].astype(str).tolist()
    if ids != list(expected_ids):
        have, want = set(ids), set(expected_ids)
        missing, extra = sorted(want - have), sorted(have - want)
        dup = sorted(sub["ImageID"][sub["ImageID"].duplicated()].unique())
        parts = []
        if missing:
            parts.append(f"{len(missing)} eval id(s) missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} id(s) not in eval/info.csv (e.g. {extra[0]})")
        if dup:
            parts.append(f"{len(dup)} id(s) repeated (e.g. {dup[0]})")
        if not parts:
            first = next(i for i, (a, b) in enumerate(zip(ids, expected_ids)) if a != b)
            parts.append(f"rows are not in eval/info.csv order (first difference at row {first + 2})")
        raise SubmissionError("submission rejected: " + "; ".join(parts))
    ans = pd.to_numeric(sub["ans"], errors="coerce")
    bad = sub[ans.isna() | (ans % 1 != 0) | (ans < 0) | (ans > 17)]
    if len(bad):
        raise SubmissionError(f"submission rejected: {len(bad)} ans value(s) outside the integers 0-17 "
                              f"(e.g. {bad.iloc[0]['ImageID']}: {bad.iloc[0]['ans']!r})")
