"""Fuzz mutations of eval/info.csv (cells, rows) and of the label-fix file (bad fixes, unreadable files)."""
from __future__ import annotations

from tests.fuzz_kit import Case, Work, mutation
from tests.fuzz_tables import BOTH, read_rows, write_rows


@mutation("info_cell")
def info_cell(work: Work) -> Case:
    rows = read_rows(work.info_csv)
    line = work.rng.randrange(2, len(rows) + 1)
    old = rows[line - 1][0]
    value = work.rng.choice([old.upper(), old + " ", "x.jpg", "../" + old, rows[1 + (line - 1) % (len(rows) - 1)][0]])
    rows[line - 1][0] = value
    write_rows(work.info_csv, rows)
    return Case(f"eval/info.csv line {line}: ImageID {old!r} set to {value!r}", names=("info.csv",), refuse=BOTH)


@mutation("info_empty_cell")
def info_empty_cell(work: Work) -> Case:
    rows = read_rows(work.info_csv)
    line = work.rng.randrange(2, len(rows) + 1)
    rows[line - 1][0] = work.rng.choice(["", " "])
    write_rows(work.info_csv, rows)
    return Case(f"eval/info.csv line {line}: ImageID emptied", names=("info.csv", f"line {line}"), refuse=BOTH)


@mutation("info_row_dropped")
def info_row_dropped(work: Work) -> Case:
    rows = read_rows(work.info_csv)
    line = work.rng.randrange(2, len(rows) + 1)
    gone = rows.pop(line - 1)[0]
    write_rows(work.info_csv, rows)
    return Case(f"eval/info.csv line {line} ({gone}) removed, the photo kept", names=(gone,), refuse=BOTH)


def _add_fix(work: Work, choices) -> Case:
    table = work.table()
    line, folder = work.person()
    age, gender = table.loc[line - 2, "age"], table.loc[line - 2, "gender"]
    field, old, new = work.rng.choice(choices)
    old = {"AGE": age, "GENDER": gender}.get(old, old)
    rows = read_rows(work.fixes)
    rows.append([folder, field, old, new, "fuzz"])
    write_rows(work.fixes, rows)
    return Case(f"label fix line {len(rows)}: {folder} {field} {old!r} -> {new!r}",
                names=("label_fixes.csv", f"line {len(rows)}"), refuse=BOTH)


@mutation("fix_bad")
def fix_bad(work: Work) -> Case:
    return _add_fix(work, [("gender", "GENDER", "other"), ("swap", "mask1", "mask9"), ("height", "1", "2"),
                           ("", "1", "2"), ("swap", "mask1", "")])


@mutation("fix_unchecked")
def fix_unchecked(work: Work) -> Case:
    # values train.csv refuses, and a swap of a photo with itself
    return _add_fix(work, [("age", "AGE", "abc"), ("age", "AGE", "250"), ("age", "AGE", "-3"), ("age", "AGE", ""),
                           ("swap", "mask1", "mask1"), ("age", "AGE", "4 0")])


@mutation("fixes_file")
def fixes_file(work: Work) -> Case:
    how = work.rng.choice(["header only", "missing", "folder", "no note column"])
    if how == "header only":
        work.fixes.write_text("person_id,field,old,new,note\n")
        return Case("label-fix file with its header only", names=("label_fixes.csv",))
    elif how == "missing":
        work.fixes.unlink()
    elif how == "folder":
        work.fixes.unlink()
        work.fixes.mkdir()
    else:
        write_rows(work.fixes, [r[:4] for r in read_rows(work.fixes)])
    return Case(f"label-fix file {how}", names=("label_fixes.csv",), refuse=BOTH)


@mutation("fixes_unreadable")
def fixes_unreadable(work: Work) -> Case:
    how = work.rng.choice(["empty", "binary", "UTF-16"])
    if how == "empty":
        work.fixes.write_text(work.rng.choice(["", "\n"]))
    elif how == "binary":
        work.fixes.write_bytes(bytes(work.rng.randrange(256) for _ in range(512)))
    else:
        work.fixes.write_bytes(work.fixes.read_text().encode("utf-16"))
    return Case(f"label-fix file {how}", names=("label_fixes.csv",), refuse=BOTH)
