"""MkDocs hook: the pages made from the code (pipeline/docs_ref.py) and BENCHMARKS.md, added to the site at
every build, so that they are never stale and never committed twice."""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


def on_files(files, config):
    from pipeline.docs_ref import PAGES

    for page, make in PAGES.items():
        files.append(File.generated(config, page, content=make()))
    # BENCHMARKS.md links the docs from the repository's root; here it sits beside them
    benchmarks = (ROOT / "BENCHMARKS.md").read_text().replace("](docs/", "](")
    files.append(File.generated(config, "benchmarks.md", content=benchmarks))
    return files
