"""TensorBoard logs of a job's epochs (train.tensorboard), an optional extra."""
from __future__ import annotations

from pipeline.config import Config, ConfigError
from pipeline.layout import tensorboard_dir


def require_tensorboard(cfg: Config) -> None:
    """With train.tensorboard on, fail before any epoch (not after the first) when its extra is missing."""
    if not cfg.train.tensorboard:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("train.tensorboard is on but tensorboard is not installed: "
                          "pip install 'maskfold[tensorboard]', or set train.tensorboard: false") from None


def write_epoch(cfg: Config, job, row: dict) -> None:
    """One metrics.csv row as scalars at its epoch, under the job's own folder (fold<k> or the refit's)."""
    if not cfg.train.tensorboard:
        return
    from torch.utils.tensorboard import SummaryWriter

    where = tensorboard_dir(cfg.run_dir, job.backbone, job.fold)
    with SummaryWriter(str(where)) as w:
        for k, v in row.items():
            if k != "epoch":
                w.add_scalar(k, v, row["epoch"])
