"""Commands that use no stage: the demo data set, the benchmarks and the photo cache."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.commands.options import config_options


@click.command("demo-data")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write (competition layout).")
@click.option("--persons", default=240, show_default=True, help="Training persons (7 photos each).")
@click.option("--eval-images", default=420, show_default=True, help="Unlabelled eval photos.")
@click.option("--elder-pool", default=40, show_default=True, help="Unmasked 60+ outside faces for `external`.")
@click.option("--seed", default=0, show_default=True)
@click.option("--jobs", default=2, show_default=True, help="Processes drawing the photos.")
@click.option("--label-noise", default=0, show_default=True, type=click.IntRange(min=0),
              help="Known label errors of each kind (gender flips, incorrect/normal swaps, ages across a cut), "
                   "listed in train/injected_errors.csv, which the pipeline never reads.")
@click.option("--faces", type=click.Path(file_okay=False, exists=True), default=None,
              help="Instead: real faces from this UTKFace folder, masked by the external stage's machinery and split "
                   "by person into train/ and eval/ (with eval/labels.csv); --persons counts all of them.")
@click.option("--templates", type=click.Path(file_okay=False, exists=True), default=None,
              help="--faces: a MaskTheFace folder (holding masks/masks.cfg) for real mask templates.")
@click.option("--eval-share", default=0.3, show_default=True, help="--faces: the share of persons in eval/.")
def demo_data(out, persons, eval_images, elder_pool, seed, jobs, label_noise, faces, templates, eval_share):
    """Generate a demo data set in the competition layout (with eval/labels.csv truth)."""
    from pipeline.tools.demo_data import make_demo_data

    if faces:
        from external_data.face_set import make_face_data

        make_face_data(out, faces, templates, persons=persons, eval_share=eval_share, seed=seed, n_jobs=jobs,
                       log=click.echo)
        return
    from pipeline.tools.label_noise import INJECTED_ERRORS

    path = make_demo_data(out, persons=persons, eval_images=eval_images, seed=seed, elder_pool=elder_pool,
                          n_jobs=jobs, label_noise=label_noise)
    click.echo(f"wrote {persons} persons ({persons * 7} photos), {eval_images} eval photos and "
               f"{elder_pool} outside 60+ faces to {path}")
    if label_noise:
        click.echo(f"{label_noise} label errors of each kind injected, listed in {path / 'train' / INJECTED_ERRORS} "
                   f"(the pipeline never reads it)")


@click.command("bench")
@config_options
@click.option("--backbone", "backbones", multiple=True, help="timm model(s) to time (default: the config's).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True)
@click.option("--rounds", default=3, show_default=True, help="Timed rounds per figure (the median is shown).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the figures as JSON.")
@click.option("--stages", is_flag=True, help="Instead: time every stage that grows with the data (wall seconds, "
                                              "peak memory) on a generated workload built once under --workload.")
@click.option("--workload", default="runs/bench-workload", show_default=True, type=click.Path(file_okay=False),
              help="--stages: the folder of the workload (photos, member predictions), reused when it is whole.")
@click.option("--persons", default=2700, show_default=True, help="--stages: training persons (7 photos each).")
@click.option("--eval-images", default=12600, show_default=True, help="--stages: eval photos.")
@click.option("--members", default=6, show_default=True, help="--stages: ensemble members (backbones x runs).")
@click.option("--backbones-per-run", default=2, show_default=True, help="--stages: members per run.")
@click.option("--fraction", "fractions", multiple=True, type=float,
              help="--stages: also at this fraction of the persons and eval photos (repeatable; default 1).")
@click.option("--stage", "only", multiple=True, help="--stages: time only this stage (repeatable; default all).")
@click.option("--stage-timeout", default=None, type=float, help="--stages: stop a stage after this many seconds.")
def bench_cmd(cfg, backbones, device, rounds, out, stages, **opts):
    """Time the loader (JPEG vs cache), the train step (naive vs tuned), inference and the whole loop; or, with
    --stages, each stage that grows with the data."""
    import json

    from pipeline.io import output_file

    if stages:
        from pipeline.tools.stage_bench import STAGES, run_stage_bench, stage_table

        sizes = {k: opts[k] for k in ("persons", "eval_images", "members", "backbones_per_run")}
        result = run_stage_bench(cfg, opts["workload"], sizes, opts["fractions"] or (1.0,), opts["only"] or STAGES,
                                 opts["stage_timeout"], log=click.echo)
        result["table"] = stage_table(result)
        click.echo(result["table"])
    else:
        from pipeline.preflight import require_device
        from pipeline.tools.bench import run_bench

        require_device(device, f"--device {device}")
        networks = [b.name for b in cfg.networks()]  # a face member trains no network
        result = run_bench(cfg, list(backbones) or networks, device, rounds, log=click.echo)
    if out:
        with output_file(out) as where:  # a file replaced atomically; /dev/stdout or a pipe written through
            Path(where).write_text(json.dumps(result, indent=1) + "\n")
        click.echo(f"wrote {out}", err=True)


@click.command("cache")
@click.option("--dir", "cache_dir", default="runs/.cache", show_default=True, type=click.Path(file_okay=False),
              help="The project's photo cache (the configs' cache_dir).")
@click.option("--prune", is_flag=True, help="Remove caches (all, or those unused for --older-than days).")
@click.option("--older-than", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="With --prune: days since a cache was last used.")
def cache_cmd(cache_dir, prune, older_than):
    """List the decoded-photo caches shared by every run, or free their space with --prune."""
    from datetime import datetime

    from pipeline.data.cache import list_caches, prune_caches

    rows = prune_caches(cache_dir, older_than, log=click.echo) if prune else list_caches(cache_dir)
    for r in rows:
        when = datetime.fromtimestamp(r["last_used"]).strftime("%Y-%m-%d %H:%M")
        what = (f"broken ({r['broken']}), {r['bytes'] / 2**20:.1f} MiB{'' if prune else '; --prune removes it'}"
                if r["broken"] else f"{r['photos']} photos at {r['size']}, crop {r['crop']}, {r['bytes'] / 2**20:.1f} "
                f"MiB, last used {when}")
        click.echo(f"{'removed ' if prune else ''}{r['cache']}  {what}")
    total = sum(r["bytes"] for r in rows) / 2**20
    click.echo(f"{len(rows)} cache(s), {total:.1f} MiB {'freed' if prune else 'in ' + cache_dir}")
