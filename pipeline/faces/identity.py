"""The same face under two ids: persons whose unmasked photos embed closer than folds.same_face_threshold
(pipeline.faces.embeddings; dlib's own same-person threshold is 0.6, and closer than 0.35 real faces were found to
be one person twice: the same photo under two ids, or the same face at two ages).

A split by person is honest only where every person is one id: two ids of one face in two folds put that face in
its own validation fold. `folds` keeps each group of such ids in one fold (folds.same_face: group), or only reports
them (warn); check-data names the pairs with a picture of each side by side, and counts the eval photos whose face
is a training person's (a test-set leak in the user's own data: reported, never used).

Each person is one vector: the mean of the orig and mirrored embeddings of their unmasked photo (a mask hides half
of what tells faces apart), boxed as the face member boxes it (found, else the prior box). Needs the `faces` extra;
imports neither torch nor dlib until asked to embed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

@dataclass
class PersonFaces:
    persons: np.ndarray  # person ids
    files: list[str]  # the photo each is embedded from (the unmasked one where there is one)
    vectors: np.ndarray  # (P, D)
    prior: list[float]
    chain: str


def person_faces(table: pd.DataFrame, data_dir, cache_dir, run_dir, chain_text: str, log=print) -> PersonFaces:
    """One vector per person of a training table (person_id, mask, path)."""
    from pipeline.faces import embeddings
    from pipeline.faces.boxes import face_boxes
    from pipeline.tables.fields import image_file

    chain_text, note = embeddings.usable_chain(chain_text, run_dir)
    if note:
        log(note)
    ranked = table.assign(_rank=(table["mask"] != "normal").astype(int)).sort_values(["person_id", "_rank"],
                                                                                      kind="stable")
    first = ranked.drop_duplicates("person_id")
    files = [str(image_file(data_dir, p)) for p in first["path"]]
    found = face_boxes(files, chain_text, cache_dir, run_dir, n_jobs=embeddings.default_jobs(), log=log)
    prior = embeddings.prior_box(found, files)
    specs, _ = embeddings.assign_boxes(found, None, None, prior)
    vectors, _, _ = embeddings.embed(files, specs, cache_dir, embeddings.default_jobs(), log, desc="faces of persons")
    return PersonFaces(first["person_id"].astype(str).to_numpy(), files, vectors.mean(axis=1), prior, chain_text)


def squared_distances(a: np.ndarray, b: np.ndarray, block: int = 1024):
    """(start, squared distances of a[start : start + block] to every row of b), block by block, so that 30,000
    faces never make a 30,000 x 30,000 matrix."""
    sq_a, sq_b = (a ** 2).sum(1), (b ** 2).sum(1)
    for start in range(0, len(a), block):
        yield start, sq_a[start : start + block, None] + sq_b[None, :] - 2 * a[start : start + block] @ b.T


def close_pairs(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, distance) for every pair i < j closer than `threshold`, closest first."""
    out = []
    for start, d2 in squared_distances(vectors, vectors):
        rows, cols = np.nonzero(d2 < threshold ** 2)
        for i, j in zip(rows + start, cols):
            if i < j:
                out.append((int(i), int(j), float(np.sqrt(max(d2[i - start, j], 0.0)))))
    return sorted(out, key=lambda t: t[2])


def same_face_pairs(faces: PersonFaces, threshold: float) -> pd.DataFrame:
    """The pairs of person ids whose faces are one face: person_a, person_b, distance, file_a, file_b."""
    rows = [{"person_a": faces.persons[i], "person_b": faces.persons[j], "distance": round(d, 4),
             "file_a": faces.files[i], "file_b": faces.files[j]} for i, j, d in close_pairs(faces.vectors, threshold)]
    return pd.DataFrame(rows, columns=["person_a", "person_b", "distance", "file_a", "file_b"])


def person_groups(persons, pairs: pd.DataFrame) -> dict[str, str]:
    """person -> its group (the smallest id of the ids joined by same-face pairs, through any chain of them)."""
    parent = {str(p): str(p) for p in persons}

    def root(p):
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for a, b in zip(pairs["person_a"].astype(str), pairs["person_b"].astype(str)):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {p: root(p) for p in parent}


