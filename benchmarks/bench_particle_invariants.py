"""Benchmark: per-particle invariants of a 3DVA job streamed into a zarr store.

Default case: 1,000,000 particles, K = 3 components, order 50 (676 invariants per
particle, a 2.7 GB float32 store). The moments are random but shaped like real ones
(amplitudes falling with n, components 5% of the base), the latents Gaussian.
Prints the time of each step, the store size and the process's peak RSS, then, on a
subset, the numba kernel against two NumPy ways: the einsum of
``maths.invariants.particle_invariants`` and a BLAS product of the pairwise latent
products with the packed forms (the fastest vectorised form found).

    NUMBA_NUM_THREADS=2 python benchmarks/bench_particle_invariants.py
"""

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import psutil

from zernike3d.io.particle_invariants import (
    DEFAULT_CHUNK,
    _packed_forms,
    particle_invariants_of,
    write_particle_invariants,
)
from zernike3d.maths.indexing import coefficient_count, nl_table, nlm_table
from zernike3d.maths.invariants import particle_invariant_forms, particle_invariants


def realistic_moments(order, components, rng):
    """(1 + K, ncoef) complex128: |Omega| ~ 1/(1+n)^2, components 5% of the base."""
    n = nlm_table(order)[:, 0]
    ncoef = coefficient_count(order)
    moments = (rng.normal(size=(1 + components, ncoef)) + 1j * rng.normal(size=(1 + components, ncoef)))
    moments /= (1.0 + n) ** 2
    moments[1:] *= 0.05
    return moments


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=1_000_000)
    parser.add_argument("--components", type=int, default=3)
    parser.add_argument("--order", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=None, help="particles per chunk (default: the writer's)")
    parser.add_argument("--threads", type=int, default=2, help="numba threads")
    parser.add_argument("--compare", type=int, default=100_000, help="particles for the comparison of methods")
    parser.add_argument("--out", type=Path, default=None, help="store path (default: a temporary, removed)")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    scratch = Path(tempfile.mkdtemp(prefix="bench_pinv_"))
    out = args.out or scratch / "particles.zarr"

    moments = realistic_moments(args.order, args.components, rng)
    latents = rng.normal(scale=20.0, size=(args.particles, args.components)).astype(np.float32)
    uid = rng.integers(2**63, 2**64 - 1, size=args.particles, dtype=np.uint64)
    nl = nl_table(args.order)
    names = ["base"] + [f"component_{k}" for k in range(args.components)]
    chunk = {} if args.chunk is None else {"chunk": args.chunk}
    print(f"{args.particles:,} particles, K = {args.components}, order {args.order} "
          f"({len(nl)} invariants each), {args.threads} numba threads, {psutil.cpu_count()} CPUs")
    print(f"inputs in memory: latents {latents.nbytes / 2**20:.1f} MiB, RSS {_rss_mib():.0f} MiB")

    t = time.perf_counter()
    forms = particle_invariant_forms(moments, args.order)
    print(f"forms G (n_nl, V, V):        {time.perf_counter() - t:7.3f} s")

    particle_invariants_of(forms, latents[:10])  # compile (or load the numba cache)
    t = time.perf_counter()
    write_particle_invariants(out, forms, latents, uid, nl, order=args.order, names=names, **chunk)
    elapsed = time.perf_counter() - t
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"compute + write store:       {elapsed:7.3f} s  ({args.particles / elapsed / 1e6:.2f} M particles/s)")
    print(f"store: {size / 2**30:.2f} GiB on disk "
          f"({args.particles * len(nl) * 4 / size:.2f}x compression of float32)")
    print(f"peak RSS so far:             {_peak_rss_mib():7.0f} MiB")
    # what the workflow's invariants job of this size asks for (its maps: a 64^3 box); the
    # job's own peak, bundle loading included, is measured by bench_stage_memory.py
    from zernike3d.scheduling.inputs import BundleShape
    from zernike3d.scheduling.resources import estimate

    asked = estimate("invariants", BundleShape(64, 1 + args.components, args.particles, 1.0), args.order,
                     {"threads": args.threads})["mem_mb"]
    measured = _peak_rss_mib() * 2**20 / 1e6
    print(f"invariants job's mem_mb:     {asked:7d} MB  (predicted / measured {asked / measured:.2f})")

    subset = latents[: args.compare]
    scale = args.particles / len(subset)
    print(f"compute only, {len(subset):,} particles in chunks of {DEFAULT_CHUNK}, best of 3 (x{scale:g} for all):")
    for name, method in (("numba kernel", particle_invariants_of), ("NumPy BLAS", blas_invariants),
                         ("NumPy einsum", particle_invariants)):
        seconds = best_time(method, forms, subset)
        print(f"  {name:13s} {seconds:7.3f} s  ({seconds * scale:6.1f} s)")
    if args.out is None:
        shutil.rmtree(scratch)


def best_time(method, forms, latents, repeats=3):
    """Shortest of ``repeats`` runs of ``method(forms, chunk)`` over all chunks, seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for start in range(0, len(latents), DEFAULT_CHUNK):
            method(forms, latents[start : start + DEFAULT_CHUNK])
        times.append(time.perf_counter() - t)
    return min(times)


def blas_invariants(forms, latents):
    """The vectorised alternative: (z~_a z~_b for a <= b) @ packed forms, sqrt, float32."""
    z = np.hstack([np.ones((len(latents), 1)), latents.astype(np.float64)])
    a, b = np.triu_indices(z.shape[1])
    squared = (z[:, a] * z[:, b]) @ _packed_forms(forms)
    return np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared).astype(np.float32)


def _rss_mib():
    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


if __name__ == "__main__":
    main()
