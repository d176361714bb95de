"""`maskfold bench --stages`: the wall time and peak memory of every stage that grows with the data, at one or
more sizes of a workload built once (pipeline.tools.workload).

Each stage runs as its own `maskfold` child process, as a user runs it; its peak memory is the child's maximum
resident set size from wait4. Its output goes to <workload>/logs/<stage>.log, and the lines that carry a Python
warning are counted, so a warning flood shows in the table.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import BadInput
from pipeline.layout import blended_probs_npz
from pipeline.tools.env import ALLOCATOR
from pipeline.tools.workload import build_workload, member_runs

# ensemble variants: every blend on (the config's own settings), and each fitted blend alone
BLEND_FLAGS = {"weights": "ensemble.search_weights", "selection": "ensemble.selection", "stacking": "ensemble.stacking",
               "tasks": "ensemble.task_weights"}
ENSEMBLES = {"ensemble (every blend)": None, "ensemble (equal weights only)": "equal",
             **{f"ensemble ({k} only)": k for k in BLEND_FLAGS}}
STAGES = ("check-data", "folds", "cache", *ENSEMBLES, "predict", "compare", "pseudo")
WARNING = re.compile(r"\b\w*Warning\b:")


def _ensemble_args(root: Path, name: str, only: str | None) -> list[str]:
    args = ["ensemble", "--config", str(root / "config.yaml"), "--set", f"run_dir={root / 'runs' / _slug(name)}"]
    if only is not None:
        args += [w for k, key in BLEND_FLAGS.items() for w in ("--set", f"{key}={'true' if k == only else 'false'}")]
    return args + [w for r in member_runs(root) for w in ("--run", str(r))]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def stage_command(stage: str, root: Path) -> list[str]:
    """The child's arguments after `python`: the stage as a user runs it on the workload under `root`."""
    config = ["--config", str(root / "config.yaml")]
    runs = root / "runs"
    if stage in ENSEMBLES:
        return ["-m", "pipeline.cli", *_ensemble_args(root, stage, ENSEMBLES[stage])]
    if stage == "cache":  # what train-all does first: folds.csv checked, both photo caches built
        code = ("import sys; from pipeline.config import load_config; from pipeline.train.rundata import "
                "load_run_data; load_run_data(load_config(sys.argv[1], sys.argv[2:]), log=print)")
        return ["-c", code, str(root / "config.yaml"), f"cache_dir={root / 'bench-cache'}"]
    blended = runs / _slug("ensemble (every blend)")
    source = blended if blended_probs_npz(blended).is_file() else root / "predict-run"
    args = {
        "check-data": ["check-data", *config],
        "folds": ["folds", *config, "--set", f"run_dir={runs / 'folds'}"],
        "predict": ["predict", "--run", str(root / "predict-run"), "--images", str(root / "data" / "eval" / "images"),
                    "--out", str(runs / "predict.csv"), "--device", "cpu"],
        "compare": ["compare", *map(str, member_runs(root)), str(source), "--out", str(runs / "compare")],
        "pseudo": ["pseudo", *config, "--set", f"run_dir={runs / 'pseudo'}", "--set", f"pseudo.from_run={source}"],
    }[stage]
    return ["-m", "pipeline.cli", *args]


def run_child(argv: list[str], log_file: Path, timeout: float | None) -> dict:
    """Wall seconds, peak resident memory (MiB), exit status and warning lines of one child process, measured by
    pipeline.tools.timed_child (why a process of its own: see there)."""
    env = dict(os.environ)
    env.setdefault("GLIBC_TUNABLES", ALLOCATOR)  # as the `maskfold` command sets it for itself
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-m", "pipeline.tools.timed_child", str(timeout or 0), str(log_file),
                          sys.executable, *argv], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"timing {argv} failed: {out.stderr[-2000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    text = log_file.read_text(errors="replace")
    return {**row, "warnings": sum(bool(WARNING.search(line)) for line in text.splitlines())}


def bench_size(cfg: Config, root: Path, sizes: dict, stages, timeout: float | None, log=print) -> dict:
    """Every chosen stage, in order, on the workload of `sizes` under `root` (built first unless it is there)."""
    build_workload(cfg, root, log=log, **sizes)
    shutil.rmtree(root / "runs", ignore_errors=True)
    shutil.rmtree(root / "bench-cache", ignore_errors=True)
    result = {**sizes, "train_photos": sizes["persons"] * 7, "stages": {}}
    for stage in (s for s in STAGES if s in stages):
        row = run_child(stage_command(stage, root), root / "logs" / f"{_slug(stage)}.log", timeout)
        result["stages"][stage] = row
        log(f"{sizes['persons'] * 7} training photos, {stage}: {row['seconds']:.1f} s, {row['peak_mib']:.0f} MiB"
            + (f", exit {row['exit']}" if row["exit"] else "") + (", timed out" if row["timed_out"] else "")
            + (f", {row['warnings']} warning lines" if row["warnings"] else "") + f" ({root / 'logs'})")
    shutil.rmtree(root / "bench-cache", ignore_errors=True)  # photos decoded at the config's size: often gigabytes
    return result


def run_stage_bench(cfg: Config, workload: str | Path, sizes: dict, fractions=(1.0,), stages=STAGES,
                    timeout: float | None = None, log=print) -> dict:
    """The stages at each fraction of `sizes` (persons, eval_images; members and backbones_per_run stay)."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise BadInput(f"--stage: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    cfg = dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, runs=[]))
    out = {"machine": f"{os.cpu_count()} cores", "load_at_start": [round(v, 2) for v in os.getloadavg()],
           "n_splits": cfg.folds.n_splits, "test_from": cfg.ensemble.test_from, "sizes": []}
    for f in sorted(fractions, reverse=True):
        scaled = {**sizes, "persons": max(12, round(sizes["persons"] * f)),
                  "eval_images": max(1, round(sizes["eval_images"] * f))}
        root = Path(workload) / f"{scaled['persons']}p-{scaled['eval_images']}e-{scaled['members']}m"
        out["sizes"].append({"fraction": f, **bench_size(cfg, root, scaled, stages, timeout, log)})
    out["load_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return out


def stage_table(result: dict) -> str:
    """The markdown table for BENCHMARKS.md: a row per stage, a column per size (seconds, peak MiB)."""
    sizes = result["sizes"]
    head = "| stage | " + " | ".join(f"{s['train_photos']:,} train / {s['eval_images']:,} eval photos, "
                                      f"{s['members']} members" for s in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for stage in STAGES:
        cells = []
        for s in sizes:
            row = s["stages"].get(stage)
            cells.append("" if row is None else (f"> {row['seconds']:.0f} s (stopped)" if row["timed_out"] else
                                                 f"{row['seconds']:.1f} s, {row['peak_mib']:,.0f} MiB")
                         + ("" if row is None or not row["exit"] or row["timed_out"] else f" (exit {row['exit']})")
                         + ("" if row is None or not row["warnings"] else f", {row['warnings']} warning lines"))
        if any(cells):
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
