"""Weights & Biases: W&B has no nested runs, so the pairs and refits are runs grouped under the maskfold run's name
(job types run, pair, refit). Its own environment decides the rest: WANDB_MODE=offline writes the runs to disk for
a later `wandb sync`, WANDB_DIR (or tracking.uri) where, WANDB_ENTITY whose project.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def store_problem(folder: str | None, project: str) -> str | None:
    """Why W&B cannot log online now (no login, or its server does not answer), or None; offline or disabled W&B
    (WANDB_MODE, `wandb offline`) writes to disk and needs neither."""
    import socket
    from urllib.parse import urlparse

    from wandb.sdk import wandb_setup

    settings = wandb_setup.singleton().settings
    if settings.mode in ("offline", "dryrun", "disabled"):
        return None
    offline = "or set WANDB_MODE=offline to write the runs to disk for a later `wandb sync`"
    if not (settings.api_key or _netrc_key(settings.base_url)):
        return f"W&B has no login for {settings.base_url}: run `wandb login` (or set WANDB_API_KEY), {offline}"
    url = urlparse(settings.base_url)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=10).close()
    except OSError as e:
        return f"W&B's server {settings.base_url} does not answer ({e.strerror or e}); check the network, {offline}"
    return None


def _netrc_key(host: str) -> str | None:
    try:
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth

        return read_netrc_auth(host=host)
    except Exception:  # noqa: BLE001 - W&B's internals move; no key found is the safe answer
        return None


class WandbStore:
    def __init__(self, folder: str | None, project: str, group: str):
        self.folder, self.project, self.group, self.run = folder, project, group, None

    def start(self, run_id: str | None, name: str, job: str, params: dict, tags: dict) -> str:
        import wandb

        if self.folder:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
        # console off: W&B would otherwise take over stdout, which the run's log.txt already records
        self.run = wandb.init(project=self.project, group=self.group, job_type=job, name=name, id=run_id,
                              resume="allow" if run_id else None, config=params or None, dir=self.folder,
                              reinit="create_new", settings=wandb.Settings(console="off", silent=True))
        if tags:
            self.run.config.update({"tags": tags}, allow_val_change=True)
        if job != "run":
            self.run.define_metric("*", step_metric="epoch")  # a resumed pair's epochs keep their numbers
        return self.run.id

    def history(self, row: dict, step: int) -> None:
        self.run.log({**row, "epoch": step})

    def summary(self, figures: dict) -> None:
        self.run.summary.update(figures)

    def tag(self, tags: dict) -> None:
        self.run.config.update({"tags": tags}, allow_val_change=True)

    def upload(self, files: list[Path], folder: str) -> None:
        # copied into the run's files (uploaded with it, or by `wandb sync` when offline)
        target = Path(self.run.dir) / folder
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, target / f.name)
            self.run.save(str(target / f.name), base_path=self.run.dir, policy="now")

    def end(self) -> None:
        self.run.finish()
