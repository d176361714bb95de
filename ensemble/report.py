"""report.md with a confusion matrix and a per-class F1 chart beside it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from pipeline.io import atomic_path, atomic_write_text
from pipeline.labels import NUM_CLASSES, age_band_names, class_names
from pipeline.layout import ENSEMBLE_FILES

CLASSES = range(NUM_CLASSES)

# (dotted config key, its default): the techniques a run may switch on; report.md names those it did.
TECHNIQUES = (
    ("train.head", "joint"),
    ("train.age_head", "bands"),
    ("data.soften_near_cut", 0),
    ("train.layer_decay", None),
    ("data.use_pseudo", False),
    ("train.refit", False),
    ("ensemble.test_from", "folds"),
    ("ensemble.tune_age_cut", False),
)


def techniques_used(cfg_dict: dict) -> list[str]:
    """`key=value` for each technique in TECHNIQUES whose value in the resolved config is not its default."""
    used = []
    for key, default in TECHNIQUES:
        value = cfg_dict
        for part in key.split("."):
            value = value.get(part, default) if isinstance(value, dict) else default
        if key == "ensemble.test_from" and value == "auto":  # follows the run: both where it trains refits
            value = "both" if cfg_dict.get("train", {}).get("refit") else "folds"
        if value != default:
            used.append(f"{key}={value}")
    return used


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(fmt(v) for v in r) + " |" for r in rows
    ]


def _save_png(fig, path: Path, held=None) -> None:
    with atomic_path(path, held) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_confusion(y, pred, names: list[str], path: Path, held=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confusion_matrix(y, pred, labels=CLASSES)
    cm = counts.astype(float)
    cm = np.divide(cm, cm.sum(1, keepdims=True), out=np.zeros_like(cm), where=cm.sum(1, keepdims=True) > 0)
    fig, ax = plt.subplots(figsize=(12, 11))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(CLASSES, [f"{i} {n}" for i, n in enumerate(names)], rotation=90, fontsize=8)
    ax.set_yticks(CLASSES, [f"{i} {n}" for i, n in enumerate(names)], fontsize=8)
    for i in CLASSES:
        for j in CLASSES:
            if counts[i, j]:
                ax.text(j, i, f"{cm[i, j]:.2f}\n{counts[i, j]}", ha="center", va="center", fontsize=5.5,
                        color="white" if cm[i, j] > 0.5 else "black")
    for edge in range(3, NUM_CLASSES, 3):  # thin: gender blocks; thick: mask blocks (labels are mask*6+gender*3+age)
        width = 1.6 if edge % 6 == 0 else 0.6
        ax.axhline(edge - 0.5, color="#444", lw=width)
        ax.axvline(edge - 0.5, color="#444", lw=width)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (rate: rows sum to 1; count below)")
    ax.set_title("OOF confusion matrix (ensemble)")
    fig.colorbar(im, fraction=0.046)
    _save_png(fig, path, held)
    plt.close(fig)


def plot_class_f1(f1, support, names: list[str], elder: str, path: Path, held=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    colours = ["#4c72b0" if n.split("/")[-1] != elder else "#dd8452" for n in names]
    ax.bar(CLASSES, f1, color=colours)
    for i, (v, n) in enumerate(zip(f1, support)):
        ax.text(i, v + 0.01, f"{v:.2f}\nn={n}", ha="center", fontsize=7)
    ax.set_xticks(CLASSES, [f"{i} {n}" for i, n in enumerate(names)], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("F1")
    ax.set_title(f"OOF F1 per class (orange: {elder})")
    _save_png(fig, path, held)
    plt.close(fig)


def fold_spread(per_fold: list[dict]) -> list[list]:
    """[backbone, folds, mean, std] of each backbone's per-fold macro F1 (std over folds, ddof=0)."""
    out = []
    for b in dict.fromkeys(d["backbone"] for d in per_fold):
        f1 = np.array([d["f1"] for d in per_fold if d["backbone"] == b])
        out.append([b, len(f1), float(f1.mean()), float(f1.std())])
    return out