def eval_matches(faces: PersonFaces, eval_vectors: np.ndarray, threshold: float) -> np.ndarray:
    """For each eval photo (its (views, D) embedding), whether its face is a training person's."""
    if not len(eval_vectors):
        return np.zeros(0, bool)
    v = eval_vectors.mean(axis=1)
    hits = np.zeros(len(v), bool)
    for start, d2 in squared_distances(v, faces.vectors):
        hits[start : start + len(d2)] = (d2 < threshold ** 2).any(1)
    return hits


def pairs_picture(pairs: pd.DataFrame, out: Path, n: int = 24, cell: int = 128) -> Path | None:
    """The first n pairs, a row each: both photos side by side, with their ids and distance."""
    from PIL import Image, ImageDraw

    from pipeline.data.images import read_rgb
    from pipeline.io import atomic_path

    rows = pairs.head(n).to_dict("records")
    if not rows:
        return None
    label = 18
    sheet = Image.new("RGB", (2 * cell, len(rows) * (cell + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = r * (cell + label)
        draw.text((4, y + 2), f"{row['person_a']} / {row['person_b']}: distance {row['distance']:.3f}", fill="black")
        for c, f in enumerate((row["file_a"], row["file_b"])):
            img = Image.fromarray(read_rgb(f))
            img.thumbnail((cell, cell))
            sheet.paste(img, (c * cell + (cell - img.width) // 2, y + label))
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out


def missing_extra() -> str | None:
    from pipeline.faces.embeddings import missing_extra as missing

    return missing()


def same_face_check(cfg, table: pd.DataFrame, evals: pd.DataFrame | None = None, log=print):
    """The pairs of ids with one face among a training table's persons (train-only rows left out), written to
    <run_dir>/same_faces.csv and .png and named in the log; with `evals`, the eval photos whose face is a training
    person's, counted. (pairs, faces), or None where folds.same_face is off or the `faces` extra is missing (said)."""
    from pipeline.io import atomic_write_csv
    from pipeline.layout import same_faces_csv, same_faces_png
    from pipeline.storage import require_folder
    from pipeline.tables.folds import train_only

    if cfg.folds.same_face == "off":
        return None
    if why := missing_extra():
        log(f"same face under two ids: not checked ({why})")
        return None
    require_folder(cfg.cache_dir, "cache_dir")  # where the embeddings are kept: refused by name, as training does
    own = table[~train_only(table)] if "source" in table else table
    faces = person_faces(own, cfg.data_dir, cfg.cache_dir, cfg.run_dir, cfg.data.face_detector, log)
    threshold = cfg.folds.same_face_threshold
    pairs = same_face_pairs(faces, threshold)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(pairs, same_faces_csv(run))
    if len(pairs):
        picture = pairs_picture(pairs, same_faces_png(run))
        shown = "; ".join(f"{a} and {b} ({d:.3f})" for a, b, d in
                          pairs[["person_a", "person_b", "distance"]].head(10).itertuples(index=False))
        log(f"same face under two ids: {len(pairs)} pair(s) of persons closer than {threshold} "
            f"(folds.same_face_threshold): {shown}{'; ...' if len(pairs) > 10 else ''}; listed in "
            f"{same_faces_csv(run)}, side by side in {picture}")
    else:
        log(f"same face under two ids: none among {len(faces.persons)} persons (distance under {threshold})")
    if evals is not None and len(evals):
        from pipeline.faces import embeddings
        from pipeline.tables.fields import image_file

        files = [str(image_file(cfg.data_dir, p)) for p in evals["path"]]
        vectors, _ = embeddings.new_photo_embeddings(files, faces.chain, faces.prior, cfg.cache_dir, cfg.run_dir, log)
        hits = eval_matches(faces, vectors, threshold)
        log(f"eval photos whose face is a training person's (distance under {threshold}): {int(hits.sum())} of "
            f"{len(hits)}" + (" (a leak between your training and eval sets: reported, not used)" if hits.any() else ""))
    return pairs, faces
