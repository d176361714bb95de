"""`maskfold compare RUN_DIR...`: finished runs side by side, from their files only.

A row per run: when it ran and for how long, each backbone's OOF macro F1 (all folds, and mean ± std over folds),
the ensemble's honest (nested) OOF macro F1, the eval F1 where the data ships eval/labels.csv, and the config keys
in which the runs differ (only those). Runs trained on different photos, labels or folds are marked, since their
OOF figures are not measured on the same thing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.members import run_config
from ensemble.report import markdown_table
from ensemble.weights import load_weights, own_members
from pipeline.io import atomic_path, atomic_write_csv, atomic_write_text
from pipeline.layout import run_digest, run_json, submission_csv
from pipeline.model.metrics import backbone_oof, scores

IGNORED_KEYS = ("run_dir",)  # differs between any two runs by construction


def flatten(d, prefix: str = "") -> dict:
    """{'train': {'lr': 1}} -> {'train.lr': 1}; items of a list of mappings are keyed by index (backbones.0.name)."""
    out = {}
    items = d.items() if isinstance(d, dict) else enumerate(d)
    for k, v in items:
        key = f"{prefix}{k}"
        if v and (isinstance(v, dict) or (isinstance(v, list) and all(isinstance(x, dict) for x in v))):
            out.update(flatten(v, key + "."))  # lists of settings (backbones) by index; lists of values whole
        else:
            out[key] = v
    return out


def _backbone_scores(run: Path, backbone: str, n_splits: int) -> dict | None:
    """OOF macro F1 over all folds, and its mean and std over folds; None unless every fold has predictions."""
    oof = backbone_oof(run, backbone, n_splits)
    if oof is None or oof["folds"] < n_splits:
        return None
    return {"oof": oof["scores"]["f1"], "mean": float(np.mean(oof["fold_f1"])), "std": float(np.std(oof["fold_f1"]))}


def _eval_f1(run: Path, data_dir: str) -> float | None:
    truth, sub = Path(data_dir) / "eval" / "labels.csv", submission_csv(run)
    if not (truth.is_file() and sub.is_file()):
        return None
    s = pd.read_csv(sub)
    t = pd.read_csv(truth).set_index("ImageID").loc[s["ImageID"], "ans"].to_numpy()
    return scores(t, s["ans"].to_numpy())["f1"]


def read_run(run: Path) -> dict:
    cfg = run_config(run)
    info = json.loads(run_json(run).read_text()) if run_json(run).is_file() else {}
    wall = info.get("wall_seconds")
    row = {"run": str(run), "date": info.get("ended", ""), "train-all wall": f"{wall:.0f} s" if wall else ""}
    w = load_weights(run, required=False)
    members = w.members if w else own_members(cfg.backbone_names(), cfg.tta, cfg.folds.n_splits)
    for m in members:
        s = _backbone_scores(m.run_dir(run), m.backbone, m.n_splits)
        row[f"OOF {m.name}"] = (f"{s['oof']:.4f} ({s['mean']:.4f} ± {s['std']:.4f})" if s else "unfinished")
    row["ensemble honest OOF"] = w.submission_honest_f1 if w else None
    row["eval F1"] = _eval_f1(run, cfg.data_dir)
    digest = run_digest(run) or run_digest(members[0].run_dir(run))
    return {"row": row, "config": flatten(cfg.to_dict()), "digest": digest}


def compare_runs(run_dirs: list[str], out_dir: str | Path, log=print) -> pd.DataFrame:
    runs = [read_run(Path(r)) for r in run_dirs]
    keys = sorted({k for r in runs for k in r["config"]} - set(IGNORED_KEYS))
    differ = [k for k in keys if len({json.dumps(r["config"].get(k), sort_keys=True) for r in runs}) > 1]
    groups = {d: chr(ord("A") + i) for i, d in enumerate(dict.fromkeys(r["digest"] for r in runs))}
    table = pd.DataFrame([r["row"] for r in runs])
    table["photos+folds"] = [groups[r["digest"]] for r in runs]
    table["differs in"] = ["; ".join(f"{k}={r['config'].get(k)}" for k in differ) for r in runs]
    out = Path(out_dir)
    atomic_write_csv(table, out / "compare.csv")
    shown = table.astype(object).where(table.notna(), "")
    markdown = "\n".join(markdown_table(list(table.columns), shown.values.tolist()))
    atomic_write_text(out / "compare.md", markdown + "\n")
    _plot(table, out / "compare.png")
    log(markdown)
    if len(groups) > 1:
        log("note: the runs were trained on different photos, labels or folds (column photos+folds): their OOF "
            "figures are not measured on the same photos")
    log(f"keys that differ: {', '.join(differ) or 'none'}")
    log(f"wrote {out / 'compare.csv'}, {out / 'compare.md'} and {out / 'compare.png'}")
    return table


def _plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ensemble.members import run_labels

    ranked = table.assign(f1=table["ensemble honest OOF"].astype(float), label=run_labels(list(table["run"])))
    ranked = ranked.sort_values("f1", na_position="first")
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(ranked) + 1.5))
    ax.barh(range(len(ranked)), ranked["f1"].fillna(0), color="#4c72b0", tick_label=list(ranked["label"]))
    for i, v in enumerate(ranked["f1"]):
        ax.text((v if v == v else 0) + 0.005, i, "unfinished" if v != v else f"{v:.4f}", va="center", fontsize=8)
    ax.set_xlabel("ensemble OOF macro F1 (honest: nested where anything was fitted)")
    ax.set_xlim(0, 1.05)
    ax.set_title("runs ranked by honest OOF macro F1")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
