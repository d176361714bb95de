"""Fuzz mutations of the tables: train/train.csv, eval/info.csv and the label-fix file (cells, encodings, BOMs,
line endings, trailing commas, truncation, tables that are folders or links)."""
from __future__ import annotations

import csv
import io
import os

from pipeline.contract import parse_gender
from tests.fuzz_kit import Case, Work, mutation

BOTH = frozenset({"check-data", "folds"})
CHECK = frozenset({"check-data"})
JUNK_VALUES = ["", " ", "NaN", "null", "None", "-1", "0", "1e9", "x" * 300, '"', "a,b", "\t", "9" * 40, "🙂",
               "é", "\\", "line\nbreak", "=1+1"]


def _write_rows(path, rows: list[list[str]], newline="\n", encoding="utf-8", prefix="") -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows(rows)
    path.write_bytes(prefix.encode(encoding) + buf.getvalue().encode(encoding))


def _rows(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def _set_cell(work: Work, column: str, value: str) -> int:
    rows = _rows(work.train_csv)
    line = work.rng.randrange(2, len(rows) + 1)
    rows[line - 1][rows[0].index(column)] = value
    _write_rows(work.train_csv, rows)
    return line


# ---------------------------------------------------------------- whole-file changes that keep the meaning


@mutation("csv_bom")
def csv_bom(work: Work) -> Case:
    target = work.rng.choice([work.train_csv, work.info_csv, work.fixes])
    target.write_bytes(b"\xef\xbb\xbf" + target.read_bytes())
    return Case(f"UTF-8 byte-order mark at the start of {target.name}", names=(target.name,))


@mutation("csv_crlf")
def csv_crlf(work: Work) -> Case:
    target = work.rng.choice([work.train_csv, work.info_csv, work.fixes])
    target.write_bytes(target.read_bytes().replace(b"\n", b"\r\n"))
    return Case(f"Windows line endings in {target.name}", names=(target.name,))


@mutation("csv_blank_lines")
def csv_blank_lines(work: Work) -> Case:
    rows = work.train_csv.read_text().splitlines()
    at = work.rng.randrange(1, len(rows) + 1)
    rows.insert(at, work.rng.choice(["", "", "   "]) if at < len(rows) else "")
    work.train_csv.write_text("\n".join(rows) + "\n")
    return Case(f"blank line inserted at line {at + 1} of train.csv", names=("train.csv",))


@mutation("csv_extra_column")
def csv_extra_column(work: Work) -> Case:
    rows = _rows(work.train_csv)
    at = work.rng.randrange(len(rows[0]) + 1)
    for i, r in enumerate(rows):
        r.insert(at, "note" if i == 0 else work.rng.choice(JUNK_VALUES))
    _write_rows(work.train_csv, rows)
    return Case(f"extra column 'note' at position {at} of train.csv", names=("train.csv",))


@mutation("csv_reorder")
def csv_reorder(work: Work) -> Case:
    rows = _rows(work.train_csv)
    order = list(range(len(rows[0])))
    work.rng.shuffle(order)
    body = rows[1:]
    work.rng.shuffle(body)
    _write_rows(work.train_csv, [[r[i] for i in order] for r in [rows[0], *body]])
    return Case(f"train.csv columns reordered {order} and rows shuffled", names=("train.csv",))


@mutation("csv_quoted")
def csv_quoted(work: Work) -> Case:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(_rows(work.train_csv))
    work.train_csv.write_text(buf.getvalue())
    return Case("every cell of train.csv quoted", names=("train.csv",))


# ---------------------------------------------------------------- encodings and damage


@mutation("csv_dialect")
def csv_dialect(work: Work) -> Case:
    rows = _rows(work.train_csv)
    how = work.rng.choice(["semicolons", "tabs", "an Excel 'sep=,' line", "spaces after commas", "mixed line endings",
                           "a comment line", "a NUL byte"])
    if how in ("semicolons", "tabs"):
        buf = io.StringIO()
        csv.writer(buf, delimiter=";" if how == "semicolons" else "\t", lineterminator="\n").writerows(rows)
        work.train_csv.write_text(buf.getvalue())
    elif how == "an Excel 'sep=,' line":
        work.train_csv.write_text("sep=,\n" + work.train_csv.read_text())
    elif how == "spaces after commas":
        work.train_csv.write_text("".join(", ".join(r) + "\n" for r in rows))
    elif how == "mixed line endings":
        work.train_csv.write_text("".join(",".join(r) + ("\r\n" if i % 2 else "\n") for i, r in enumerate(rows)))
    elif how == "a comment line":
        work.train_csv.write_text(work.train_csv.read_text() + "# checked by hand\n")
    else:
        text = work.train_csv.read_bytes()
        at = work.rng.randrange(len(text))
        work.train_csv.write_bytes(text[:at] + b"\0" + text[at:])
    return Case(f"train.csv written with {how}", names=("train.csv",))


@mutation("csv_encoding")
def csv_encoding(work: Work) -> Case:
    encoding = work.rng.choice(["utf-16", "utf-32", "latin-1", "cp1252"])
    rows = _rows(work.train_csv)
    rows[1][rows[0].index("race")] = "Évora"  # one character that the 8-bit code pages spell differently
    _write_rows(work.train_csv, rows, encoding=encoding)
    return Case(f"train.csv re-encoded as {encoding}", names=("train.csv",))


@mutation("csv_trailing_comma_all")
def csv_trailing_comma_all(work: Work) -> Case:
    lines = work.train_csv.read_text().splitlines()
    work.train_csv.write_text("".join(line + ",\n" for line in lines))
    return Case("a trailing comma on every line of train.csv, header included", names=("train.csv",))


@mutation("csv_trailing_comma_rows")
def csv_trailing_comma_rows(work: Work) -> Case:
    lines = work.train_csv.read_text().splitlines()
    work.train_csv.write_text(lines[0] + "\n" + "".join(line + ",\n" for line in lines[1:]))
    # one mistake, one problem: not a shifted-column problem on every row
    return Case("a trailing comma on every data row of train.csv (not the header)", names=("train.csv", "comma"),
                refuse=BOTH)


@mutation("csv_truncated")
def csv_truncated(work: Work) -> Case:
    text = work.train_csv.read_bytes()
    starts = [i + 1 for i, b in enumerate(text) if b == ord("\n")][:-1]
    line = work.rng.randrange(1, len(starts))
    cut = work.rng.randrange(starts[line - 1] + 1, starts[line] - 1)  # inside a data row, never at its end
    work.train_csv.write_bytes(text[:cut])
    return Case(f"train.csv cut at byte {cut} (inside line {line + 1})", names=("train.csv",), refuse=BOTH)


@mutation("csv_empty")
def csv_empty(work: Work) -> Case:
    target = work.rng.choice([work.train_csv, work.info_csv])
    content = work.rng.choice(["", "\n", " ", "\ufeff"])
    target.write_text(content)
    return Case(f"{target.name} replaced by {content!r}", names=(target.name,), refuse=BOTH)


@mutation("csv_header_only")
def csv_header_only(work: Work) -> Case:
    work.train_csv.write_text(work.train_csv.read_text().splitlines()[0] + "\n")
    return Case("train.csv keeps only its header", names=("train.csv",), refuse=BOTH)


@mutation("csv_binary")
def csv_binary(work: Work) -> Case:
    target = work.rng.choice([work.train_csv, work.info_csv])
    target.write_bytes(bytes(work.rng.randrange(256) for _ in range(512)))
    return Case(f"{target.name} replaced by 512 random bytes", names=(target.name,), refuse=BOTH)


@mutation("csv_header_renamed")
def csv_header_renamed(work: Work) -> Case:
    rows = _rows(work.train_csv)
    col = work.rng.randrange(len(rows[0]))
    old = rows[0][col]
    rows[0][col] = work.rng.choice([old.upper(), old + " ", old + "_", ""])
    _write_rows(work.train_csv, rows)
    return Case(f"train.csv header {old!r} renamed {rows[0][col]!r}", names=("train.csv", old), refuse=BOTH)


@mutation("csv_drop_column")
def csv_drop_column(work: Work) -> Case:
    rows = _rows(work.train_csv)
    col = work.rng.randrange(len(rows[0]))
    old = rows[0][col]
    _write_rows(work.train_csv, [r[:col] + r[col + 1:] for r in rows])
    return Case(f"train.csv column {old!r} removed", names=("train.csv", old), refuse=BOTH)


# ---------------------------------------------------------------- one cell or one row


@mutation("cell_id")
def cell_id(work: Work) -> Case:
    value = work.rng.choice(JUNK_VALUES + ["100001"])
    line = _set_cell(work, "id", value)
    return Case(f"train.csv line {line}: id set to {value!r} (persons are keyed by path)", names=("train.csv",))


@mutation("cell_race")
def cell_race(work: Work) -> Case:
    value = work.rng.choice(JUNK_VALUES)
    line = _set_cell(work, "race", value)
    return Case(f"train.csv line {line}: race set to {value!r}", names=("train.csv",))


@mutation("cell_gender")
def cell_gender(work: Work) -> Case:
    line, _ = work.person()
    gender = work.table().loc[line - 2, "gender"]
    same = {"male": ["M", "m", "0", "Male", " male "], "female": ["F", "f", "1", "FEMALE", " female"]}[gender]
    value = work.rng.choice(same + [v for v in JUNK_VALUES if parse_gender(v) is None])
    rows = _rows(work.train_csv)
    rows[line - 1][rows[0].index("gender")] = value
    _write_rows(work.train_csv, rows)
    if value in same:
        return Case(f"train.csv line {line}: gender {gender} spelled {value!r}", names=("train.csv",))
    return Case(f"train.csv line {line}: gender set to {value!r}", names=("train.csv", f"line {line}"), refuse=BOTH)


@mutation("cell_age")
def cell_age(work: Work) -> Case:
    line, _ = work.person()
    age = work.table().loc[line - 2, "age"]
    arabic = "".join("٠١٢٣٤٥٦٧٨٩"[int(c)] for c in age)
    same = [f"{age}.0", f" {age} ", f"{age}.00", arabic]
    value = work.rng.choice(same + JUNK_VALUES + ["0", "120", "250", "-30", "30.5", "1e2", "0x20", "inf"])
    rows = _rows(work.train_csv)
    rows[line - 1][rows[0].index("age")] = value
    _write_rows(work.train_csv, rows)
    if value in same:  # the same age written otherwise: read as it, or refused with the line named
        return Case(f"train.csv line {line}: age {age} written {value!r}", names=("train.csv", f"line {line}"))
    return Case(f"train.csv line {line}: age set to {value!r}", names=("train.csv", f"line {line}"), refuse=BOTH)


@mutation("cell_path")
def cell_path(work: Work) -> Case:
    line, folder = work.person()
    value = work.rng.choice([folder + " ", " " + folder, folder.upper(), folder + "x", "", "..", f"../{folder}",
                             f"/{folder}", f"{folder}/mask1.jpg", f"{folder}\\", "🙂", f"images/{folder}"])
    rows = _rows(work.train_csv)
    rows[line - 1][rows[0].index("path")] = value
    _write_rows(work.train_csv, rows)
    return Case(f"train.csv line {line}: path {folder!r} set to {value!r}", names=("train.csv", f"line {line}"),
                refuse=BOTH)


@mutation("path_spelled_twice")
def path_spelled_twice(work: Work) -> Case:
    line, folder = work.person()
    spelled = work.rng.choice([folder + "/", "./" + folder, folder + "//", f"./{folder}/"])
    rows = _rows(work.train_csv)
    rows.append(rows[line - 1][:])
    rows[-1][rows[0].index("path")] = spelled
    _write_rows(work.train_csv, rows)
    return Case(f"train.csv: person {folder} listed again as {spelled!r}", names=("train.csv", folder), refuse=BOTH)


@mutation("path_spelled_otherwise")
def path_spelled_otherwise(work: Work) -> Case:
    line, folder = work.person()
    spelled = work.rng.choice([folder + "/", "./" + folder, f"./{folder}/"])
    rows = _rows(work.train_csv)
    rows[line - 1][rows[0].index("path")] = spelled
    _write_rows(work.train_csv, rows)
    return Case(f"train.csv line {line}: path {folder!r} written {spelled!r}", names=("train.csv", f"line {line}"))


@mutation("row_duplicated")
def row_duplicated(work: Work) -> Case:
    rows = _rows(work.train_csv)
    line, folder = work.person()
    rows.insert(work.rng.randrange(1, len(rows) + 1), rows[line - 1][:])
    _write_rows(work.train_csv, rows)
    return Case(f"train.csv line {line} ({folder}) written twice", names=("train.csv", folder), refuse=BOTH)


@mutation("row_dropped")
def row_dropped(work: Work) -> Case:
    rows = _rows(work.train_csv)
    line, folder = work.person()
    del rows[line - 1]
    _write_rows(work.train_csv, rows)
    # The person's 7 photos would silently leave the data: check-data must at least say so.
    return Case(f"train.csv line {line} ({folder}) removed, its folder kept", names=(folder,), meaning="any", warn=True)


@mutation("table_is_folder")
def table_is_folder(work: Work) -> Case:
    target = work.rng.choice([work.train_csv, work.info_csv])
    target.unlink()
    target.mkdir()
    return Case(f"{target.name} replaced by an empty folder", names=(target.name, ("folder", "directory")), refuse=BOTH)


@mutation("table_link")
def table_link(work: Work) -> Case:
    target = work.rng.choice([work.train_csv, work.info_csv])
    kind = work.rng.choice(["good", "dangling", "loop"])
    moved = work.outside(target.name)
    target.rename(moved)
    os.symlink({"good": moved, "dangling": work.outside("nowhere.csv"), "loop": target}[kind], target)
    if kind == "good":
        return Case(f"{target.name} moved outside and linked back", names=(target.name,))
    return Case(f"{target.name} replaced by a {kind} link", names=(target.name,), refuse=BOTH)


# ---------------------------------------------------------------- eval/info.csv and the label fixes


@mutation("info_cell")
def info_cell(work: Work) -> Case:
    rows = _rows(work.info_csv)
    line = work.rng.randrange(2, len(rows) + 1)
    old = rows[line - 1][0]
    value = work.rng.choice([old.upper(), old + " ", "x.jpg", "../" + old, rows[1 + (line - 1) % (len(rows) - 1)][0]])
    rows[line - 1][0] = value
    _write_rows(work.info_csv, rows)
    return Case(f"eval/info.csv line {line}: ImageID {old!r} set to {value!r}", names=("info.csv",), refuse=BOTH)


@mutation("info_empty_cell")
def info_empty_cell(work: Work) -> Case:
    rows = _rows(work.info_csv)
    line = work.rng.randrange(2, len(rows) + 1)
    rows[line - 1][0] = work.rng.choice(["", " "])
    _write_rows(work.info_csv, rows)
    return Case(f"eval/info.csv line {line}: ImageID emptied", names=("info.csv", f"line {line}"), refuse=BOTH)


@mutation("info_row_dropped")
def info_row_dropped(work: Work) -> Case:
    rows = _rows(work.info_csv)
    line = work.rng.randrange(2, len(rows) + 1)
    gone = rows.pop(line - 1)[0]
    _write_rows(work.info_csv, rows)
    return Case(f"eval/info.csv line {line} ({gone}) removed, the photo kept", names=(gone,), refuse=BOTH)


def _fix_rows(work: Work, field: str, old: str, new: str) -> tuple[str, int]:
    line, folder = work.person()
    rows = _rows(work.fixes)
    rows.append([folder, field, old, new, "fuzz"])
    _write_rows(work.fixes, rows)
    return folder, len(rows)


def _add_fix(work: Work, choices) -> Case:
    table = work.table()
    line, folder = work.person()
    age, gender = table.loc[line - 2, "age"], table.loc[line - 2, "gender"]
    field, old, new = work.rng.choice(choices)
    old = {"AGE": age, "GENDER": gender}.get(old, old)
    rows = _rows(work.fixes)
    rows.append([folder, field, old, new, "fuzz"])
    _write_rows(work.fixes, rows)
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
        _write_rows(work.fixes, [r[:4] for r in _rows(work.fixes)])
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


@mutation("person_renamed")
def person_renamed(work: Work) -> Case:
    line, folder = work.person()
    new = work.rng.choice(["NA", "null", "nan", "None", "N/A".replace("/", "_"), "#1", "Zoe\u0308", "Zoë", "a,b",
                           'quote"d', "0001", "1e5", "True", "-", "ü" * 60, "x" * 200])
    (work.images / folder).rename(work.images / new)
    rows = _rows(work.train_csv)
    rows[line - 1][rows[0].index("path")] = new
    _write_rows(work.train_csv, rows)
    # A new person id: the folds may differ, but every stage must read it back as written.
    return Case(f"person folder {folder} renamed {new!r}, train.csv line {line} too", names=(new,), meaning="any")
