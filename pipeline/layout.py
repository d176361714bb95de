"""Where everything lives under a run directory, and whether a (backbone, fold) pair is finished.

    <run_dir>/config.yaml            the resolved config of the last command
    <run_dir>/folds.csv              folds stage
    <run_dir>/external/              external-data stage (pseudo-persons in the competition layout)
    <run_dir>/pseudo/                pseudo stage: eval photos labelled by another run's ensemble
    <run_dir>/models/<backbone>/fold<k>/{best.pt, last.pt, metrics.csv, oof.npz, test.npz, done.json}
    <run_dir>/models/<backbone>/full/{best.pt, last.pt, metrics.csv, test.npz, done.json}   the full-data refit
    <run_dir>/ensemble/              ensemble stage: report, blend, weights.json (what predict replays),
                                     test_probs.npz (the blended eval probabilities the pseudo stage reads),
                                     oof.npz (the blend's OOF probabilities the audit stage reads)
    <run_dir>/audit/                 audit stage: suspects.csv (label-fix rows), suspects.png, audit.md
    <run_dir>/gpu-locks/, tensorboard/  claims of local GPUs; TensorBoard logs when train.tensorboard is on
    <run_dir>/submission.csv
    <run_dir>/log.txt                what every command printed, timestamped, each entry led by its command line
    <run_dir>/run.json               provenance of the last train-all: times, host, device, code and library versions
    <run_dir>/tracking.json          which MLflow or W&B run (and child per pair) this run logs to (tracking.kind)
    <run_dir>/tune/                  tune stage: study.db, trial-<n>/ (each a run directory), trials.csv, best.yaml
    <run_dir>/.switch.json           only while an output set is being switched in (pipeline.switch)

The decoded-photo cache is the project's, not a run's: `cache_dir` (default runs/.cache/), shared by every run.

A pair is finished when its done.json was written under the same training settings (the config hash, which
leaves out paths and settings that do not change the weights) on the same photos, labels and folds (a digest of
folds.csv's content), with the same TTA, and its predictions are all on disk. Paths are never part of that
identity, so a run trained through Ray, moved, or reached through a link is still recognised. A backbone's refit
is finished in the same way, its identity being the pair hash plus its epoch count (the median of its folds' best
epochs), so folds retrained to other best epochs make the refit train again.
"""
from __future__ import annotations

import functools
import hashlib
import io
import statistics
from pathlib import Path

import pandas as pd

MODEL_FILES = ("best.pt", "last.pt", "metrics.csv", "oof.npz", "test.npz", "done.json")  # what one job writes
# What identifies a photo set, its labels and its folds; paths are left out (external photos' are absolute).
# soft_label exists only where pseudo-labelled photos are trained on their blended probabilities.
DIGEST_COLUMNS = ["image_id", "person_id", "gender", "age", "mask", "label", "source", "fold", "soft_label"]
REFIT = "full"  # the folder of a backbone's full-data model, beside its fold<k> folders


def _under_run(name: str):
    def path(run_dir) -> Path:
        return Path(run_dir) / name
    return path


folds_csv = _under_run("folds.csv")
config_yaml = _under_run("config.yaml")
external_dir = _under_run("external")
pseudo_dir = _under_run("pseudo")
ensemble_dir = _under_run("ensemble")
submission_csv = _under_run("submission.csv")
log_txt = _under_run("log.txt")
job_lines = _under_run(".job-lines.txt")  # parallel jobs' lines on their way to the terminal and log.txt
run_json = _under_run("run.json")
audit_dir = _under_run("audit")
tracking_json = _under_run("tracking.json")
tracking_lock = _under_run(".tracking.lock")
tune_dir = _under_run("tune")


def audit_files(run_dir) -> dict[str, Path]:
    """The audit stage's outputs: suspects (label-fix rows), their photos, the summary."""
    d = audit_dir(run_dir)
    return {"csv": d / "suspects.csv", "png": d / "suspects.png", "md": d / "audit.md"}


def tune_file(run_dir, name: str) -> Path:
    """A file of the tune stage: study.db, trials.csv, best.yaml, or a plot (history.png, importances.png)."""
    return tune_dir(run_dir) / name


def trial_dir(run_dir, number: int) -> Path:
    """A tune trial's own run directory (its models/<backbone>/fold<k>/ as train-all would write them)."""
    return tune_dir(run_dir) / f"trial-{number:03d}"


