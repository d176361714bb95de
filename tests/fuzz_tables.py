"""Fuzz mutations of the tables, train/train.csv above all (cells, rows, encodings, BOMs, line endings, dialects,
trailing commas, truncation, tables that are folders or links)."""
from __future__ import annotations

import csv
import io
import os

from pipeline.tables.fields import parse_gender
from tests.fuzz_kit import Case, Work, mutation

BOTH = frozenset({"check-data", "folds"})
CHECK = frozenset({"check-data"})
JUNK_VALUES = ["", " ", "NaN", "null", "None", "-1", "0", "1e9", "x" * 300, '"', "a,b", "\t", "9" * 40, "🙂",
               "é", "\\", "line\nbreak", "=1+1"]


def write_rows(path, rows: list[list[str]], newline="\n", encoding="utf-8", prefix="") -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows(rows)
    path.write_bytes(prefix.encode(encoding) + buf.getvalue().encode(encoding))


def read_rows(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def _set_cell(work: Work, column: str, value: str) -> int:
    rows = read_rows(work.train_csv)
    line = work.rng.randrange(2, len(rows) + 1)
    rows[line - 1][rows[0].index(column)] = value
    write_rows(work.train_csv, rows)
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
    rows = read_rows(work.train_csv)
    at = work.rng.randrange(len(rows[0]) + 1)
    for i, r in enumerate(rows):
        r.insert(at, "note" if i == 0 else work.rng.choice(JUNK_VALUES))
    write_rows(work.train_csv, rows)
    return Case(f"extra column 'note' at position {at} of train.csv", names=("train.csv",))


@mutation("csv_reorder")
def csv_reorder(work: Work) -> Case:
    rows = read_rows(work.train_csv)
    order = list(range(len(rows[0])))
    work.rng.shuffle(order)
    body = rows[1:]
    work.rng.shuffle(body)
    write_rows(work.train_csv, [[r[i] for i in order] for r in [rows[0], *body]])
    return Case(f"train.csv columns reordered {order} and rows shuffled", names=("train.csv",))


@mutation("csv_quoted")
def csv_quoted(work: Work) -> Case:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(read_rows(work.train_csv))
    work.train_csv.write_text(buf.getvalue())
    return Case("every cell of train.csv quoted", names=("train.csv",))


# ---------------------------------------------------------------- encodings and damage


@mutation("csv_dialect")
def csv_dialect(work: Work) -> Case:
    rows = read_rows(work.train_csv)
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
    rows = read_rows(work.train_csv)
    rows[1][rows[0].index("race")] = "Évora"  # one character that the 8-bit code pages spell differently
    write_rows(work.train_csv, rows, encoding=encoding)
    return Case(f"train.csv re-encoded as {encoding}", names=("train.csv",))


@mutation("csv_trailing_comma_all")
def csv_trailing_comma_all(work: Work) -> Case:
    lines = work.train_csv.read_text().splitlines()
    work.train_csv.write_text("".join(line + ",\n" for line in lines))
    return Case("a trailing comma on every line of train.csv, header included", names=("train.csv",))


@mutation("csv_trailing_comma_rows")
def csv_trailing_commaread_rows(work: Work) -> Case:
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
    rows = read_rows(work.train_csv)
    col = work.rng.randrange(len(rows[0]))
    old = rows[0][col]
    rows[0][col] = work.rng.choice([old.upper(), old + " ", old + "_", ""])
    write_rows(work.train_csv, rows)
    return Case(f"train.csv header {old!r} renamed {rows[0][col]!r}", names=("train.csv", old), refuse=BOTH)


@mutation("csv_drop_column")
def csv_drop_column(work: Work) -> Case:
    rows = read_rows(work.train_csv)
    col = work.rng.randrange(len(rows[0]))
    old = rows[0][col]
    write_rows(work.train_csv, [r[:col] + r[col + 1:] for r in rows])
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
    rows = read_rows(work.train_csv)
    rows[line - 1][rows[0].index("gender")] = value
    write_rows(work.train_csv, rows)
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
    rows = read_rows(work.train_csv)
    rows[line - 1][rows[0].index("age")] = value
    write_rows(work.train_csv, rows)
    if value in same:  # the same age written otherwise: read as it, or refused with the line named
        return Case(f"train.csv line {line}: age {age} written {value!r}", names=("train.csv", f"line {line}"))
    return Case(f"train.csv line {line}: age set to {value!r}", names=("train.csv", f"line {line}"), refuse=BOTH)


@mutation("cell_path")
def cell_path(work: Work) -> Case:
    line, folder = work.person()
    value = work.rng.choice([folder + " ", " " + folder, folder.upper(), folder + "x", "", "..", f"../{folder}",
                             f"/{folder}", f"{folder}/mask1.jpg", f"{folder}\\", "🙂", f"images/{folder}"])
    rows = read_rows(work.train_csv)
    rows[line - 1][rows[0].index("path")] = value
    write_rows(work.train_csv, rows)
    return Case(f"train.csv line {line}: path {folder!r} set to {value!r}", names=("train.csv", f"line {line}"),
                refuse=BOTH)


@mutation("path_spelled_twice")
def path_spelled_twice(work: Work) -> Case:
    line, folder = work.person()
    spelled = work.rng.choice([folder + "/", "./" + folder, folder + "//", f"./{folder}/"])
    rows = read_rows(work.train_csv)
    rows.append(rows[line - 1][:])
    rows[-1][rows[0].index("path")] = spelled
    write_rows(work.train_csv, rows)
    return Case(f"train.csv: person {folder} listed again as {spelled!r}", names=("train.csv", folder), refuse=BOTH)


@mutation("path_spelled_otherwise")
def path_spelled_otherwise(work: Work) -> Case:
    line, folder = work.person()
    spelled = work.rng.choice([folder + "/", "./" + folder, f"./{folder}/"])
    rows = read_rows(work.train_csv)
    rows[line - 1][rows[0].index("path")] = spelled
    write_rows(work.train_csv, rows)
    return Case(f"train.csv line {line}: path {folder!r} written {spelled!r}", names=("train.csv", f"line {line}"))


@mutation("row_duplicated")
def row_duplicated(work: Work) -> Case:
    rows = read_rows(work.train_csv)
    line, folder = work.person()
    rows.insert(work.rng.randrange(1, len(rows) + 1), rows[line - 1][:])
    write_rows(work.train_csv, rows)
    return Case(f"train.csv line {line} ({folder}) written twice", names=("train.csv", folder), refuse=BOTH)


@mutation("row_dropped")
def row_dropped(work: Work) -> Case:
    rows = read_rows(work.train_csv)
    line, folder = work.person()
    del rows[line - 1]
    write_rows(work.train_csv, rows)
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


@mutation("person_renamed")
def person_renamed(work: Work) -> Case:
    line, folder = work.person()
    new = work.rng.choice(["NA", "null", "nan", "None", "N/A".replace("/", "_"), "#1", "Zoe\u0308", "Zoë", "a,b",
                           'quote"d', "0001", "1e5", "True", "-", "ü" * 60, "x" * 200])
    (work.images / folder).rename(work.images / new)
    rows = read_rows(work.train_csv)
    rows[line - 1][rows[0].index("path")] = new
    write_rows(work.train_csv, rows)
    # A new person id: the folds may differ, but every stage must read it back as written.
    return Case(f"person folder {folder} renamed {new!r}, train.csv line {line} too", names=(new,), meaning="any")
