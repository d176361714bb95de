"""Fuzz mutations of the config: odd YAML (tabs, duplicate keys, tags, BOMs, deep nesting, aliases), wrong types,
huge numbers, unicode, odd `extends:` and `--set`, and config files that are empty, binary, folders or links."""
from __future__ import annotations

import os
import types
import typing

from pipeline.config import Config, ConfigError
from pipeline.config.typed_yaml import check_value
from tests.fuzz_kit import Case, Work, mutation
from tests.fuzz_tables import BOTH, CHECK

FILE = "fuzz.yaml"
WRONG_VALUES = ["three", 3, 2.5, True, [1, 2], {"a": 1}, None, "", [], "1e-3"]
HUGE = [10**30, -(10**30), 1e308, -1e308, float("inf"), float("nan"), 2**63, 2**64 + 1]
# Keys whose values name places on disk: a wrong value there is refused as "not found", tested by their own kinds.
PLACES = ("data_dir", "run_dir", "cache_dir")


def _field_type(dotted: str):
    """The schema type of a dotted key such as backbones.0.lr (list indices walk into the item type)."""
    tp = Config
    for part in dotted.split("."):
        if part.isdigit():
            (tp,) = typing.get_args(tp)
            continue
        tp = typing.get_type_hints(tp)[part]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]
    return tp


def _leaves(data, prefix=""):
    """Every scalar (and list-of-scalar item) of the config as (dotted key, value); augment steps left out."""
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        if key.startswith("augment"):
            continue
        if isinstance(v, (dict, list)) and v:
            yield from _leaves(v, key)
        else:
            yield key, v