def trial_lock(run_dir, number: int) -> Path:
    """Held while a process trains the trial: free with the file still there means its process died."""
    return trial_dir(run_dir, number) / ".lock"
switch_journal = _under_run(".switch.json")  # an output set's renames while it is switched in (pipeline.switch)


def pair_dir(run_dir, backbone: str, fold: int) -> Path:
    return Path(run_dir) / "models" / backbone / f"fold{fold}"


def pair_oof_npz(run_dir, backbone: str, fold: int) -> Path:
    """A pair's out-of-fold logits (image_id, logits, labels) for its validation fold."""
    return oof_npz(pair_dir(run_dir, backbone, fold))


# The files of one job's folder (a pair's fold<k>/ or a refit's full/).

def best_pt(folder) -> Path:
    """The model: the best epoch's weights (a refit's last epoch's), with what rebuilds it (pipeline.records.BestMeta)."""
    return Path(folder) / "best.pt"


def last_pt(folder) -> Path:
    """Everything a rerun needs to continue after a kill (pipeline.records.LastMeta)."""
    return Path(folder) / "last.pt"


def metrics_csv(folder) -> Path:
    return Path(folder) / "metrics.csv"


def oof_npz(folder) -> Path:
    return Path(folder) / "oof.npz"


def test_npz(folder) -> Path:
    """The eval photos' logits, in eval/info.csv order."""
    return Path(folder) / "test.npz"


def done_json(folder) -> Path:
    """Written last: the record that makes the job finished (pipeline.records.PairDone, RefitDone)."""
    return Path(folder) / "done.json"


def attempts_jsonl(folder) -> Path:
    """Ray backend: a line per attempt at the job and one when it ends (node, process, times)."""
    return Path(folder) / "attempts.jsonl"


def model_files(folder) -> list[Path]:
    """Every file a job writes: what starting it over removes."""
    return [Path(folder) / name for name in MODEL_FILES]


def gpu_lock(run_dir, index: int) -> Path:
    return Path(run_dir) / "gpu-locks" / f"cuda{index}.lock"


def tensorboard_dir(run_dir, backbone: str, fold: int | str) -> Path:
    """fold: a fold number, or REFIT for the full-data model."""
    return Path(run_dir) / "tensorboard" / backbone / (REFIT if fold == REFIT else f"fold{fold}")


def weights_json(run_dir) -> Path:
    return ensemble_dir(run_dir) / "weights.json"


def blended_probs_npz(run_dir) -> Path:
    """The ensemble's blended eval-set probabilities (image_id, probs, pred, age_cuts): what `maskfold pseudo` reads."""
    return ensemble_dir(run_dir) / "test_probs.npz"


def blended_oof_npz(run_dir) -> Path:
    """The chosen blend's out-of-fold probabilities (image_id, probs, labels, pred): what `maskfold audit` reads."""
    return ensemble_dir(run_dir) / "oof.npz"


def refit_dir(run_dir, backbone: str) -> Path:
    return Path(run_dir) / "models" / backbone / REFIT


def refit_lock(run_dir, backbone: str) -> Path:
    return refit_dir(run_dir, backbone) / ".lock"


def pair_lock(run_dir, backbone: str, fold: int) -> Path:
    return pair_dir(run_dir, backbone, fold) / ".lock"


def external_lock(run_dir) -> Path:
    """Held while `maskfold external` writes or probes a run's outside faces: one such command per run at a time."""
    return external_dir(run_dir) / ".lock"


def folds_digest(folds: pd.DataFrame) -> str:
    """Content identity of a fold table: its photos, labels and fold assignment, whatever the paths."""
    cols = [c for c in DIGEST_COLUMNS if c in folds.columns]
    table = folds[cols].astype(str).sort_values("image_id", kind="stable")
    return hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()[:16]


def _digest_of_bytes(raw: bytes) -> str:
    return folds_digest(pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False))


def read_folds(run_dir) -> tuple[pd.DataFrame, str]:
    """folds.csv as training uses it, and its digest, both from one read (a rerun of `folds` cannot slip between)."""
    raw = folds_csv(run_dir).read_bytes()
    return read_fold_table(io.BytesIO(raw)), _digest_of_bytes(raw)


