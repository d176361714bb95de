"""YAML files read into typed dataclasses: every value checked against its field's type, `extends:` chains
merged (dicts key by key, lists replace), `--set dotted.key=value` overrides applied, and numbers read the way a
user writes them. Every error names the key and the file it came from.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from pathlib import Path

import yaml

from pipeline.errors import MaskfoldError


class ConfigError(MaskfoldError, ValueError):
    """A config file, a --set or a command option names an unknown key, a value of the wrong type or range, or a
    name the code does not have; the message names the file and the key. Fix: change that key (close names are
    suggested); `maskfold check-data --config FILE` checks a config before any work."""


# scalar type -> (does a YAML value fit it, how an error names it, conversion); bools are not numbers here
_SCALARS = {
    bool: (lambda v: isinstance(v, bool), "true or false", lambda v: v),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", lambda v: v),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", float),
    str: (lambda v: isinstance(v, str), "a string", lambda v: v),
}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_value(tp, value, key: str, source: str):
    """Return value converted to tp, or raise a ConfigError naming key and source."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return check_value(a, value, key, source)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping of {tp.__name__} fields, got {value!r}")
        return build(tp, value, key, source)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [check_value(item, v, f"{key}.{i}", source) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp in _SCALARS:
        fits, what, convert = _SCALARS[tp]
        if not fits(value):
            quoted = ('; unquoted, YAML reads on/off, yes/no and true/false as true or false: write the word in '
                      'quotes (e.g. "off")' if tp is str and isinstance(value, bool) else "")
            raise ConfigError(f"{source}: '{key}' must be {what}, got {value!r}{quoted}")
        if tp is str and "\0" in value:  # no path or name holds one; the OS would refuse it with no key named
            raise ConfigError(f"{source}: '{key}' holds a NUL character (\\0); remove it")
        return convert(value)
    raise ConfigError(f"{source}: '{key}' has unsupported type {_type_name(tp)}")


def unknown_key(cls, key: str, prefix: str, source: str) -> ConfigError:
    """The error for a key the schema does not have, with the closest known key suggested."""
    import difflib

    names = [f.name for f in dataclasses.fields(cls)]
    where = f"{prefix}.{key}" if prefix else key
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(f"{source}: unknown key '{where}'; {hint}(known here: {', '.join(names)})")


def build(cls, data: dict, prefix: str, source: str, partial: bool = False):
    hints = typing.get_type_hints(cls)
    for k in data:
        if k not in hints:
            raise unknown_key(cls, k, prefix, source)
    kwargs = {}
    for f in dataclasses.fields(cls):
        where = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in data:
            kwargs[f.name] = check_value(hints[f.name], data[f.name], where, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and not partial:
            raise ConfigError(f"{source}: missing required key '{where}'")
    if partial:
        return kwargs
    return cls(**kwargs)


def check_partial(cls, data: dict, prefix: str, source: str) -> None:
    """Check one file's keys and types before merging, so an error names the file it came from."""
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        where = f"{prefix}.{k}" if prefix else k
        if k not in hints:
            raise unknown_key(cls, k, prefix, source)
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, dict):
            check_partial(tp, v, where, source)
        else:
            check_value(tp, v, where, source)


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _Loader(yaml.SafeLoader):
    """YAML as a user writes it: `1e-4` and `3E5` are numbers (YAML 1.1 wants `1.0e-4` and reads `1e-4` as text),
    and a key written twice in one mapping is an error (YAML keeps the last silently: an edit that looks made
    would not be)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: '{key}' is written twice in one section "
                                  f"(first on line {seen[key] + 1}); keep one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml(text: str):
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # PyYAML composes nested values recursively
        raise ConfigError("values nested too deeply (hundreds of levels of [ or {); write them flat") from None


RELATIVE_RULE = "relative paths are read from the working directory"


def where_relative(path) -> str:
    """The words every 'not found' message adds for a relative path: which folder it was read from."""
    return "" if Path(path).is_absolute() else f" ({RELATIVE_RULE}, {Path.cwd()})"


def read_yaml(path: Path, schema, chain: tuple = ()) -> dict:
    """One config file with its `extends:` chain. `extends:` is read relative to the folder of the file that names it
    (as mmengine's `_base_` and Hydra's defaults are), so a config works from any folder; every other relative
    path (data_dir, run_dir, ...) is read from the working directory, like the paths given on the command line."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; name one config file, e.g. {path / 'base.yaml'}")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found{where_relative(path)}")
    if path.resolve() in chain:
        raise ConfigError(f"{path}: 'extends' loops back to itself")
    try:
        data = _yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); a config is a YAML text file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if data is None or data == {}:  # an empty file (or `{}`) would run on the code's defaults, which no one chose
        raise ConfigError(f"{path}: the config file is empty; name what differs from a base, e.g. "
                          f"`extends: base.yaml` and the keys you change")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    parent = data.pop("extends", None)
    check_partial(schema, data, "", str(path))
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"{path}: 'extends' must name one config file (a path), got {parent!r}; write "
                          f"`extends: base.yaml`")
    base_path = Path(parent) if Path(parent).is_absolute() else path.parent / parent
    if base_path.is_dir():
        raise ConfigError(f"{path}: 'extends' names {base_path}, which is a folder; `extends:` names one config file "
                          f"(e.g. `extends: base.yaml`), read relative to the folder of the file that names it")
    if not base_path.is_file():
        raise ConfigError(f"{path}: 'extends' names {base_path}, not found; `extends:` is read relative to the "
                          f"folder of the file that names it ({path.parent})")
    base = read_yaml(base_path, schema, chain + (path.resolve(),))
    return merge(base, data)


