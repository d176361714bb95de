"""A backbone's full-data refit (train.refit): after cross-validation, one more model trained on every person, plus
the external and pseudo-labelled photos when they are on, for the median of its folds' best epochs.

There is no validation set, so no epoch can be chosen: the last epoch's weights are the model. Its learning-rate
schedule spans exactly those epochs, so training ends at the schedule's low rate instead of wherever a fold's best
epoch happened to fall. Layout: <run_dir>/models/<backbone>/full/{best.pt, last.pt, metrics.csv, test.npz,
done.json}; like a fold pair it is held by a lock, resumed from last.pt and skipped when finished
(pipeline.train.pair.train_refit). The ensemble uses its test.npz where ensemble.test_from asks for it.
"""
from __future__ import annotations

import time

import numpy as np

from pipeline.config import Config
from pipeline.data.targets import training_rows
from pipeline.io import remove_stale_temporaries
from pipeline.layout import REFIT, read_refit_done, refit_dir, refit_identity
from pipeline.train.rundata import RunData
from pipeline.train.trainer import Trainer


class RefitTrainer(Trainer):
    def __init__(self, cfg: Config, backbone: str, epochs: int, data: RunData, device=None, progress=True,
                 log=print):
        self.epochs = epochs
        # Numbered as one fold more than there are: its seeds are its own, never a fold's.
        super().__init__(cfg, backbone, cfg.folds.n_splits, data, device=device, progress=progress, log=log)
        self.name, self.tag, self.board = f"{backbone} refit", REFIT, REFIT

    def planned_epochs(self) -> int:
        return self.epochs

    def identity(self) -> str:
        return refit_identity(self.cfg, self.bb.name, self.epochs)

    def output_dir(self):
        return refit_dir(self.cfg.run_dir, self.bb.name)

    def read_done(self) -> dict | None:
        return read_refit_done(self.cfg.run_dir, self.bb.name)

    def split(self, folds):
        """Every photo that a training fold may use (data.drop_near_cut still applies); nothing is validated."""
        return np.flatnonzero(training_rows(folds, self.cfg.data)), np.array([], dtype=np.int64)

    def _best_state(self) -> dict:
        return {**super()._best_state(), "fold": REFIT}

    def fit(self) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.dir)
        if not (self.dir / "last.pt").is_file() and self.trained_before():
            self.log(f"{self.bb.name} refit: trained before; predicting again from best.pt")
            return self.finish()
        self.try_resume()
        t = self.cfg.train
        while self.epoch < self.epochs:
            start = time.time()
            row = {"epoch": self.epoch + 1, **self.train_epoch()}
            row["seconds"] = round(time.time() - start, 2)
            if t.scheduler == "plateau":
                self.sched.step(self.epoch + 1, row["train_f1"])  # no validation F1: the training F1 is the only one
            self.epoch += 1
            last = self.epoch == self.epochs
            if last:
                self.best_epoch = self.epoch - 1
            self._save_epoch(row, improved=last)
            self.log(f"{self.bb.name} refit epoch {row['epoch']}/{self.epochs}: train loss {row['train_loss']:.4f} "
                     f"train F1 {row['train_f1']:.4f} lr {row['lr']:.2e} ({row['seconds']}s)"
                     f"{' * last epoch, saved as the model' if last else ''}")
        return self.finish()

    def finish(self) -> dict:
        """The model predicts the eval photos (test.npz) with the config's TTA; there are no OOF photos."""
        _, model = self._best_model()
        self._write_test(model)
        self.log(f"{self.bb.name} refit: {self.epochs} epochs on {len(self.train_rows)} photos; test predictions "
                 f"{'written' if self.data.eval_cache is not None else 'not needed (no eval set)'}")
        return self._write_done(fold=REFIT, epochs=self.epochs, best_epoch=self.epochs, epochs_run=self.epoch,
                                photos=int(len(self.train_rows)))