def _set(data: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = data
    for p in path:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value


def _rejects(dotted: str, value) -> bool:
    try:
        check_value(_field_type(dotted), value, dotted, FILE)
    except ConfigError:
        return True
    return False


def _named_key(dotted: str) -> str:
    """How an error names a key: list items by their list (data.age_cuts), fields of list items in full."""
    parts = dotted.split(".")
    while parts[-1].isdigit():
        parts.pop()
    return ".".join(parts)


@mutation("cfg_wrong_type")
def cfg_wrong_type(work: Work) -> Case:
    data = work.load_config()
    key, old = work.rng.choice([(k, v) for k, v in _leaves(data) if k not in PLACES])
    value = work.rng.choice([v for v in WRONG_VALUES if _rejects(key, v)])
    _set(data, key, value)
    work.save_config(data)
    return Case(f"config {key}: {old!r} -> {value!r} (a wrong type)", names=(_named_key(key),), refuse=BOTH)


@mutation("cfg_huge_number")
def cfg_huge_number(work: Work) -> Case:
    data = work.load_config()
    numeric = [(k, v) for k, v in _leaves(data) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    key, old = work.rng.choice([(k, v) for k, v in numeric if k != "seed"])  # seed has its own kind
    value = work.rng.choice(HUGE)
    _set(data, key, value)
    work.save_config(data)
    return Case(f"config {key}: {old!r} -> {value!r}", names=(_named_key(key),), meaning="any")


@mutation("cfg_seed_out_of_range")
def cfg_seed_out_of_range(work: Work) -> Case:
    data = work.load_config()
    data["seed"] = work.rng.choice([-1, 2**32, 10**30, -(2**40)])
    work.save_config(data)
    return Case(f"config seed: {data['seed']}", names=("seed",), refuse=frozenset({"folds"}))


@mutation("cfg_unicode")
def cfg_unicode(work: Work) -> Case:
    data = work.load_config()
    where = work.rng.choice(["key", "data_dir", "backbone", "label_fixes", "nul"])
    if where == "key":
        data["dätä_dir"] = data["data_dir"]
        names = ("dätä_dir",)
    elif where == "data_dir":
        data["data_dir"] += "/dätä🙂"
        names = ("dätä🙂",)
    elif where == "backbone":
        data["backbones"][0]["name"] = "résnet18"
        names = ("backbones.0.name",)
    elif where == "label_fixes":
        data["data"]["label_fixes"] = str(work.root / "fïxes🙂.csv")
        names = ("fïxes🙂.csv",)
    else:
        key = work.rng.choice(["data_dir", "data.label_fixes", "backbones.0.name", "train.optimizer"])
        _set(data, key, "a\0b")
        names = (key.split(".")[-1],)
    work.save_config(data)
    return Case(f"config: unicode in {where} ({names[0]!r})", names=names, refuse=BOTH)


@mutation("cfg_null_byte")
def cfg_null_byte(work: Work) -> Case:
    data = work.load_config()
    key = work.rng.choice(["data_dir", "data.label_fixes", "run_dir", "cache_dir"])
    _set(data, key, "runs\0x")
    work.save_config(data)
    return Case(f"config {key}: a NUL character in the path", names=(key.split(".")[-1],), refuse=BOTH)


def _lines(work: Work) -> list[str]:
    return work.config.read_text().splitlines()


@mutation("cfg_text_same")
def cfg_text_same(work: Work) -> Case:
    how = work.rng.choice(["BOM", "CRLF", "comments", "trailing spaces", "document markers", "flow style"])
    text = work.config.read_text()
    if how == "BOM":
        text = "\ufeff" + text
    elif how == "CRLF":
        text = text.replace("\n", "\r\n")
    elif how == "comments":
        text = "\n".join(f"{line}  # é 🙂" if ":" in line and not line.strip().startswith("-") else line
                         for line in text.splitlines()) + "\n# the end\n"
    elif how == "trailing spaces":
        text = "\n".join(line + "   " for line in text.splitlines()) + "\n"
    elif how == "document markers":
        text = "---\n" + text + "...\n"
    else:
        import yaml

        text = yaml.safe_dump(work.load_config(), default_flow_style=True, width=10**6)
    work.config.write_text(text)
    return Case(f"config rewritten with {how}", names=(FILE,))


@mutation("cfg_tab")
def cfg_tab(work: Work) -> Case:
    lines = _lines(work)
    i = work.rng.choice([n for n, line in enumerate(lines) if line.startswith("  ") and ": " in line])
    how = work.rng.choice(["indent", "after colon"])
    if how == "indent":
        lines[i] = "\t" + lines[i].lstrip(" ")
    else:
        lines[i] = lines[i].replace(": ", ":\t", 1)
    work.config.write_text("\n".join(lines) + "\n")
    return Case(f"config line {i + 1}: a tab {how}: {lines[i]!r}", names=(FILE,))


@mutation("cfg_duplicate_key")
def cfg_duplicate_key(work: Work) -> Case:
    lines = _lines(work)
    i = work.rng.choice([n for n, line in enumerate(lines) if not line.lstrip().startswith("-")
                         and line.rstrip().endswith(tuple("0123456789el")) and ": " in line])
    lines.insert(i + 1, lines[i])
    work.config.write_text("\n".join(lines) + "\n")
    key = lines[i].split(":")[0].strip()
    return Case(f"config line {i + 2}: {lines[i].strip()!r} written twice", names=(FILE, key), refuse=BOTH)


@mutation("cfg_unknown_key")
def cfg_unknown_key(work: Work) -> Case:
    data = work.load_config()
    section = work.rng.choice(["", "data", "train", "folds", "ensemble"])
    key = work.rng.choice(["n_split", "Seed", "epochs ", "lr_", "ñ", "1", "true"])
    (data[section] if section else data)[key] = 1
    work.save_config(data)
    return Case(f"config: unknown key {key!r} in {section or 'the top level'}", names=(key.strip(),), refuse=BOTH)


@mutation("cfg_yaml_oddities")
def cfg_yaml_oddities(work: Work) -> Case:
    lines = _lines(work)
    i = next(n for n, line in enumerate(lines) if line.startswith("seed:"))
    value, names = work.rng.choice([
        ("!!python/object/apply:os.system ['true']", (FILE,)), ("!!binary aGVsbG8=", ("seed",)),
        ("!!set {1, 2}", ("seed",)), ("[" * 40 + "]" * 40, ("seed",)), ("[" * 3000 + "]" * 3000, (FILE,)),
        ("&a [*a]", (("seed", FILE),)), ("*undefined", (FILE,)), ("'unterminated", (FILE,)), ("{a: 1", (FILE,)),
        ("0x2A", ("seed",)), ("1_000", ("seed",)), ("0o17", ("seed",)), ("!!float 42", ("seed",)),
    ])
    lines[i] = f"seed: {value}"
    work.config.write_text("\n".join(lines) + "\n")
    # Values YAML reads as integers (0x2A, 1_000) are a valid seed: the folds then differ, which is fine.
    return Case(f"config line {i + 1}: seed: {value[:60]}", names=names, meaning="any")


@mutation("cfg_aliases")
def cfg_aliases(work: Work) -> Case:
    levels = work.rng.randint(1, 4)
    text = work.config.read_text()
    bomb = "".join(f"x{n}: &x{n} [{', '.join([f'*x{n - 1}'] * 9)}]\n" for n in range(1, levels + 1))
    text = "x0: &x0 [orig]\n" + bomb + text.replace("tta:\n", f"tta: *x{levels}\nold_tta:\n")
    work.config.write_text(text)
    return Case(f"config: {levels} levels of YAML aliases (9 each) under tta and unknown keys", names=(("x0", "tta"),),
                refuse=BOTH)


@mutation("cfg_file_whole")
def cfg_file_whole(work: Work) -> Case:
    how = work.rng.choice(["a list", "a string", "a number", "missing", "a folder", "a dangling link",
                           "a looping link", "a FIFO"])
    cfg = work.config
    cfg.unlink()
    if how in ("a list", "a string", "a number"):
        cfg.write_text({"a list": "- seed: 1\n", "a string": "configs/demo.yaml\n", "a number": "42\n"}[how])
    elif how == "a folder":
        cfg.mkdir()
    elif how == "a dangling link":
        os.symlink(work.outside("gone.yaml"), cfg)
    elif how == "a looping link":
        os.symlink(cfg, cfg)
    elif how == "a FIFO":
        os.mkfifo(cfg)
    return Case(f"the config file is {how}", names=(FILE,), refuse=BOTH)


@mutation("cfg_file_binary")
def cfg_file_binary(work: Work) -> Case:
    how = work.rng.choice(["binary bytes", "UTF-16", "Latin-1"])
    text = work.config.read_text() + "# é\n"
    work.config.write_bytes({"binary bytes": bytes(work.rng.randrange(128, 256) for _ in range(256)),
                             "UTF-16": text.encode("utf-16"), "Latin-1": text.encode("latin-1")}[how])
    return Case(f"the config file is {how}", names=(FILE,), refuse=BOTH)


@mutation("cfg_empty")
def cfg_empty(work: Work) -> Case:
    text = work.rng.choice(["", "\n", "---\n", "# nothing but a comment\n", "~\n", "{}\n"])
    work.config.write_text(text)
    # An empty config would run on the code's defaults (data/, efficientnet_b0, ...): refused, the file named.
    return Case(f"the config file holds only {text!r}", names=(FILE,), refuse=BOTH)


@mutation("cfg_extends")
def cfg_extends(work: Work) -> Case:
    target = work.rng.choice(["missing", "itself", "a folder", "an empty file"])
    value = {"missing": work.outside("base.yaml"), "itself": work.config, "a folder": work.root,
             "an empty file": work.outside("empty.yaml")}[target]
    work.outside("empty.yaml").write_text("")
    work.save_config({"extends": str(value), **work.load_config()})
    if target == "an empty file":
        return Case("config extends an empty file", names=(FILE,))
    return Case(f"config extends {target}: {str(value)!r}", names=(("extends", FILE, value.name),), refuse=BOTH)


@mutation("cfg_extends_odd")
def cfg_extends_odd(work: Work) -> Case:
    value = work.rng.choice([[str(work.config)], {"file": "base.yaml"}, 5, True, ""])
    work.save_config({"extends": value, **work.load_config()})
    return Case(f"config extends {value!r}", names=(("extends", FILE),), refuse=BOTH)


@mutation("cfg_set")
def cfg_set(work: Work) -> Case:
    s, names = work.rng.choice([
        ("folds.n_splits=abc", ("folds.n_splits",)), ("no_such.key=1", ("no_such",)), ("seed", ("seed",)),
        ("backbones.5.lr=1", ("backbones.5.lr",)), ("backbones.x.lr=1", ("backbones.x.lr",)), ("=5", ("=5",)),
        ("data_dir=", ("data_dir",)), ("tta=[orig", ("tta",)), ("data.age_cuts=[60, 30]", ("data.age_cuts",)),
        ("train=5", ("train",)), ("folds.n_splits=1", ("folds.n_splits",)), ("train..epochs=3", ("train..epochs",)),
    ])
    return Case(f"--set {s!r}", names=names, refuse=BOTH, sets=(s,))


@mutation("cfg_set_deep")
def cfg_set_deep(work: Work) -> Case:
    s = work.rng.choice(["train.epochs.x=5", "seed.x.y=5", "data_dir.x=1", "tta.0.x=1"])
    return Case(f"--set {s!r} (a key below a value)", names=(s.split("=")[0].rsplit(".", 1)[0],), refuse=BOTH,
                sets=(s,))


@mutation("cfg_training_values")
def cfg_training_values(work: Work) -> Case:
    s = work.rng.choice(["train.epochs=0", "train.epochs=-1", "train.batch_size=0", "train.batch_size=-4",
                         "train.accum_steps=0", "train.num_workers=-1", "tta=[]", "train.device=gpu"])
    # Values that pass today's checks and crash train-all: check-data must refuse them, naming the key.
    return Case(f"--set {s!r}", names=(s.split("=")[0],), refuse=CHECK, sets=(s,))


@mutation("cfg_age_cuts")
def cfg_age_cuts(work: Work) -> Case:
    cuts = work.rng.choice(["[30, 30]", "[-5, 200]", "[60, 60]", "[-1, 30]"])
    return Case(f"--set data.age_cuts={cuts}", names=("age_cuts",), refuse=BOTH, sets=(f"data.age_cuts={cuts}",))


@mutation("cfg_empty_path")
def cfg_empty_path(work: Work) -> Case:
    data = work.load_config()
    key = work.rng.choice(["data_dir", "run_dir", "cache_dir"])
    value = work.rng.choice(["", " "] + (["."] if key != "run_dir" else []))
    data[key] = value
    work.save_config(data)
    if value == ".":  # the working folder, named: a choice, not a slip (the run's files land in it)
        return Case(f"config {key}: {value!r}", names=(key,), meaning="any")
    # An empty folder name means the working folder: a run's files would land among the project's own.
    return Case(f"config {key}: {value!r}", names=(key,), refuse=BOTH)


def numeric_keys(data: dict):
    """Every number of the config, and every optional number it leaves at null, as (dotted key, int or float)."""
    for key, value in _leaves(data):
        tp = _field_type(key) if key not in PLACES else None
        if tp in (int, float) and (value is None or not isinstance(value, (bool, str, dict, list))):
            yield key, tp


@mutation("cfg_negative_number")
def cfg_negative_number(work: Work) -> Case:
    data = work.load_config()
    key, tp = work.rng.choice(list(numeric_keys(data)))
    value = work.rng.choice([-1, -3] if tp is int else [-0.5, -1e-4, -2.0])
    _set(data, key, value)
    work.save_config(data)
    # No number of the schema means anything below 0: each is refused at load, naming its key.
    return Case(f"config {key}: {value!r} (a negative number)", names=(_named_key(key),), refuse=BOTH)