def apply_set(data: dict, assignment: str, schema) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set '{assignment}': expected dotted.key=value")
    key, raw = assignment.split("=", 1)
    try:
        value = _yaml(raw)
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node, tp = data, schema
    for i, p in enumerate(parts):
        if not isinstance(node, (dict, list)) or not _is_section(tp):
            where = ".".join(parts[:i])
            raise ConfigError(f"--set {assignment}: '{where}' is a value, not a section; set it whole, "
                              f"e.g. --set {where}=VALUE")
        tp = _member_type(tp, p)
        if i == len(parts) - 1:
            if isinstance(node, list):
                node[_list_index(node, p, key)] = value
            else:
                node[p] = value
        elif isinstance(node, list):
            node = node[_list_index(node, p, key)]
        else:
            node = node.setdefault(p, {})
    check_partial(schema, data, "", f"--set {assignment}")


def _strip_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _is_section(tp) -> bool:
    """Whether a schema type holds keys or items (a dataclass, list or mapping); None: unknown, left to the check."""
    tp = _strip_optional(tp)
    return tp is None or dataclasses.is_dataclass(tp) or typing.get_origin(tp) in (list, dict) or tp in (list, dict)


def _member_type(tp, name: str):
    """The schema type of one key or list item of a section, None where the schema does not say (unknown keys are
    reported by the check that follows)."""
    tp = _strip_optional(tp)
    if dataclasses.is_dataclass(tp):
        return typing.get_type_hints(tp).get(name)
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0]
    return None


def _list_index(node: list, p: str, key: str) -> int:
    if not p.isdigit() or int(p) >= len(node):
        raise ConfigError(f"--set {key}: '{p}' is not an index of a list of {len(node)} items")
    return int(p)


def blamed_on_sets(error: ConfigError, source: str, overrides) -> ConfigError:
    """`error` ("SOURCE: 'key' ...") said of the --set that gave the key its value, where one did (the last one of
    that key or of a section holding it): the file named in `source` may not hold the key at all."""
    text = str(error)
    if not text.startswith(f"{source}: '"):
        return error
    key = text[len(source) + 3:].split("'", 1)[0]
    for assignment in reversed(list(overrides)):
        given = assignment.split("=", 1)[0].strip()
        if key == given or key.startswith(given + "."):
            return ConfigError(f"--set {assignment}:{text[len(source) + 1:]}")
    return error
