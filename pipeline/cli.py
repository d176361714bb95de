"""The `maskfold` command: one sub-command per stage.

This is the only module of pipeline/ that imports a stage (folds, external_data, pseudo_labels, ensemble, audit,
tune); each command imports its stage lazily, so `maskfold --help` stays fast and the rest of the core never depends
on a stage. The commands that use no stage, how a command reads its config and how it reports a failure are in
pipeline/commands/.
"""
from __future__ import annotations

import sys
import time

import click

from pipeline.commands import tools
from pipeline.commands.failures import Commands
from pipeline.commands.options import config_options
from pipeline.config import save_config
from pipeline.errors import JobsFailed, Occupied
from pipeline.layout import config_yaml
from pipeline.outcome import Terminated
from pipeline.train.provenance import version


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), "--version", prog_name="maskfold", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show the traceback of an error that is not the user's to fix (also "
                                            "MASKFOLD_DEBUG=1).")
def main(debug):
    """maskfold: k-fold ensemble pipeline for the face-mask competition.

    Typical run: check-data -> folds -> [external] -> train-all -> ensemble.
    Pseudo labels: a second run whose pseudo.from_run names the first: pseudo -> folds -> train-all -> ensemble.
    """


def _external_choices(cfg):
    from external_data.run import config_choices

    return config_choices(cfg)


@main.command("check-data")
@config_options(stage_choices=_external_choices, tracked=True, needs_model=False)
def check_data(cfg):
    """Scan the whole data set; print a summary and every problem. Exit 1 on problems."""
    from pipeline.checks import load_data, scan_data, summary
    from pipeline.errors import DataError
    from pipeline.model.weights import weights_report
    from pipeline.preflight import require_config_device
    from pipeline.storage import require_folder

    require_config_device(cfg)  # the machine too: a run should not fail on its device after the data
    require_folder(cfg.cache_dir, "cache_dir")  # refused here as training would refuse it
    try:
        train, evals, report = load_data(cfg)
        scan_data(cfg.data_dir, cfg.data.cache_size, train, evals, report)
    except DataError as e:  # a file that stops the scan (the label fixes): its problems are the whole report
        raise DataError(e.problems, hint=None) from None
    found, missing = weights_report(cfg.networks())  # weights too, before the data
    report.notes += found
    for who, why in missing:
        report.problem(who, why)
    click.echo(summary(train, evals, report))
    if not report.problems:  # persons listed twice under two ids (folds.same_face; needs the `faces` extra)
        from pipeline.faces.identity import same_face_check

        same_face_check(cfg, train, evals, log=click.echo)
    if report.problems:
        sys.exit(1)


def _stage_outputs_current(cfg) -> None:
    """A stage alone knows whether its output is current for the config; the commands that read it ask first."""
    from pseudo_labels.current import require_current

    require_current(cfg)


@main.command("folds")
@config_options(needs_model=False)
def folds_cmd(cfg):
    """Assign persons to folds; write <run_dir>/folds.csv."""
    from folds.make import write_folds

    _stage_outputs_current(cfg)
    write_folds(cfg, log=click.echo)
    save_config(cfg, config_yaml(cfg.run_dir))


@main.command("external")
@config_options(stage_choices=_external_choices)
@click.option("--jobs", default=2, show_default=True, help="Processes for landmarks and overlays.")
@click.option("--sheet", "sheet_persons", default=12, show_default=True, help="Persons on the contact sheet.")
@click.option("--probe", "probe_only", is_flag=True,
              help="Only measure how easily the written external photos are told from competition photos.")
def external_cmd(cfg, jobs, sheet_persons, probe_only):
    """Import older faces, put masks on them, write train-only pseudo-persons to <run_dir>/external/.

    Ends with the domain probe's figure (also alone with --probe), written to <run_dir>/external/probe.json."""
    from external_data.run import probe_external, run_external
    from pipeline.io import Busy, file_lock
    from pipeline.layout import external_lock

    try:
        with file_lock(external_lock(cfg.run_dir)):  # two at once would delete each other's photos
            if not probe_only:
                run_external(cfg, n_jobs=jobs, log=click.echo, sheet_persons=sheet_persons)
            probe_external(cfg, n_jobs=jobs, log=click.echo)
            save_config(cfg, config_yaml(cfg.run_dir))  # the run's record, once the stage's work is done
    except Busy as e:
        raise Occupied(f"another `maskfold external` is running on this run directory ({e.owner}); wait for it to "
                       f"finish, or stop it first") from None


@main.command("pseudo")
@config_options
def pseudo_cmd(cfg):
    """Label the eval photos with pseudo.from_run's ensemble; write train-only photos to <run_dir>/pseudo/."""
    from pseudo_labels.run import run_pseudo

    run_pseudo(cfg, log=click.echo)
    save_config(cfg, config_yaml(cfg.run_dir))


