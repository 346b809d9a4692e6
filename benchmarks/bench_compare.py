"""Benchmark: `zernike3d compare` of three 3D Variability jobs of 1,000,000 particles each.

Default case: K = 3 components, order 50 (676 invariants per particle, a 2.7 GB float32
store per job), box 64 at 1.5 Å. The jobs are real results folders as the workflow writes
them: the maps (a chiral phantom and three blob components) decomposed with
``Moments.from_maps``, the dataset bundle (``Dataset.save``) and the per-particle
invariants store (``write_particle_invariants``, the writer of `zernike3d invariants`).
Job ``b`` is job ``a`` turned exactly on the grid (no shift: its stored invariants are
used); job ``c`` is turned and moved by two voxels (its invariants are recomputed about the
reference's centre). Each job draws its own Gaussian latents.

The command runs in a fresh process through ``zernike3d.measured run`` (as the workflow
runs it), which prints its exact peak RSS and wall time; this script prints them with the
set-up time and the command's CPU time (user + system: on a shared machine the wall time
mostly measures the others' load). Writing the three stores (set-up, not timed) takes about a minute.

    NUMBA_NUM_THREADS=2 python benchmarks/bench_compare.py
"""

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from zernike3d.synthetic import chiral_phantom, gaussian_blobs, write_results_folder

BOX, VOXEL_SIZE = 64, 1.5


def job_maps(components, rng):
    """(1 + K, BOX, BOX, BOX) float32: the phantom and K blob differences (moved or grown)."""
    centre = (BOX // 2) * VOXEL_SIZE
    maps = [chiral_phantom(BOX, VOXEL_SIZE)]
    for k in range(components):
        at = centre + rng.uniform(-12, 12, size=3)
        moved = at + rng.normal(size=3)
        sigma = 4.0 + k
        maps.append(gaussian_blobs(BOX, VOXEL_SIZE, [moved, at], [sigma, sigma], [1.0, -1.0]))
    return np.stack(maps)


def turn(maps, shift_voxels):
    """A quarter turn about z, then about x, about voxel BOX//2 (exact on the grid), then
    a roll by ``shift_voxels`` along x."""
    quarter_z = np.roll(np.rot90(maps, 1, axes=(2, 3)), 1, axis=2)
    turned = np.roll(np.rot90(quarter_z, 1, axes=(1, 2)), 1, axis=1)
    return np.roll(turned, shift_voxels, axis=3)


def write_job(folder, maps, particles, order, rng):
    latents = rng.normal(scale=[1.0, 0.6, 0.3][: maps.shape[0] - 1], size=(particles, maps.shape[0] - 1))
    uid = rng.integers(2**63, 2**64 - 1, size=particles, dtype=np.uint64)
    write_results_folder(folder, maps, latents, uid, VOXEL_SIZE, order)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=1_000_000, help="particles per job")
    parser.add_argument("--components", type=int, default=3)
    parser.add_argument("--order", type=int, default=50)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the jobs and the output here and keep them (jobs already there are reused)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="bench_compare_"))
    try:
        t = time.perf_counter()
        maps = job_maps(args.components, rng)
        jobs = {"a": maps, "b": turn(maps, 0), "c": turn(maps, 2)}
        if all((scratch / name / "particle_invariants.zarr").is_dir() for name in jobs):
            print(f"reusing the jobs in {scratch}")
        else:
            for name, job in jobs.items():
                write_job(scratch / name, job, args.particles, args.order, rng)
            print(f"set-up: 3 jobs of {args.particles:,} particles, K = {args.components}, order {args.order}, "
                  f"box {BOX}: {time.perf_counter() - t:.1f} s")
        shutil.rmtree(scratch / "compare", ignore_errors=True)
        command = [sys.executable, "-m", "zernike3d.measured", "run", "compare",
                   *(str(scratch / name) for name in jobs), "--out-dir", str(scratch / "compare")]
        t = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        elapsed = time.perf_counter() - t
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(result.stdout + result.stderr)
        print(f"zernike3d compare: {elapsed:.1f} s wall (process start included), "
              f"{usage.ru_utime + usage.ru_stime:.1f} s CPU, exit {result.returncode}")
        with np.load(scratch / "compare" / "landscape.npz") as landscape:
            print(f"landscape: coords {landscape['coords'].shape} {landscape['coords'].dtype}, "
                  f"explained {np.round(landscape['explained'], 4).tolist()}")
        print((scratch / "compare" / "cluster_populations.csv").read_text())
        print((scratch / "compare" / "nearest_neighbours.csv").read_text())
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
