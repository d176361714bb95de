"""`maskfold audit`: the training labels a finished run's out-of-fold predictions find probably wrong.

Reads the chosen blend's OOF probabilities (or one member's) and the run's folds.csv, ranks suspects of four kinds
(audit.score) and writes under <run_dir>/audit/: suspects.csv, rows in the format of the label-fix file so that a
reviewed row is copied into it as it is; suspects.png, the top suspects' photos; audit.md, counts and how to apply.
Never loads a model and never changes a label: fixing is the user's decision, one copied row at a time.
"""
from __future__ import annotations

import pandas as pd

from audit.inputs import AuditInput, read_input
from audit.score import rank_suspects
from audit.sheet import write_sheet
from pipeline.config import Config
from pipeline.io import atomic_write_csv, atomic_write_text, remove_stale_temporaries
from pipeline.layout import audit_dir, audit_files
from pipeline.tables.label_fixes import FIX_COLUMNS

KINDS = {"gender": "a person's gender", "age": "a person's age band",
         "swap": "mask labels: two photos swapped, or one photo alone", "photo": "other single photos (cleanlab)"}


def fix_rows(suspects: pd.DataFrame) -> pd.DataFrame:
    """The suspects as label-fix rows; the note holds kind, score and reason ('#' would start a comment there)."""
    notes = [f"audit {r.kind} {r.score:.2f}: {r.reason}".replace("#", "") for r in suspects.itertuples()]
    return pd.DataFrame({"person_id": suspects["person_id"], "field": suspects["field"], "old": suspects["old"],
                         "new": suspects["new"], "note": notes}, columns=FIX_COLUMNS)


def _markdown(cfg: Config, found: AuditInput, suspects: pd.DataFrame, top: int) -> str:
    files = audit_files(cfg.run_dir)
    persons = found.photos["person_id"].nunique()
    lines = [f"# Label audit of {cfg.run_dir}", "",
             f"Out-of-fold probabilities of {found.source} on {len(found.photos)} photos of {persons} persons, "
             f"against the labels of folds.csv. A score is a log-likelihood ratio in nats per photo changed: how "
             f"much better the OOF probabilities fit the labels with the row applied; only scores above 0 are listed.",
             "", "| kind | suspects | of which in the top " + str(top) + " |", "|---|---|---|"]
    shown = suspects.head(top)
    for kind, what in KINDS.items():
        lines.append(f"| {kind}: {what} | {(suspects['kind'] == kind).sum()} | {(shown['kind'] == kind).sum()} |")
    lines += ["", f"## Top {len(shown)}", "", "| rank | kind | person | row | score | reason |",
              "|---|---|---|---|---|---|"]
    for k, r in enumerate(shown.itertuples(), start=1):
        lines.append(f"| {k} | {r.kind} | {r.person_id} | {r.field} {r.old} -> {r.new} | {r.score:.2f} | {r.reason} |")
    lines += ["", "## How to apply a fix", "",
              f"1. Look at each suspect in `{files['png'].name}` (the photos it touches are framed red).",
              f"2. Copy the rows you agree with from `{files['csv'].name}` into the label-fix file "
              f"(`data.label_fixes`: {cfg.data.label_fixes}), unchanged; a row applies only while the label is "
              f"still its `old` value, so a rerun never applies it twice.",
              "3. `maskfold check-data` lists every fix it applied; then `folds`, `train-all` and `ensemble` again: "
              "the labels' digest changes, so every pair retrains on the fixed labels.", ""]
    return "\n".join(lines)


def run_audit(cfg: Config, member: str | None = None, top: int = 24, log=print) -> pd.DataFrame:
    """Rank the suspects and write suspects.csv, suspects.png and audit.md; returns the ranked suspects."""
    remove_stale_temporaries(audit_dir(cfg.run_dir))  # a killed earlier audit's half-written files
    found = read_input(cfg, member)
    suspects = rank_suspects(found.photos, found.probs, found.cuts)
    files = audit_files(cfg.run_dir)
    atomic_write_csv(fix_rows(suspects), files["csv"])
    write_sheet(files["png"], suspects.head(top), found.photos, found.probs, found.cuts, found.data_dir)
    atomic_write_text(files["md"], _markdown(cfg, found, suspects, top))
    counts = suspects["kind"].value_counts()
    log(f"audit of {found.source}: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in KINDS) + " suspect(s)")
    for k, r in enumerate(suspects.head(min(top, 10)).itertuples(), start=1):
        log(f"  {k}. {r.kind} {r.person_id}: {r.field} {r.old} -> {r.new} (score {r.score:.2f})")
    log(f"wrote {files['csv']}, {files['png']} and {files['md']}")
    return suspects
