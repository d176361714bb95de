"""Label fixes (`data.label_fixes`, e.g. configs/label_fixes.csv): read, checked with train.csv's own rules, and
applied to the persons read from train.csv. A fix applies only when the current value is its `old`, so reruns
are safe."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config.schema import DataConfig
from pipeline.config.typed_yaml import where_relative
from pipeline.errors import DataError, Problem
from pipeline.labels import GENDERS, MASKS, PHOTOS
from pipeline.tables.fields import age_problem
from pipeline.tables.persons import Person
from pipeline.tables.report import Report

FIX_COLUMNS = ["person_id", "field", "old", "new", "note"]  # the label-fix file's header
FIX_FIELDS = ("gender", "age", "swap", "mask")


@dataclass(frozen=True)
class LabelFix:
    person_id: str  # a person folder, or an id that exactly one person has
    field: str  # gender | age | swap | mask
    old: str
    new: str
    note: str
    line: int  # in the fix file, for messages


def load_label_fixes(path: str | Path) -> list[LabelFix]:
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
        table = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except pd.errors.EmptyDataError:
        raise DataError([Problem(str(path), f"empty file (no header); it must start with the header {','.join(need)}, "
                                            f"or set data.label_fixes to null")]) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError([Problem(str(path), f"not a readable CSV ({str(e).strip().splitlines()[0]}); re-export it "
                                            f"as plain CSV")]) from None
    absent = [c for c in need if c not in table.columns]
    if absent:
        raise DataError([Problem(str(path), f"missing column(s) {', '.join(absent)}; header: {','.join(need)}")])
    fixes = [LabelFix(*(getattr(row, c) for c in FIX_COLUMNS), line=line)
             for line, row in enumerate(table[FIX_COLUMNS].itertuples(index=False), start=2)]
    bad = [Problem(f"{path} line {fix.line}", why) for fix in fixes if (why := _fix_problem(fix))]
    if bad:
        raise DataError(bad)
    return fixes


def _fix_problem(fix: LabelFix) -> str | None:
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


@dataclass
class Fixed:
    """The persons with gender and age fixes applied, and the mask fixes to apply to their photos."""
    persons: list[Person]
    swaps: set = dataclasses.field(default_factory=set)  # (folder, photo, photo): mask labels exchanged
    masks: dict = dataclasses.field(default_factory=dict)  # (folder, photo) -> mask state, applied after the swaps


def apply_label_fixes(persons: list[Person], data_cfg: DataConfig, report: Report) -> Fixed:
    """The persons (copies) with the fixes of data.label_fixes applied; what was done, skipped or refused goes to
    the report."""
    fixes = load_label_fixes(data_cfg.label_fixes) if data_cfg.label_fixes else []
    fixed = Fixed([dataclasses.replace(p) for p in persons])
    by_folder = {p.folder: i for i, p in enumerate(fixed.persons)}
    by_id: dict[str, list[int]] = {}
    for i, p in enumerate(fixed.persons):
        by_id.setdefault(p.id, []).append(i)
    for fix in fixes:
        # A fix names a person folder; an id is accepted only when exactly one person has it (ids repeat).
        targets = [by_folder[fix.person_id]] if fix.person_id in by_folder else by_id.get(fix.person_id, [])
        if len(targets) > 1:
            report.problem(f"{data_cfg.label_fixes} line {fix.line}",
                           f"id {fix.person_id!r} belongs to {len(targets)} persons "
                           f"({', '.join(fixed.persons[t].folder for t in targets)}); name the person folder instead")
        elif not targets:
            report.notes.append(f"label fix for {fix.person_id} ({fix.field}) not used: person not in this data")
        else:
            _apply(fix, fixed.persons[targets[0]], fixed, report)
    return fixed


def _apply(fix: LabelFix, person: Person, fixed: Fixed, report: Report) -> None:
    if fix.field == "gender":
        if person.gender == fix.new:
            report.notes.append(f"label fix for {person.folder}: gender is already {fix.new}")
        elif person.gender != fix.old:
            report.warnings.append(f"label fix for {person.folder} not applied: gender is {person.gender}, fix "
                                   f"expects {fix.old}")
        else:
            person.gender = fix.new
            report.fixes.append(f"{person.folder}: gender {fix.old} -> {fix.new} ({fix.note})")
    elif fix.field == "age":
        if str(person.age) != fix.old:
            report.warnings.append(f"label fix for {person.folder} not applied: age is {person.age}, fix expects "
                                   f"{fix.old}")
        else:
            person.age = age_problem(fix.new)[0]
            report.fixes.append(f"{person.folder}: age {fix.old} -> {fix.new} ({fix.note})")
    elif fix.field == "mask":  # one photo's mask label, after any swap
        fixed.masks[(person.folder, fix.old)] = fix.new
        report.fixes.append(f"{person.folder}: photo {fix.old} shows {fix.new} ({fix.note})")
    else:  # swap two photos' mask labels
        fixed.swaps.add((person.folder, fix.old, fix.new))
        report.fixes.append(f"{person.folder}: photos {fix.old} and {fix.new} swapped ({fix.note})")

