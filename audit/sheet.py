"""suspects.png: one row per suspect, the person's 7 photos with the label and the OOF prediction under each; the
photos a swap or mask change touches are framed red, and for a gender or age suspect the row's title and every
caption's changed part are red."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.io import atomic_path  # noqa: E402
from pipeline.labels import PHOTOS, class_names  # noqa: E402
from pipeline.tables.fields import image_file  # noqa: E402

THUMB = (96, 128)
RED = "#d62728"


def _thumb(path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail(THUMB)
            return np.asarray(im)
    except OSError:  # a photo gone since training: an empty square says so
        return np.full((THUMB[1], THUMB[0], 3), 200, np.uint8)


def _row(axes, suspect, person: pd.DataFrame, probs: np.ndarray, names: list[str], data_dir) -> None:
    marked = set(suspect.marked.split())
    by_photo = {r.photo: r for r in person.itertuples()}
    for ax, photo in zip(axes, PHOTOS):
        ax.set_xticks([])
        ax.set_yticks([])
        r = by_photo.get(photo)
        if r is None:
            ax.set_axis_off()
            continue
        ax.imshow(_thumb(image_file(data_dir, r.path)))
        p = probs[r.Index]
        ax.set_xlabel(f"{photo}\nlabel {names[r.label]}\nOOF {names[int(p.argmax())]} {p.max():.2f}", fontsize=6,
                      color=RED if photo in marked or not marked else "black")
        if photo in marked:
            for side in ax.spines.values():
                side.set_edgecolor(RED)
                side.set_linewidth(3)


def write_sheet(path, top: pd.DataFrame, photos: pd.DataFrame, probs: np.ndarray, cuts, data_dir) -> None:
    """The top suspects, one row each, ranked as in suspects.csv."""
    names = class_names(cuts)
    rows = max(1, len(top))
    fig, grid = plt.subplots(rows, len(PHOTOS), figsize=(len(PHOTOS) * 1.4, rows * 2.6), squeeze=False)
    # no tight_layout: it would shrink the photos to make room for the row titles, which may run across the row
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.5 / (rows * 2.6), top=1 - 0.3 / (rows * 2.6), wspace=0.08,
                        hspace=0.75)
    for k, (axes, suspect) in enumerate(zip(grid, top.itertuples())):
        person = photos[photos["person_id"] == suspect.person_id]
        _row(axes, suspect, person, probs, names, data_dir)
        axes[0].set_title(f"{k + 1}. {suspect.kind} {suspect.person_id}: {suspect.field} {suspect.old} -> "
                          f"{suspect.new} (score {suspect.score:.2f})", fontsize=7, loc="left", color=RED,
                          x=0, ha="left")
    if top.empty:
        grid[0][0].set_title("no suspects: every label fits the OOF probabilities best", fontsize=8, loc="left")
        for ax in grid[0]:
            ax.set_axis_off()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