def plot_curves(curves: dict, path: Path, held=None) -> None:
    """curves: backbone -> {fold: metrics DataFrame}. One row of panels per backbone, folds overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("train_loss", "train loss"), ("val_loss", "validation loss (plain CE)"), ("val_f1", "validation macro F1")]
    fig, axes = plt.subplots(len(curves), 3, figsize=(13, 3.2 * len(curves)), squeeze=False)
    for row, (backbone, folds) in zip(axes, curves.items()):
        for ax, (col, title) in zip(row, panels):
            for k, m in folds.items():
                if col in m:
                    ax.plot(m["epoch"], m[col], marker="o", ms=3, label=f"fold {k}")
            ax.set_title(f"{backbone}: {title}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        row[2].legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, path, held)
    plt.close(fig)


def plot_mistakes(files: list, y, pred, confidence, names: list[str], path: Path, n: int = 16, held=None) -> int:
    """The n most confident OOF mistakes: photo, truth, prediction and the confidence given to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.data.images import read_rgb

    wrong = np.flatnonzero(y != pred)
    worst = wrong[np.argsort(-confidence[wrong])][:n]
    cols = 4
    fig, axes = plt.subplots(max(1, -(-len(worst) // cols)), cols, figsize=(12, 4.2 * max(1, -(-len(worst) // cols))),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, worst):
        ax.imshow(read_rgb(files[i]))  # upright, as training saw it
        ax.set_title(f"true {names[y[i]]}\npred {names[pred[i]]} ({confidence[i]:.2f})", fontsize=9)
    fig.suptitle("Most confident OOF mistakes")
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title above the first row
    _save_png(fig, path, held)
    plt.close(fig)
    return len(worst)


def near_cut_table(ages, y, pred, cuts) -> list[list]:
    """[age, photos, class accuracy, age-band accuracy] for the ages just around each cut, where labels are least
    certain and most errors are."""
    from pipeline.labels import decode_label

    rows = []
    for cut in cuts:
        for age in range(cut - 3, cut + 2):
            at = ages == age
            if at.any():
                rows.append([age, int(at.sum()), float((y[at] == pred[at]).mean()),
                             float((decode_label(y[at])[2] == decode_label(pred[at])[2]).mean())])
    return rows


def techniques_lines(run: list[str], members: dict[str, list[str]] | None = None) -> list[str]:
    """'techniques: ...' for the run, and one line for each member (of a blend) that used others."""
    lines = [f"techniques: {', '.join(run)}"] if run else []
    for name, used in (members or {}).items():
        if used != run:
            lines.append(f"techniques of {name}: {', '.join(used) or 'defaults'}")
    return lines


@dataclass
class ReportInput:
    """What report.md shows. rows: label -> scores of each row of the scores table; per_fold: a dict per (backbone,
    fold); y, pred: the OOF truth and the chosen blend's classes; test_pred: its eval classes (None without an eval
    set); train_labels: the training prior; chosen: the blend used; curves: backbone -> {fold: metrics table};
    correlation: (members, their OOF errors' correlation); photos: ages, files and confidence of each OOF photo;
    techniques: lines from techniques_lines; pseudo: run -> pseudo-labelled photos per class it trained on;
    sections: more markdown lines (the ages)."""

    rows: dict
    per_fold: list[dict]
    y: np.ndarray
    pred: np.ndarray
    test_pred: np.ndarray | None
    train_labels: np.ndarray
    chosen: str
    age_cuts: tuple = (30, 60)
    curves: dict | None = None
    correlation: tuple | None = None
    photos: dict | None = None
    techniques: list[str] = field(default_factory=list)
    pseudo: dict | None = None
    sections: list[str] = field(default_factory=list)


def write_report(out: Path, r: ReportInput, held: list | None = None) -> list[str]:
    """Write report.md and the PNGs under `out` (layout.ENSEMBLE_FILES), into the output set `held` where given;
    return the headline lines to print."""
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / name for k, name in ENSEMBLE_FILES.items()}
    names = class_names(r.age_cuts)
    per_class = precision_recall_fscore_support(r.y, r.pred, labels=CLASSES, zero_division=0)
    plot_confusion(r.y, r.pred, names, files["confusion"], held)
    plot_class_f1(per_class[2], per_class[3], names, age_band_names(r.age_cuts)[2], files["class_f1"], held)
    if r.curves:
        plot_curves(r.curves, files["curves"], held)
    lines = ["# Ensemble report", ""]
    for line in r.techniques:
        lines += [line, ""]
    lines += _score_lines(r) + _member_lines(r.correlation) + _fold_lines(r, files)
    lines += _class_lines(per_class, names, files)
    if r.photos is not None:
        lines += _age_cut_lines(r, names, files["mistakes"], held)
    lines += r.sections
    if r.pseudo:
        lines += _pseudo_lines(r.pseudo, names)
    if r.test_pred is not None:
        lines += _eval_lines(r.test_pred, r.train_labels, names)
    atomic_write_text(files["report"], "\n".join(lines) + "\n", held)
    head = list(r.techniques) + [f"{k}: macro F1 {v['f1']:.4f}  accuracy {v['acc']:.4f}" for k, v in r.rows.items()]
    pngs = ", ".join(files[k].name for k in ("confusion", "class_f1", "curves", "mistakes"))
    head.append(f"report: {files['report']} (+ {pngs}); submission uses: {r.chosen}")
    return head


def _score_lines(r: ReportInput) -> list[str]:
    lines = ["## Scores on out-of-fold predictions", ""]
    lines += markdown_table(["what", "macro F1", "accuracy", "mask F1", "gender F1", "age F1"],
                            [[k, v["f1"], v["acc"], v["f1_mask"], v["f1_gender"], v["f1_age"]]
                             for k, v in r.rows.items()])
    return lines + ["", "In-sample rows fit and score on the same OOF photos; nested rows fit on some persons and "
                    "score on the others, which is the gain to expect on the leaderboard.", "",
                    f"Used for the submission and the tables below: **{r.chosen}**.", ""]


def _member_lines(correlation) -> list[str]:
    if correlation is None or len(correlation[0]) <= 1:
        return []
    members, corr = correlation
    lines = ["## Which members add something", "", "Correlation of the members' OOF errors (1 where a member is "
             "wrong): the lower, the more one member is right where the other is wrong.", ""]
    return lines + markdown_table(["member", *members], [[m, *map(float, row)] for m, row in zip(members, corr)]) + [""]


def _fold_lines(r: ReportInput, files: dict) -> list[str]:
    lines = ["## Each backbone over its folds", ""]
    lines += markdown_table(["backbone", "folds", "fold macro F1 mean", "std"], fold_spread(r.per_fold))
    lines += ["", "Learning curves (train loss, validation loss and macro F1 per epoch, folds overlaid):", "",
              f"![learning curves]({files['curves'].name})", ""]
    lines += ["## Each (backbone, fold) on its own fold (OOF predictions, with the run's TTA)", ""]
    return lines + markdown_table(["backbone", "fold", "photos", "macro F1", "accuracy"],
                                  [[d["backbone"], d["fold"], d["photos"], d["f1"], d["acc"]] for d in r.per_fold])


def _class_lines(per_class, names: list[str], files: dict) -> list[str]:
    p, rec, f, n = per_class
    lines = ["", "## Per class (final ensemble, OOF)", ""]
    lines += markdown_table(["class", "name", "precision", "recall", "F1", "photos"],
                            [[i, names[i], float(p[i]), float(rec[i]), float(f[i]), int(n[i])] for i in CLASSES])
    return lines + ["", f"![confusion matrix]({files['confusion'].name})", "",
                    f"![per-class F1]({files['class_f1'].name})", ""]


def _age_cut_lines(r: ReportInput, names: list[str], mistakes: Path, held=None) -> list[str]:
    lines = ["## Around the age cuts", "", "True age of the person; accuracy of the whole class and of the age band "
             "alone (OOF).", ""]
    lines += markdown_table(["age", "photos", "class accuracy", "age-band accuracy"],
                            near_cut_table(r.photos["ages"], r.y, r.pred, r.age_cuts))
    shown = plot_mistakes(r.photos["files"], r.y, r.pred, r.photos["confidence"], names, mistakes, held=held)
    return lines + ["", f"The {shown} most confident OOF mistakes (truth, prediction, confidence):", "",
                    f"![mistakes]({mistakes.name})", ""]


def _pseudo_lines(pseudo: dict, names: list[str]) -> list[str]:
    lines = ["## Pseudo-labelled eval photos added to every training fold", "",
             "Eval photos another run's ensemble was sure of, trained on in every fold, never validated nor "
             "counted in any figure above.", ""]
    counts = [[i, names[i], *(int(c[i]) for c in pseudo.values())] for i in CLASSES]
    lines += markdown_table(["class", "name", *(f"photos ({run})" for run in pseudo)],
                            counts + [["total", "", *(int(c.sum()) for c in pseudo.values())]])
    return lines + [""]


def _eval_lines(test_pred, train_labels, names: list[str]) -> list[str]:
    prior = np.bincount(train_labels, minlength=NUM_CLASSES) / len(train_labels)
    dist = np.bincount(test_pred, minlength=NUM_CLASSES) / len(test_pred)
    lines = ["## Predicted class distribution on the eval set vs the training prior", ""]
    return lines + markdown_table(["class", "name", "eval predicted", "training prior", "ratio"],
                                  [[i, names[i], float(dist[i]), float(prior[i]),
                                    float(dist[i] / prior[i]) if prior[i] else float("nan")] for i in CLASSES])
