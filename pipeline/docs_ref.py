"""The docs' three reference pages, generated from the code at every docs build so that they cannot drift:

- the config reference: every key of the schema (dotted), its type, default, the names it allows (from the same
  registries and tuples the checks use) and its meaning (the comment beside or above the field in
  pipeline/config/schema.py);
- the CLI reference: every command and option, from the click group (`maskfold --help` and each `--help`);
- the errors a user can meet: every MaskfoldError subclass with its meaning and fix (its docstring), and the
  messages raised with it across the code.

A docs tool, like the `maskfold` command it documents, sees every stage: it reads their names through pipeline.cli
and their source files for the errors. None of it imports torch except the registries of the config reference.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import io
import re
import sys
import tokenize
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "pipeline" / "config" / "schema.py"
PACKAGES = ("pipeline", "folds", "external_data", "pseudo_labels", "ensemble", "audit", "tune")
SECTIONS = {"": "Top level"}


# ---------------------------------------------------------------- the config reference

def field_help(source: str) -> dict[tuple[str, str], str]:
    """{(class, field): meaning} from the comments of a schema's source: the comment lines right above a field
    (no blank line between) and the comment on its own line, joined."""
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip())
    lines = source.splitlines()
    out = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above, n = [], item.lineno - 1
            while n >= 1 and n in comments and not lines[n - 1][: comments[n][0]].strip():
                above.insert(0, comments[n][1])
                n -= 1
            beside = [comments[item.lineno][1]] if item.lineno in comments else []
            out[(node.name, item.target.id)] = " ".join(above + beside)
    return out


def load_schema(path: Path = SCHEMA):
    """The schema module at `path` (a copy of it in a test), loaded under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"_schema_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def allowed_names() -> dict[str, tuple]:
    """{dotted key: allowed names} from where the checks take them (N stands for any list index)."""
    from pipeline.cli import _external_choices  # the external stage's names, through the command that checks them
    from pipeline.config import AGE_HEADS, Config, load_choices
    from pipeline.config.rules import DEVICES
    from pipeline.faces.boxes import DETECTORS
    from pipeline.preflight import registry_choices

    cfg = Config()
    found = {**load_choices(cfg), **registry_choices(cfg), **_external_choices(cfg)}
    out = {re.sub(r"\.\d+\.", ".N.", k): tuple(allowed) for k, (_, allowed) in found.items()}
    out["train.age_head"] = AGE_HEADS
    out["train.device"] = (DEVICES,)
    out["data.face_detector"] = (" + ".join(DETECTORS) + ", joined by +",)
    return out


def _type_name(tp) -> str:
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))
    return text.replace("typing.", "")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(section)"
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        return "[" + ", ".join("{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in dataclasses.asdict(x).items()
                                                if k == "name" or v != _field_default(type(x), k)) + "}"
                               for x in value) + "]"
    return _yaml(value)


