"""timm's model names, kept in a file per timm version, so that a backbone's name is checked without importing timm
(and torch under it: 4 s of every command that needs no model). The installed version is read from the package's
metadata; a new version gets a new file, built once by importing timm."""
from __future__ import annotations

import difflib
import fnmatch
import json
import os
from importlib.metadata import version
from pathlib import Path

from pipeline.io import atomic_write_text


def cache_file(timm_version: str | None = None) -> Path:
    """$MASKFOLD_CACHE_DIR (default ~/.cache/maskfold)/timm-names-<version>.json."""
    root = os.environ.get("MASKFOLD_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maskfold"
    return Path(root) / f"timm-names-{timm_version or version('timm')}.json"


def _from_timm() -> dict:
    import timm

    return {"models": timm.list_models(), "pretrained": timm.list_pretrained()}


def timm_names() -> dict:
    """{'models': architecture names, 'pretrained': 'arch.tag' names} of the installed timm, from its file, built
    (and written, where the folder can be written) when it is missing or unreadable."""
    path = cache_file()
    try:
        names = json.loads(path.read_text())
        if isinstance(names.get("models"), list) and isinstance(names.get("pretrained"), list):
            return names
    except (OSError, ValueError, AttributeError):
        pass
    names = _from_timm()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(names))
    except OSError:  # a read-only home: the check still works, it only pays the import each time
        pass
    return names


def backbone_name_problem(name: str, names: dict | None = None) -> str | None:
    """Why `name` is not a timm model (with close names), or None. A pretrained tag (resnet18.a1_in1k) must be one
    timm has; the architecture is the part before the first dot, as timm.is_model reads it."""
    names = names or timm_names()
    arch, _, tag = name.partition(".")
    if arch in set(names["models"]) and (not tag or fnmatch.filter(names["pretrained"], name)):
        return None
    close = difflib.get_close_matches(name, names["models"], n=3, cutoff=0.6)
    return "is not a timm model" + (f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()")
