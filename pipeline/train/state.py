"""Where a training job stands, decided in one place from its files: every runner, the trainer and the ensemble ask
job_state and act on its answer.

    missing    nothing of it on disk: train from the start
    stale      what is there cannot be used (other settings, photos, labels or folds; a damaged file): start over
    resumable  last.pt of this job (and, once an epoch was the best, its best.pt): continue after its last epoch
    trained    training finished under this identity and best.pt is whole, but predictions are owed (another TTA or
               eval set, a lost oof.npz or test.npz): predict again without training
    finished   done.json of this identity, data, TTA and eval set, and every file it needs: nothing to do

Identity is content, never a path: the job's hash (its training settings), the digest of folds.csv (photos, labels,
folds), the TTA and the eval set's digest; so a run moved, reached through a link or trained on Ray is still
recognised.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.io import lock_holder
from pipeline.layout import best_pt, done_json, eval_digest, job_lock, last_pt, oof_npz, refit_dir, run_digest, test_npz
from pipeline.records import BestMeta, Done, LastMeta, PairDone, RecordError, RefitDone
from pipeline.storage import Unreadable
from pipeline.train.job import Job, fold_job

MISSING, STALE, RESUMABLE, TRAINED, FINISHED = "missing", "stale", "resumable", "trained", "finished"


@dataclass(frozen=True)
class JobState:
    status: str
    reason: str | None = None  # stale: why it starts over; trained: which predictions are owed
    done: Done | None = None  # the job's done record, where it has a readable one
    last: LastMeta | None = None  # resumable or trained: where training stands (finished: not read)


def _meta(path, record):
    """A checkpoint's metadata record, read without loading its tensors (mmap); RecordError when unreadable."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise
    except (OSError, MemoryError) as e:  # the disk's or the machine's fault: no verdict on the job, its files stay
        raise Unreadable(path, getattr(e, "strerror", None) or type(e).__name__) from e
    except Exception as e:  # noqa: BLE001 - any damage to the content means the same: this file cannot be used
        raise RecordError(f"{path} cannot be read ({type(e).__name__})") from None
    return record.from_checkpoint(ckpt, path)


def _owed(cfg, job: Job, done: Done) -> str | None:
    """Which predictions a model trained under this identity still owes (None: none)."""
    if not done.tta:
        return "its predictions were being rewritten when it stopped"
    if done.tta != list(cfg.tta):
        return "predicted with another TTA"
    if done.eval != eval_digest(cfg.data_dir):
        return "test predictions are for another eval set"
    needed = [(best_pt, "weights")] + ([] if job.fold is None else [(oof_npz, "OOF predictions")])
    if done.test:
        needed.append((test_npz, "test predictions"))
    lost = [f"no {path(job.folder)}: {what}" for path, what in needed if not path(job.folder).is_file()]
    return "; ".join(lost) or None


def _best_is_whole(job: Job) -> bool:
    try:
        return best_pt(job.folder).is_file() and _meta(best_pt(job.folder), BestMeta).hash == job.identity
    except RecordError:
        return False


def _done_state(cfg, job: Job, done: Done | None) -> JobState | None:
    """finished or trained, from the done record; None when it does not describe this job's finished training."""
    if done is None or done.hash != job.identity or done.data != run_digest(cfg.run_dir):
        return None
    owed = _owed(cfg, job, done)
    if owed is None:  # the records suffice: no checkpoint is opened
        return JobState(FINISHED, done=done)
    if _best_is_whole(job):
        return JobState(TRAINED, owed, done, own_last(cfg, job))
    return None


def own_last(cfg, job: Job) -> LastMeta | None:
    """last.pt's record where it is this job's: a trainer asked to redo a trained or finished job restores where
    training stood (its history, RNG and epoch count) from it."""
    try:
        meta = _meta(last_pt(job.folder), LastMeta) if last_pt(job.folder).is_file() else None
    except RecordError:
        return None
    return meta if meta and meta.hash == job.identity and meta.data == run_digest(cfg.run_dir) else None


def _last_state(cfg, job: Job, done: Done | None, why: str | None) -> JobState:
    """resumable from last.pt, or where nothing can be used: missing or stale (with why)."""
    last = last_pt(job.folder)
    if not last.is_file():
        if why is None and not any(p.is_file() for p in (done_json(job.folder), best_pt(job.folder))):
            return JobState(MISSING, done=done)
        return JobState(STALE, why or "training did not reach its end and left no last.pt", done)
    try:
        meta = _meta(last, LastMeta)
    except RecordError as e:
        return JobState(STALE, why or str(e), done)
    if meta.hash != job.identity or meta.data != run_digest(cfg.run_dir):
        return JobState(STALE, why or f"{last} was written under other settings or data", done)
    # best.pt of last.pt's own epoch may be missing (a kill between the two writes): resuming rebuilds it
    if meta.best_epoch and meta.best_epoch != meta.epoch and not _best_is_whole(job):
        return JobState(STALE, why or f"{best_pt(job.folder)} is missing or from another run", done)
    return JobState(RESUMABLE, done=done, last=meta)


def job_state(cfg, job: Job) -> JobState:
    """Where `job` stands under `cfg` (see the module docstring)."""
    try:
        done = (RefitDone if job.fold is None else PairDone).read(done_json(job.folder))
    except RecordError as e:
        return _last_state(cfg, job, None, f"{e}; it is trained again")
    state = _done_state(cfg, job, done)
    if state is not None:
        return state
    return _last_state(cfg, job, done, None if done is None else _why_not_current(cfg, job, done))


def _why_not_current(cfg, job: Job, done: Done) -> str:
    if done.hash != job.identity:
        return "trained under other settings"
    if done.data != run_digest(cfg.run_dir):
        return "trained on other photos, labels or folds"
    # here predictions are owed and best.pt cannot give them: the weights, not the predictions, force the retrain
    return f"{best_pt(job.folder)} is missing or damaged"


# -- the questions other stages ask (the ensemble, the audit, the job runners)

def unfinished_reason(cfg, backbone: str, fold: int) -> str | None:
    """None when the pair is finished under this config; else why not, in a few words."""
    job = fold_job(cfg, backbone, fold)
    state = job_state(cfg, job)
    if state.status == FINISHED:
        return None
    if holder := lock_holder(job_lock(job.folder)):
        return f"being trained now, by {holder}"
    return state.reason or ("not trained" if state.status == MISSING else "training stopped before its end")


def refit_done(run_dir, backbone: str) -> RefitDone | None:
    """The refit's done record whatever its identity (a run has a refit at all), None without a readable one."""
    try:
        return RefitDone.read(done_json(refit_dir(run_dir, backbone)))
    except RecordError:
        return None
