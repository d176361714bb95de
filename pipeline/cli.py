"""The `maskfold` command: one sub-command per stage.

This is the one module that sees every stage; each command imports its stage lazily so `maskfold --help`
stays fast and the core never depends on a stage.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from pipeline.config import ConfigError, load_config, save_config


def _config_options(f):
    @click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                  help="YAML config, e.g. configs/demo.yaml.")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override a config key, e.g. --set train.epochs=3 (repeatable).")
    @functools.wraps(f)
    def wrapper(config_path, overrides, **kw):
        try:
            cfg = load_config(config_path, overrides)
        except ConfigError as e:
            raise click.ClickException(str(e)) from None
        return f(cfg, **kw)

    return wrapper


def _friendly(f):
    """Known failure kinds become a one-paragraph message and exit 1 instead of a traceback."""

    @functools.wraps(f)
    def wrapper(*a, **kw):
        from pipeline.contract import DataError

        try:
            return f(*a, **kw)
        except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
            raise click.ClickException(str(e)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """maskfold: k-fold ensemble pipeline for the face-mask competition.

    Typical run: check-data -> folds -> [external] -> train-all -> ensemble.
    """


@main.command("demo-data")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write (competition layout).")
@click.option("--persons", default=240, show_default=True, help="Training persons (7 photos each).")
@click.option("--eval-images", default=420, show_default=True, help="Unlabelled eval photos.")
@click.option("--seed", default=0, show_default=True)
def demo_data(out, persons, eval_images, seed):
    """Generate a demo data set in the competition layout (with eval/labels.csv truth)."""
    from pipeline.demo_data import make_demo_data

    path = make_demo_data(out, persons=persons, eval_images=eval_images, seed=seed)
    click.echo(f"wrote {persons} persons ({persons * 7} photos) and {eval_images} eval photos to {path}")


@main.command("check-data")
@_config_options
@_friendly
def check_data(cfg):
    """Scan the whole data set; print a summary and every problem. Exit 1 on problems."""
    from pipeline.checks import load_data, summary

    train, evals, report = load_data(cfg, scan=True)
    click.echo(summary(train, evals, report))
    if report.problems:
        sys.exit(1)


@main.command("folds")
@_config_options
@_friendly
def folds_cmd(cfg):
    """Assign persons to folds; write <run_dir>/folds.csv."""
    from folds.make import assign_folds, fold_table
    from pipeline.checks import require_clean
    from pipeline.external import read_external
    from pipeline.io import atomic_write_csv

    import pandas as pd

    train, _, report = require_clean(cfg)
    if cfg.data.use_external:
        ext = read_external(cfg.run_dir, cfg.data)
        click.echo(f"external persons added to every training fold: {ext['person_id'].nunique()}")
        train = pd.concat([train, ext], ignore_index=True)
    df = assign_folds(train, cfg.folds.n_splits, cfg.seed)
    out = Path(cfg.run_dir) / "folds.csv"
    atomic_write_csv(df, out)
    save_config(cfg, Path(cfg.run_dir) / "config.yaml")
    click.echo(f"photos per class in each fold (fold -1: external, train only):\n{fold_table(df).to_string()}")
    click.echo(f"wrote {out}: {df['person_id'].nunique()} persons, {len(df)} photos, {cfg.folds.n_splits} folds")


if __name__ == "__main__":
    main()