def _field_default(cls, name):
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default if f.default is not dataclasses.MISSING else None


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def config_rows(schema=None) -> list[dict]:
    """A row per key of the schema's Config, depth first: key, type, default, allowed, meaning, section."""
    schema = schema or load_schema()
    helps = field_help(Path(schema.__file__).read_text())
    allowed = allowed_names()
    rows = []

    def walk(cls, prefix: str, section: str):
        hints = typing.get_type_hints(cls, vars(schema))
        for f in dataclasses.fields(cls):
            key, tp = prefix + f.name, hints[f.name]
            meaning = helps.get((cls.__name__, f.name), "")
            if not meaning:
                raise ValueError(f"{schema.__file__}: {cls.__name__}.{f.name} has no comment to explain it")
            inner = typing.get_args(tp)[0] if typing.get_origin(tp) is list and typing.get_args(tp) else None
            if dataclasses.is_dataclass(tp):
                rows.append(dict(key=key, type="section", default="", allowed="", meaning=meaning, section=section))
                walk(tp, key + ".", key)
                continue
            rows.append(dict(key=key, type=_type_name(f.type), default=_default(f),
                             allowed=", ".join(allowed.get(key, ())), meaning=meaning, section=section))
            if inner is not None and dataclasses.is_dataclass(inner):
                walk(inner, key + ".N.", key + ".N")

    walk(schema.Config, "", "")
    return rows


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def config_reference(schema_path: Path = SCHEMA) -> str:
    rows = config_rows(load_schema(schema_path))
    out = ["# Config reference", "",
           "Every key a config file or `--set` may name, generated from `pipeline/config/schema.py` at each docs "
           "build: its type, its default, the names it allows (from the registries and lists the checks use) and "
           "what it means. `N` stands for a list index (`backbones.0.lr`). How files compose and what is checked "
           "when is on [Configuration](../configuration.md).", ""]
    section = None
    for r in rows:
        if r["type"] == "section":
            continue
        if r["section"] != section:
            section = r["section"]
            title = SECTIONS.get(section, f"`{section}`")
            meaning = next((x["meaning"] for x in rows if x["key"] == section), "")
            out += ["", f"## {title}", "", *( [meaning, ""] if meaning else []),
                    "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        out.append(f"| `{r['key']}` | `{_cell(r['type'])}` | `{_cell(r['default'])}` | {_cell(r['allowed'])} | "
                   f"{_cell(r['meaning'])} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the CLI reference

def cli_reference() -> str:
    """Each command's `--help`, as click prints it, from the group `maskfold` runs (no torch is imported)."""
    import click

    from pipeline.cli import main

    out = ["# CLI reference", "", "Every `maskfold` command with its options, as its `--help` prints them (generated "
           "from the commands at each docs build). `make help` lists the Makefile's shortcuts for them.", ""]
    with click.Context(main, info_name="maskfold") as ctx:
        out += ["## maskfold", "", "```text", main.get_help(ctx), "```", ""]
        for name in main.list_commands(ctx):
            cmd = main.get_command(ctx, name)
            with click.Context(cmd, info_name=name, parent=ctx) as sub:
                out += [f"## {name}", "", "```text", cmd.get_help(sub), "```", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- the errors page

def _sources():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield path, ast.parse(path.read_text())


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def error_classes() -> list[type]:
    """Every MaskfoldError subclass, after importing each module whose source defines a class derived from one."""
    from pipeline.errors import MaskfoldError

    family, defining = {"MaskfoldError"}, {}
    trees = list(_sources())
    grew = True
    while grew:
        grew = False
        for path, tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in family and any(
                        (b.id if isinstance(b, ast.Name) else getattr(b, "attr", None)) in family for b in node.bases):
                    family.add(node.name)
                    defining[node.name] = path
                    grew = True
    for path in set(defining.values()):
        importlib.import_module(_module(path))
    found, todo = [], [MaskfoldError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo += sorted(cls.__subclasses__(), key=lambda c: c.__name__)
    return found


def _message(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                       for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _message(node.left), _message(node.right)
        return None if left is None and right is None else (left or "{…}") + (right or "{…}")
    return None


def raised_messages(names: set[str]) -> dict[str, list[tuple[str, str]]]:
    """{class name: [(message with its {placeholders}, file:line)]} for every `raise Name(...)` in the code."""
    out: dict[str, list] = {}
    for path, tree in _sources():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in names and node.exc.args and (text := _message(node.exc.args[0])):
                out.setdefault(name, []).append((text, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return out


def errors_reference() -> str:
    import inspect

    classes = error_classes()
    names = {c.__name__ for c in classes} | {"ClickException"}
    messages = raised_messages(names)
    out = ["# Errors and their fixes", "",
           "An error you can fix is printed as one line, `Error: <message>`, naming the file or key it concerns. "
           "Every such error is one of the kinds below (generated from the error classes and the code that raises "
           "them at each docs build); `{...}` in a message stands for what the code fills in. Anything else is a "
           "fault of maskfold: `Error: <kind>: <message>`, and `--debug` (or `MASKFOLD_DEBUG=1`) prints its "
           "traceback.", ""]
    for cls in classes:
        doc = inspect.getdoc(cls)
        if not doc:
            raise ValueError(f"{cls.__module__}.{cls.__name__} has no docstring to say what it means and its fix")
        bases = ", ".join(b.__name__ for b in cls.__bases__)
        out += [f"## {cls.__name__}", "", f"`{cls.__module__}.{cls.__name__}({bases})`", "", doc.replace("\n", " "),
                ""]
        out += _message_list(messages.get(cls.__name__, []))
    out += ["## Command errors", "",
            "A command's own refusals (click's `ClickException`), printed the same way.", ""]
    out += _message_list(messages.get("ClickException", []))
    return "\n".join(out)


def _message_list(items: list[tuple[str, str]]) -> list[str]:
    if not items:
        return []
    return [f"Raised in {len(items)} place(s):", ""] + [
        f"- `{_code(text)}` ({where})" for text, where in sorted(items, key=_place)] + [""]


def _place(item: tuple[str, str]) -> tuple[str, int]:
    file, _, line = item[1].rpartition(":")
    return file, int(line)


def _code(text: str) -> str:
    return text.replace("`", "'").replace("\n", " ").strip()


PAGES = {"reference/config.md": config_reference, "reference/cli.md": cli_reference,
         "reference/errors.md": errors_reference}


if __name__ == "__main__":  # python -m pipeline.docs_ref OUT_DIR: write the pages (to read them without mkdocs)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipeline.docs_ref OUT_DIR")
    target = Path(sys.argv[1])
    for page, make in PAGES.items():
        (target / page).parent.mkdir(parents=True, exist_ok=True)
        (target / page).write_text(make())
        print(f"wrote {target / page}")
