"""Photos that are one file under two names: a link, a hard link, or a person folder linked under a second name.

One photo under two persons would be trained on in one fold and validated in another; under two photo names of
one person it would carry two labels. Identity is the file's (device, inode), so every kind of link is caught.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def shared_files(data_dir: Path, df: pd.DataFrame) -> list[tuple[str, str]]:
    """(person, problem) for each pair of persons (or one person twice) sharing photo files."""
    first: dict[tuple[int, int], tuple[str, str]] = {}
    pairs: dict[tuple[str, str], list[str]] = {}
    for person, photo, path in zip(df["person_id"], df["photo"], df["path"]):
        try:
            st = (Path(data_dir) / path).stat()
        except OSError:
            continue  # a missing or unreadable photo is named by its own check
        seen = first.setdefault((st.st_dev, st.st_ino), (person, photo))
        if seen != (person, photo):
            pairs.setdefault((person, seen[0]), []).append(f"{photo} = {seen[0]}/{seen[1]}")
    problems = []
    for (person, other), same in pairs.items():
        whose = "other photos of this person" if person == other else f"photos of person {other}"
        problems.append((person, f"photos that are the same files as {whose} ({', '.join(same)}), through a "
                                 f"link or a hard link; each photo must be a file of its own, of one person: replace "
                                 f"the links with the photos"))
    return problems
