"""Peak memory of each workflow job against the memory the workflow asks for it.

    python benchmarks/bench_stage_memory.py [--particles 1000000] [--components 3]
        [--box 64] [--order 50] [--threads 2] [--keep DIR]

Writes a synthetic cryoSPARC 3D Variability job (``zernike3d.synthetic.write_3dva_job``:
a chiral base map, K component maps, a ``.cs`` table of N particles), then runs every
stage exactly as the workflow's rules do (``python -m zernike3d.measured run STAGE ...``,
one fresh process each, whose last line is its exact peak RSS (``VmHWM``); decompose and
reconstruct told their allocation with ``--max-memory``, so that they plan for it as in a
workflow job, not for whatever memory the machine has free):
import, preprocess (soft spherical mask), basis, decompose, invariants (with the
per-particle store), reconstruct (the base map and a series of 5 maps per component), qc
with reconstruct's maps (the expansions solved from them, as the workflow runs it) and
without them (the expansions rebuilt, as where reconstruct writes no series),
cluster (k = 4 with the subsets for cryoSPARC, as the workflow's clusters section runs
it), cluster_maps (the maps at its centres, from reconstruct's maps) and paths (`zernike3d path` between two of the clusters); and, last, the Snakemake that
runs inside every SLURM job, against the memory the policy adds for it
(:data:`zernike3d.scheduling.policy.SNAKEMAKE_IN_JOB_MB`). The particles' rows are the real cryoSPARC
fields of ../shared/data/cryosparc_P12_J24_001_particles.cs repeated with new uids (246
bytes a row, as the subsets read them), or synthetic ones where that file is absent.
For each it prints the ``mem_mb`` that :func:`zernike3d.scheduling.resources.rule_resources`
asks for (what the rule declares to Snakemake and SLURM), the measured peak (MB = 10^6
bytes, as ``mem_mb``) and predicted / measured, which should lie between 1 and 1.5.
Peaks hardly depend on the load of the machine; the times shown do.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PEAK = re.compile(r"peak memory ([0-9.]+) MB")


def run_stage(argv, threads):
    """``(peak MB, seconds, output)`` of ``zernike3d <argv>`` run as the workflow runs it."""
    env_threads = {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "zernike3d.measured", "run", *map(str, argv)], check=False,
                          capture_output=True, text=True, env={**os.environ, **env_threads})
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"zernike3d {' '.join(map(str, argv))} failed:\n{output[-3000:]}")
    return float(PEAK.findall(output)[-1]), seconds, output


def snakemake_rss_mb(job, workdir):
    """Peak RSS (MB) of the workflow's Snakemake planning a run of the 3DVA job folder
    ``job`` (``snakemake -n``: it reads the config, checks it against the inputs' headers
    and builds the DAG, as the Snakemake inside a SLURM job does before it runs the job's
    rules): ``VmHWM`` at its exit (:func:`zernike3d.measured.peak_rss_mb`; ``ru_maxrss``
    from ``wait4`` would count this process's RSS, inherited at the fork)."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump({"datasets": {"bench": {"job_dir": str(job)}}}))
    snakefile = Path(__file__).resolve().parents[1] / "workflow" / "Snakefile"
    argv = ["snakemake", "-s", str(snakefile), "-d", str(workdir), "--configfile", str(config), "-n", "--quiet"]
    code = ("import atexit, sys\n"
            "from zernike3d.measured import PEAK_LINE, peak_rss_mb\n"
            "atexit.register(lambda: print('snakemake:', PEAK_LINE, f'{peak_rss_mb():.1f} MB', file=sys.stderr))\n"
            f"sys.argv = {argv!r}\n"
            "from snakemake.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    if done.returncode != 0 or not PEAK.findall(done.stderr):
        raise RuntimeError(f"{' '.join(argv)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return float(PEAK.findall(done.stderr)[-1])


REAL_CS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cryosparc_P12_J24_001_particles.cs"


def particle_rows(count, box):
    """``count`` particle rows: the real cryoSPARC fields of REAL_CS repeated with new
    uids, or synthetic ones where it is absent."""
    from zernike3d.synthetic import synthetic_particles

    if not REAL_CS.is_file():
        return synthetic_particles(count, voxel_size=2.0, box=box)
    real = np.load(REAL_CS)
    rows = real[np.resize(np.arange(len(real)), count)]
    rows["uid"] = np.random.default_rng(1).permutation(np.arange(10**12, 10**12 + count, dtype=np.uint64))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=1_000_000)
    parser.add_argument("--components", type=int, default=3)
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--order", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)

    from zernike3d.scheduling.inputs import table_row_bytes
    from zernike3d.scheduling.policy import (
        GPU_STAGES,
        SNAKEMAKE_IN_JOB_MB,
        max_memory_arg,
    )
    from zernike3d.scheduling.resources import rule_resources
    from zernike3d.synthetic import write_3dva_job

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_stage_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    table = work / "particles.cs"
    with open(table, "wb") as f:
        np.save(f, particle_rows(args.particles, args.box))
    job = work / "J1"
    write_3dva_job(job, box=args.box, n_components=args.components, particles_cs=table)
    dataset, data, basis = work / "dataset.npz", work / "preprocessed.npz", work / "basis.json"
    moments, store = work / "moments.npz", work / "particle_invariants.zarr"
    order, threads = args.order, args.threads
    settings = {"threads": threads, "radius": "inscribed", "reconstruct": {"series": 5, "percentiles": [5, 95]},
                "gpu": False, "clusters": {"k": 4, "export_subsets": True, "path_neighbours": 10}}
    jobs = [
        ("import", job, ["import", "--job-dir", job, "--out", dataset]),
        ("preprocess", dataset, ["preprocess", dataset, "--mask", "sphere", "--out", data]),
        ("basis", data, ["basis", data, "--order", order, "--cache", work / "cache", "--out", basis]),
        ("decompose", data, ["decompose", data, "--order", order, "--basis", basis, "--threads", threads,
                             "--out", moments]),
        ("invariants", data, ["invariants", moments, "--out", work / "invariants.csv", "--dataset", data,
                              "--particles-out", store]),
        ("reconstruct", data, ["reconstruct", moments, "--dataset", data, "--out-dir", work / "maps",
                               "--series", 5, "--percentiles", "5,95", "--threads", threads]),
        ("qc", data, ["qc", "--dataset", data, "--moments", moments, "--particle-invariants", store,
                      "--maps-index", work / "maps" / "index.csv", "--out-dir", work / "qc", "--threads", threads]),
        ("qc", data, ["qc", "--dataset", data, "--moments", moments, "--particle-invariants", store,
                      "--out-dir", work / "qc", "--threads", threads]),
        ("cluster", data, ["cluster", data, "--k", 4, "--subsets", "--index", work / "maps" / "index.csv",
                           "--threads", threads, "--out-dir", work / "clusters"]),
        ("cluster_maps", data, ["reconstruct", moments, "--dataset", data, "--points", work / "clusters" / "centres.csv",
                                "--maps-index", work / "maps" / "index.csv", "--out-dir", work / "cluster_maps",
                                "--threads", threads]),
        ("paths", data, ["path", data, "--between", "cluster_00", "cluster_01", "--clusters",
                        work / "clusters" / "centres.csv", "--index", work / "maps" / "index.csv",
                        "--out", work / "paths.csv", "--plot", work / "paths.png"]),
    ]
    print(f"{args.particles:,} particles, K = {args.components}, box {args.box}, order {order}, "
          f"{threads} threads; peak RSS of each job (MB = 10^6 bytes) against its mem_mb")
    print("| stage | mem_mb asked | peak measured (MB) | predicted / measured | time (s) |")
    print("|---|---|---|---|---|")
    worst = []
    for stage, source, command in jobs:
        if stage == "cluster":  # the workflow passes the bytes of the table the subsets read
            settings["table_row_bytes"] = table_row_bytes(data)
        label, asked_for = stage, settings
        if stage == "qc":  # with the maps of reconstruct's series (reused), then without them (rebuilt)
            reused = "--maps-index" in command
            label = f"qc ({'expansions from the maps' if reused else 'expansions rebuilt'})"
            asked_for = settings if reused else dict(settings, reconstruct={})
        asked = rule_resources(stage, source, order, asked_for)["mem_mb"]
        if stage in (*GPU_STAGES, "cluster_maps"):  # told their allocation, as the workflow's rules tell them
            command += max_memory_arg(asked).split()
        peak, seconds, _ = run_stage(command, threads)
        worst.append(asked / peak)
        print(f"| {label} | {asked} | {peak:.0f} | {asked / peak:.2f} | {seconds:.1f} |", flush=True)
    snakemake_peak = snakemake_rss_mb(job, work / "workflow")
    worst.append(SNAKEMAKE_IN_JOB_MB / snakemake_peak)
    print(f"| Snakemake inside each SLURM job (added on SLURM) | {SNAKEMAKE_IN_JOB_MB} | {snakemake_peak:.0f} | "
          f"{SNAKEMAKE_IN_JOB_MB / snakemake_peak:.2f} | - |")
    print(f"predicted / measured: {min(worst):.2f} to {max(worst):.2f}")
    if args.keep is None:
        import shutil

        shutil.rmtree(work)


if __name__ == "__main__":
    main()