@main.command("train")
@config_options(tracked=True)
@click.option("--backbone", required=True, help="A backbone name from the config.")
@click.option("--fold", required=True, type=int, help="Validation fold (0-based).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: train.device).")
@click.option("--force", is_flag=True, help="Retrain even if this pair finished under the same config.")
def train_cmd(cfg, backbone, fold, device, force):
    """Train one (backbone, fold) pair; a rerun resumes from last.pt."""
    from pipeline.preflight import require_config_device, require_device, require_training_ready
    from pipeline.train.pair import train_pair

    if device:
        require_device(device, f"--device {device}")
    else:
        require_config_device(cfg)
    require_training_ready(cfg, [cfg.backbone(backbone)], click.echo)
    _stage_outputs_current(cfg)
    info = train_pair(cfg, backbone, fold, device=device, force=force)
    if info.status == "busy":
        raise Occupied(f"{backbone} fold {fold} is being trained by another process ({info.error}); wait for it, or "
                       f"stop it first")
    save_config(cfg, config_yaml(cfg.run_dir))
    click.echo(f"{backbone} fold {fold}: best val F1 {info.done.val_f1:.4f} (epoch {info.done.best_epoch}), "
               f"OOF with TTA {info.done.oof_f1_tta:.4f}")


@main.command("train-all")
@config_options(tracked=True)
@click.option("--jobs", default=1, show_default=True, help="Pairs trained at once (local backend).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", default=None, help="Ray cluster address (HOST:PORT or auto); none starts a local Ray.")
@click.option("--gpus-per-job", default=None, type=float, help="Ray: GPUs per job (default 1 where GPUs exist).")
@click.option("--cpus-per-job", default=1, show_default=True, type=float, help="Ray: CPUs per job.")
@click.option("--retries", default=2, show_default=True, help="Ray: retries of a job whose worker died.")
@click.option("--refit", is_flag=True, help="Then train each backbone on every person for the median of its folds' "
                                           "best epochs (sets train.refit).")
def train_all_cmd(cfg, jobs, backend, address, gpus_per_job, cpus_per_job, retries, refit):
    """Train every (backbone, fold) pair; finished pairs are skipped, failures reported at the end."""
    from pipeline.preflight import require_config_device, require_training_ready
    from pipeline.tracking import track_run
    from pipeline.train.face_job import without_unavailable
    from pipeline.train.jobs import oof_scores, row_name, train_all
    from pipeline.train.provenance import write_run_json
    from pipeline.train.ray_jobs import RayOptions

    if backend == "local":  # a Ray cluster's devices are its nodes', not this machine's
        require_config_device(cfg)
    _stage_outputs_current(cfg)
    if refit:
        cfg.train.refit = True
    cfg = without_unavailable(cfg, click.echo)  # a face member without the `faces` extra: skipped, here and in run.json
    require_training_ready(cfg, cfg.backbones, click.echo)
    start = time.time()
    ray = RayOptions(address, gpus_per_job, cpus_per_job, retries) if backend == "ray" else None
    warned = set()  # warnings given: a tracking store that goes down is told once by the command, workers' too
    table = train_all(cfg, jobs=jobs, ray=ray, warned=warned)
    shown = table.rename(columns={"val_f1": "val F1 (best epoch, no TTA)"}).astype({"fold": object}).fillna(
        {"fold": "refit"})
    click.echo("\nsummary:\n" + shown.to_string(index=False))
    oof = oof_scores(cfg)
    for b, s in oof.items():
        click.echo(f"OOF macro F1 {b}: {s['f1']:.4f} (accuracy {s['acc']:.4f}, {s['folds']} folds, with TTA "
                   f"{'+'.join(cfg.tta)})")
    track_run(cfg, {f"oof_{k}/{b}": s[k] for b, s in oof.items() for k in ("f1", "acc")}, log=click.echo,
              warned=warned)
    click.echo(f"train-all wall time: {time.time() - start:.1f}s")
    write_run_json(cfg, start, table)
    busy = table[table["status"] == "busy"]
    if len(busy):
        click.echo(f"{len(busy)} pair(s) were left to another process training them (" + ", ".join(
            row_name(r) for r in busy.itertuples()) + "); rerun train-all when it ends")
    waiting = table[table["status"] == "waiting"]
    if len(waiting):
        click.echo(f"{len(waiting)} refit(s) wait for their folds (" + ", ".join(waiting["backbone"]) + "); rerun "
                   "train-all once every fold is finished")
    failed = table[table["status"] == "failed"]
    if len(failed):
        raise JobsFailed(f"{len(failed)} pair(s) failed: " + ", ".join(
            f"{row_name(r)} ({r.error})" for r in failed.itertuples()))


