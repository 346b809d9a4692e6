"""Decomposition and reconstruction time and peak memory (issue 2's targets).

Each (box, order) case runs in its own Python process so that its peak RSS is its own.
Maps are random float32, the ball is the circumscribed one (every voxel counts: the
heaviest case), float64 arithmetic, all cores unless --threads. Kernels are compiled once
and cached by numba; the compilation time is measured separately, in a process with an
empty numba cache.

    python benchmarks/bench_transform.py                 # the issue's table
    python benchmarks/bench_transform.py --cases 64:50 128:50 --threads 2
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

TARGETS = {(64, 50): 0.5, (128, 50): 2.0, (256, 50): 15.0, (64, 150): 3.0}


def run_case(box, order, threads):
    import numpy as np

    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.transform import decompose, reconstruct

    geometry = BallGeometry.for_box(box, 1.0, "circumscribed")
    maps = np.random.default_rng(0).standard_normal((box, box, box)).astype(np.float32)
    times = {}
    for call in ("first", "warm"):
        start = time.perf_counter()
        moments = decompose(maps, geometry, order, threads=threads)
        times[f"decompose_{call}"] = time.perf_counter() - start
        start = time.perf_counter()
        reconstruct(moments, geometry, order, threads=threads)
        times[f"reconstruct_{call}"] = time.perf_counter() - start
    times["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return times


def child(case, threads, env=None):
    out = subprocess.run(
        [sys.executable, __file__, "--child", case] + (["--threads", str(threads)] if threads else []),
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["64:50", "128:50", "256:50", "64:150", "64:200"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        box, order = map(int, args.child.split(":"))
        print(json.dumps(run_case(box, order, args.threads)))
        return

    with tempfile.TemporaryDirectory() as cache:
        cold = child("8:4", args.threads, env={**os.environ, "NUMBA_CACHE_DIR": cache})
    warm = child("8:4", args.threads)
    print(f"numba compilation (empty cache, tiny case): {cold['decompose_first'] + cold['reconstruct_first'] - warm['decompose_first'] - warm['reconstruct_first']:.1f} s")
    print(f"cores: {os.cpu_count()}, threads: {args.threads or 'all'}")
    print("| box | order | decompose first / warm (s) | reconstruct first / warm (s) | peak RSS (MB) | target (s) |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        box, order = map(int, case.split(":"))
        t = child(case, args.threads)
        target = TARGETS.get((box, order), "")
        print(
            f"| {box} | {order} | {t['decompose_first']:.2f} / {t['decompose_warm']:.2f} "
            f"| {t['reconstruct_first']:.2f} / {t['reconstruct_warm']:.2f} | {t['peak_rss_mb']:.0f} | {target} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