def read_fold_table(source) -> pd.DataFrame:
    """A fold table with its text as written: a person folder named NA, null or None stays that name (pandas would
    read it as missing); only an empty soft_label is missing (a hard label)."""
    return pd.read_csv(source, dtype={"person_id": str, "race": str}, keep_default_na=False,
                       na_values={"soft_label": [""]})


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, mtime_ns: int, size: int, kind: str) -> str:
    raw = Path(path).read_bytes()
    if kind == "folds":
        return _digest_of_bytes(raw)
    ids = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)["ImageID"]
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _digest(path: Path, kind: str) -> str | None:
    try:
        st = path.stat()
        return _file_digest(str(path), st.st_mtime_ns, st.st_size, kind)
    except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def run_digest(run_dir) -> str | None:
    """folds_digest of <run_dir>/folds.csv, or None when there is none."""
    return _digest(folds_csv(run_dir), "folds")


def eval_digest(data_dir) -> str | None:
    """Identity of the eval set (eval/info.csv's ImageIDs in order), or None for a train-only data set."""
    return _digest(Path(data_dir) / "eval" / "info.csv", "eval")


def read_done(run_dir, backbone: str, fold: int):
    """A pair's done record (pipeline.records.PairDone), or None when it has none or one that cannot be read."""
    from pipeline.records import PairDone, RecordError

    try:
        return PairDone.read(done_json(pair_dir(run_dir, backbone, fold)))
    except RecordError:
        return None


def read_refit_done(run_dir, backbone: str):
    """A backbone's refit's done record (pipeline.records.RefitDone), or None as read_done."""
    from pipeline.records import RecordError, RefitDone

    try:
        return RefitDone.read(done_json(refit_dir(run_dir, backbone)))
    except RecordError:
        return None


def pair_status(cfg, backbone: str, fold: int):
    """(done record, None) when the pair is finished under this config; else (done record or None, why not)."""
    done = read_done(cfg.run_dir, backbone, fold)
    return done, None if done is None else _unfinished(cfg, backbone, fold, done)


def _unfinished(cfg, backbone: str, fold: int, done) -> str | None:
    return _not_current(cfg, pair_dir(cfg.run_dir, backbone, fold), done, cfg.pair_hash(backbone), oof_npz)


def _not_current(cfg, d: Path, done, identity: str, *needed) -> str | None:
    """Why a done record does not describe a finished model under this config (None: it does)."""
    if done.hash != identity:
        return "trained under other settings"
    if done.data != run_digest(cfg.run_dir):
        return "trained on other photos, labels or folds"
    if done.tta != list(cfg.tta):
        return "predicted with another TTA"
    if done.eval != eval_digest(cfg.data_dir):
        return "test predictions are for another eval set"
    needed = [(best_pt, "weights"), *((n, "OOF predictions") for n in needed)]
    if done.test:
        needed.append((test_npz, "test predictions"))
    lost = [f"no {path(d)}: {what}" for path, what in needed if not path(d).is_file()]
    if lost:
        return "; ".join(lost)
    return None


def unfinished_reason(cfg, backbone: str, fold: int) -> str | None:
    """None when the pair is finished under this config; else why not, in a few words."""
    done, why = pair_status(cfg, backbone, fold)
    return "not trained" if done is None else why


def finished(cfg, backbone: str, fold: int):
    """The done.json of a pair finished under this config (see the module docstring), else None."""
    done, why = pair_status(cfg, backbone, fold)
    return done if done is not None and why is None else None


def refit_epochs(cfg, backbone: str) -> tuple[int | None, str | None]:
    """(epochs, None): the median of the finished folds' best epochs, rounded half up; (None, why) while a fold of
    the backbone is not finished under this config."""
    best = []
    for k in range(cfg.folds.n_splits):
        done, why = pair_status(cfg, backbone, k)
        if done is None or why is not None:
            return None, f"fold {k} is not finished ({why or 'not trained'})"
        best.append(done.best_epoch)
    return max(1, int(statistics.median(best) + 0.5)), None


def refit_identity(cfg, backbone: str, epochs: int) -> str:
    """The refit's hash: its backbone's settings and how many epochs it trains."""
    return f"{cfg.pair_hash(backbone)}-refit{epochs}"


def refit_status(cfg, backbone: str):
    """(done record, None) when the backbone's refit is finished under this config; else (done.json or None, why not)."""
    done = read_refit_done(cfg.run_dir, backbone)
    epochs, why = refit_epochs(cfg, backbone)
    if why is not None:
        return done, f"no refit yet: {why}"
    if done is None:
        return None, "not trained"
    return done, _not_current(cfg, refit_dir(cfg.run_dir, backbone), done, refit_identity(cfg, backbone, epochs))
