"""The workflow on a real-sized 3D Variability job, per rule (issue 21's targets).

    python benchmarks/bench_real_job.py [--order 50] [--box 256] [--crop 192]
        [--components 6] [--particles 500000] [--k 4] [--cores 2] [--keep DIR]

Writes a synthetic cryoSPARC 3DVA job (``zernike3d.synthetic.write_3dva_job``: a chiral
base map of --box³ voxels, --components component maps, a ``.cs`` table of --particles
rows: the real cryoSPARC fields of ../shared/data/cryosparc_P12_J24_001_particles.cs
repeated with new uids, or synthetic ones where that file is absent), copies the
workflow and config into a fresh folder with one dataset (cropped to --crop voxels about
the centre of mass, soft spherical mask, --order, a series of 5 maps per component, --k
clusters with their cryoSPARC subsets) and runs ``python -m snakemake --cores CORES``
there, as a user would. Prints the whole run's wall time and one Markdown row per rule
job: its wall and CPU time and peak memory from Snakemake's ``benchmark:`` file
(``logs/<dataset>/<rule>.benchmark.tsv``: ``s``, ``cpu_time``, ``max_rss`` in MB), and
the exact peak that the stage's log ends with where it has one (``peak memory ... MB``). Then the two targets of issue 21: qc against reconstruct +
invariants, and the whole run against 30 s (order 50, 2 cores). Times depend on the load
of the machine: report ``uptime`` beside them.
"""

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stage_memory import particle_rows  # the same particle rows  # noqa: E402 (found through the sys.path line above)

PEAK = re.compile(r"peak memory ([0-9.]+) MB")
DATASET = "real"


def write_work(work, args):
    """The job, the workflow and its config in ``work``."""
    from zernike3d.synthetic import write_3dva_job

    for part in ("workflow", "config", "envs"):
        shutil.copytree(REPO / part, work / part, ignore=shutil.ignore_patterns("__pycache__"))
    table = work / "particles.cs"
    with open(table, "wb") as f:
        np.save(f, particle_rows(args.particles, args.box))
    write_3dva_job(work / "J1", box=args.box, n_components=args.components, particles_cs=table)
    config = {
        "datasets": {DATASET: {
            "job_dir": "J1",
            "preprocess": {"crop": args.crop, "center": "com", "mask": "sphere"},
            "order": args.order,
            "reconstruct": {"series": 5, "percentiles": [5, 95]},
            "clusters": {"k": args.k, "export_subsets": True},
        }},
        "threads": args.cores,
        "gpu": False,
        "basis_cache": "results/basis_cache",
    }
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def rule_rows(work):
    """[(rule, wall s, CPU s, benchmark max_rss MB, exact peak MB or None)] of every job,
    in the order they finished."""
    rows = []
    for tsv in sorted((work / "logs").rglob("*.benchmark.tsv"), key=lambda p: p.stat().st_mtime):
        with open(tsv, newline="") as f:
            record = next(csv.DictReader(f, delimiter="\t"))
        log = tsv.with_name(tsv.name.replace(".benchmark.tsv", ".log"))
        peaks = PEAK.findall(log.read_text(errors="replace")) if log.is_file() else []
        rule = tsv.name.replace(".benchmark.tsv", "")
        rss = float(record["max_rss"]) if record["max_rss"] not in ("", "NA", "-") else float("nan")
        rows.append((rule, float(record["s"]), float(record["cpu_time"]), rss, float(peaks[-1]) if peaks else None))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=50)
    parser.add_argument("--box", type=int, default=256)
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--components", type=int, default=6)
    parser.add_argument("--particles", type=int, default=500_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_real_job_"))
    work.mkdir(parents=True, exist_ok=True)
    write_work(work, args)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores)], cwd=work, env=env,
                         capture_output=True, text=True, check=False)
    total = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"snakemake failed in {work}:\n{(run.stdout + run.stderr)[-4000:]}")
    rows = rule_rows(work)
    load = os.getloadavg()
    print(f"{args.particles:,} particles, {args.box}³ cropped to {args.crop}, K = {args.components}, "
          f"k = {args.k}, order {args.order}, --cores {args.cores}; load average at the end "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"whole run: {total:.1f} s ({sum(r[1] for r in rows):.1f} s in the {len(rows)} jobs)")
    print("| rule | wall (s) | CPU (s) | peak, Snakemake benchmark (MB) | peak, stage's own (MB) |")
    print("|---|---|---|---|---|")
    for rule, seconds, cpu, rss, peak in rows:
        print(f"| {rule} | {seconds:.1f} | {cpu:.1f} | {rss:.0f} | {'-' if peak is None else f'{peak:.0f}'} |")
    wall = {rule: seconds for rule, seconds, _, _, _ in rows}
    if {"qc", "reconstruct", "invariants"} <= set(wall):
        budget = wall["reconstruct"] + wall["invariants"]
        print(f"qc {wall['qc']:.1f} s against reconstruct + invariants {budget:.1f} s: "
              f"{'within' if wall['qc'] <= budget else 'over'}")
    print(f"whole run {total:.1f} s against 30 s: {'within' if total <= 30 else 'over'}")
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
