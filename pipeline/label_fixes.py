"""Label fixes (`data.label_fixes`, e.g. configs/label_fixes.csv): read, checked with train.csv's own rules, and
applied to the persons read from train.csv. A fix applies only when the current value is its `old`, so reruns
are safe."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config.schema import DataConfig
from pipeline.config.typed_yaml import where_relative
from pipeline.contract import FIX_COLUMNS, GENDERS, MASKS, PHOTOS, DataError, Problem, Report, age_problem

FIX_FIELDS = ("gender", "age", "swap", "mask")


def load_label_fixes(path: str | Path) -> pd.DataFrame:
    """Read the label-fix file. Rows: person_id, field (gender | age | swap | mask), old, new, note; each checked
    with train.csv's rules, so a fix cannot bring in a value that train.csv would refuse.

    swap: old and new name two photos whose mask labels are exchanged; mask: old names one photo, new the mask state
    it shows (wear, incorrect or normal)."""
    path = Path(path)
    need = FIX_COLUMNS
    if not path.is_file():
        raise DataError([Problem(str(path), f"label-fix file not found{where_relative(path)}; fix data.label_fixes "
                                            f"or set it to null")])
    try:
        fixes = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except pd.errors.EmptyDataError:
        raise DataError([Problem(str(path), f"empty file (no header); it must start with the header {','.join(need)}, "
                                            f"or set data.label_fixes to null")]) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError([Problem(str(path), f"not a readable CSV ({str(e).strip().splitlines()[0]}); re-export it "
                                            f"as plain CSV")]) from None
    absent = [c for c in need if c not in fixes.columns]
    if absent:
        raise DataError([Problem(str(path), f"missing column(s) {', '.join(absent)}; header: {','.join(need)}")])
    bad = [Problem(f"{path} line {line}", why) for line, fix in enumerate(fixes.itertuples(index=False), start=2)
           if (why := _fix_problem(fix))]
    if bad:
        raise DataError(bad)
    return fixes


def _fix_problem(fix) -> str | None:
    """What is wrong with one label fix, or None."""
    if fix.field not in FIX_FIELDS:
        return f"field {fix.field!r}; use one of {', '.join(FIX_FIELDS)}"
    if fix.field == "swap" and not {fix.old, fix.new} <= set(PHOTOS):
        return f"swap needs two photo names from {', '.join(PHOTOS)}"
    if fix.field == "mask" and not (fix.old in PHOTOS and fix.new in MASKS):
        return (f"mask fix needs a photo name ({', '.join(PHOTOS)}) as old and a mask state ({', '.join(MASKS)}) "
                f"as new")
    if fix.field == "gender" and not {fix.old, fix.new} <= set(GENDERS):
        return "gender fix needs old and new of male/female"
    if fix.field == "age":
        for value in (fix.old, fix.new):
            if why := age_problem(value)[1]:
                return why
    if fix.old == fix.new:
        return f"swap names {fix.old} twice; name two different photos" if fix.field == "swap" else \
            f"old and new are the same ({fix.old}); the fix would change nothing: correct or remove the row"
    return None


def apply_label_fixes(people: list, data_cfg: DataConfig, report: Report) -> tuple[list[list], set, dict]:
    """The persons (id, folder, gender, race, age, photos) with gender and age fixes applied, the photo swaps
    (folder, photo, photo) to apply to their mask labels, and single photos' mask states ((folder, photo) -> mask,
    applied after the swaps); what was done, skipped or refused goes to the report."""
    fixes = load_label_fixes(data_cfg.label_fixes) if data_cfg.label_fixes else pd.DataFrame()
    by_folder = {p[1]: i for i, p in enumerate(people)}
    by_id: dict[str, list[int]] = {}
    for i, p in enumerate(people):
        by_id.setdefault(p[0], []).append(i)
    people = [list(p) for p in people]
    swaps, masks = set(), {}
    for line, fix in enumerate(fixes.itertuples(index=False), start=2):
        # A fix names a person folder; an id is accepted only when exactly one person has it (ids repeat).
        targets = [by_folder[fix.person_id]] if fix.person_id in by_folder else by_id.get(fix.person_id, [])
        if len(targets) > 1:
            report.problem(f"{data_cfg.label_fixes} line {line}",
                           f"id {fix.person_id!r} belongs to {len(targets)} persons "
                           f"({', '.join(people[t][1] for t in targets)}); name the person folder instead")
            continue
        if not targets:
            report.notes.append(f"label fix for {fix.person_id} ({fix.field}) not used: person not in this data")
            continue
        for t in targets:
            person = people[t]
            if fix.field == "gender":
                if person[2] == fix.new:
                    report.notes.append(f"label fix for {person[1]}: gender is already {fix.new}")
                elif person[2] != fix.old:
                    report.warnings.append(f"label fix for {person[1]} not applied: gender is {person[2]}, fix expects {fix.old}")
                else:
                    person[2] = fix.new
                    report.fixes.append(f"{person[1]}: gender {fix.old} -> {fix.new} ({fix.note})")
            elif fix.field == "age":
                if str(person[4]) != fix.old:
                    report.warnings.append(f"label fix for {person[1]} not applied: age is {person[4]}, fix expects {fix.old}")
                else:
                    person[4] = age_problem(fix.new)[0]
                    report.fixes.append(f"{person[1]}: age {fix.old} -> {fix.new} ({fix.note})")
            elif fix.field == "mask":  # one photo's mask label, after any swap
                masks[(person[1], fix.old)] = fix.new
                report.fixes.append(f"{person[1]}: photo {fix.old} shows {fix.new} ({fix.note})")
            else:  # swap two photos' mask labels
                swaps.add((person[1], fix.old, fix.new))
                report.fixes.append(f"{person[1]}: photos {fix.old} and {fix.new} swapped ({fix.note})")
    return people, swaps, masks