@main.command("ensemble")
@config_options(tracked=True)
@click.option("--run", "runs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A finished run whose backbones join the blend (repeatable; default: this config's own run).")
def ensemble_cmd(cfg, runs):
    """Blend OOF/test predictions; write submission.csv and ensemble/report.md."""
    from ensemble.outputs import ensemble_outputs
    from ensemble.run import run_ensemble, track_ensemble

    if runs:
        cfg.ensemble.runs = list(runs)
    switch = None
    try:
        with ensemble_outputs(cfg.run_dir) as switch:  # the submission, ensemble/ and config.yaml land together
            result = run_ensemble(cfg, log=click.echo, held=switch.held)
            save_config(cfg, config_yaml(cfg.run_dir), switch.held)  # predict and compare read a blend run's config
        if not switch.interrupted:
            track_ensemble(cfg, result, log=click.echo)  # the files it logs are in place only now
    except (KeyboardInterrupt, Terminated) as e:
        if switch is None or not switch.done:
            raise  # the previous outputs stay in place
        switch.interrupted = "SIGINT" if isinstance(e, KeyboardInterrupt) else "SIGTERM"
    if switch.interrupted:  # once the new outputs are in place the command has done its work
        skipped = "" if cfg.tracking.kind == "none" else "; its tracking was skipped"
        click.echo(f"interrupted ({switch.interrupted}) after the new outputs were in place: this ensemble's "
                   f"submission and report are written{skipped}")


@main.command("audit")
@config_options(needs_model=False)
@click.option("--member", default=None, help="Audit with one backbone's OOF predictions (default: the chosen blend's).")
@click.option("--top", default=24, show_default=True, type=click.IntRange(min=1),
              help="Suspects shown in suspects.png and audit.md.")
def audit_cmd(cfg, member, top):
    """Rank the training labels the run's OOF predictions find probably wrong; write <run_dir>/audit/."""
    from audit.run import run_audit

    run_audit(cfg, member=member, top=top, log=click.echo)


@main.command("tune")
@config_options(tracked=True)
def tune_cmd(cfg):
    """Search the keys tune.params names with Optuna: trials under <run_dir>/tune/, then best.yaml and trials.csv.

    Needs folds.csv (and external/ when data.use_external is on) in the run directory, as train-all does. A killed
    tune resumes; several tune processes on one study share its trials."""
    from tune.run import run_tune

    _stage_outputs_current(cfg)
    given = click.get_current_context().params  # best.yaml extends the file and repeats the --sets
    run_tune(cfg, given["config_path"], given["overrides"], log=click.echo)
    save_config(cfg, config_yaml(cfg.run_dir))  # the run's record, once the study's work is done


@main.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", default="runs/compare", show_default=True, type=click.Path(file_okay=False),
              help="Folder for compare.csv, compare.md and compare.png.")
def compare_cmd(run_dirs, out):
    """Finished runs side by side: OOF and honest ensemble F1, eval F1, time, and the keys they differ in."""
    from ensemble.compare import compare_runs

    compare_runs(list(run_dirs), out, log=click.echo)


@main.command("predict")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="A finished run directory (after `maskfold ensemble`).")
@click.option("--images", required=True, type=click.Path(file_okay=False, exists=True),
              help="Folder of photos (searched recursively for jpg/jpeg/png).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="CSV to write.")
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available).")
def predict_cmd(run_dir, images, out, device):
    """Predict any folder of photos with a run's ensemble (same TTA, weights and offsets)."""
    from pipeline.preflight import require_device

    if device:
        require_device(device, f"--device {device}")
    from ensemble.predict import predict_folder

    predict_folder(run_dir, images, out, device=device, log=click.echo)


for _command in (tools.demo_data, tools.bench_cmd, tools.cache_cmd):
    main.add_command(_command)


def entry():
    """The console script. On Linux it restarts itself once with the allocator setting (GLIBC_TUNABLES), which
    glibc reads only at process start: without it, freeing and re-mapping the same large buffers every step makes
    CPU training about 1.9x slower. An existing GLIBC_TUNABLES, or MASKFOLD_NO_TUNE=1, is left alone."""
    import os

    if sys.platform.startswith("linux") and "GLIBC_TUNABLES" not in os.environ and not os.environ.get("MASKFOLD_NO_TUNE"):
        from pipeline.tools.env import ALLOCATOR

        os.environ["GLIBC_TUNABLES"] = ALLOCATOR
        os.execv(sys.executable, [sys.executable, "-m", "pipeline.cli", *sys.argv[1:]])
    main(prog_name="maskfold")


if __name__ == "__main__":
    main(prog_name="maskfold")
