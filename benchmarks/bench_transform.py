"""Decomposition and reconstruction time and peak memory (issue 2's targets).

Each (box, order) case runs in its own Python process so that its peak RSS is its own.
Maps are random float32, the ball is the circumscribed one (every voxel counts: the
heaviest case), float64 arithmetic, all cores unless --threads. Kernels are compiled once
and cached by numba; the compilation time is measured separately, in a process with an
empty numba cache.

    python benchmarks/bench_transform.py                 # the issue's table
    python benchmarks/bench_transform.py --cases 64:50 128:50 --threads 2
    python benchmarks/bench_transform.py --cases 512:100 --max-memory 6   # large maps, as planned
    python benchmarks/bench_transform.py --cases 128:50 256:50 64:150 --compare-to 09efea0 --repeats 3
    python benchmarks/bench_transform.py --cases 128:50 --steps            # GFLOP/s of each step
    python benchmarks/bench_transform.py --cases 64:10 64:15 64:20 --legendre-table --threads 2

With --max-memory GB each case runs as a job with that memory limit would run it: the
planner (:func:`zernike3d.scheduling.planner.plan_for`, CPU placements, this machine's free RAM
capped at GB) chooses the placement and the block of m values, and decompose and
reconstruct each run once, in their own process, so that each peak RSS (``VmHWM``) is
that stage's alone; the table sets it beside the planner's prediction. The float32 map
is generated as float32 (no float64 copy of it is ever made).

With --compare-to COMMIT the zernike3d package of that commit (``git archive``, in a
temporary folder with its own numba cache) runs each case alternately with this
checkout's, --repeats times each; the best warm time of each counts (shared machines are
noisy: alternating exposes both to the same load). --steps times the steps of one
decomposition separately (same blocks of m as the transform; circumscribed ball, so the
centre is on a voxel and the xy orbits are used) and reports GFLOP/s against the float64
matrix-product rate of NumPy's BLAS on the same threads, counting the flops each step
executes: fold 3 per voxel (the orbit channels, once); ring + polar 12 per (pair, orbit
of its ring, m) for the ring sums from the channels plus 8 per (pair, l, m) for the
Legendre recurrence and the two multiply-adds of one volume; radial 4 per (shell,
coefficient, volume).

--legendre-table times decompose of one map (many in a row: the plan and its tables are
kept between calls, as for a user's loop over maps) with the polar step from the table of
Pbar_lm (what single maps up to ``TABLE_MAX_ORDER`` use) against the recurrence (the table
switched off), alternating blocks of 20 calls, best block of --repeats x 3 each, in one
process; the ball is the peer benchmark's (radius 0.464 box, about 40 % of the voxels).
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
    maps = np.random.default_rng(0).standard_normal((box, box, box), dtype=np.float32)
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


def step_rates(box, order, threads):
    """Seconds and GFLOP/s of the steps of one decomposition (this checkout's kernels, the
    transform's own blocks of m), and the BLAS peak: fold (maps to orbit channels, once),
    ring + polar (the polar step computes each pair's ring sums from the channels), radial."""
    import numba
    import numpy as np

    from zernike3d.maths.backends import NumbaBackend
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.indexing import coefficient_count
    from zernike3d.maths.transform import DEFAULT_WORKSPACE, _BlockLayout, decompose

    if threads:
        numba.set_num_threads(threads)
    geometry = BallGeometry.for_box(box, 1.0, "circumscribed")
    maps = np.random.default_rng(0).standard_normal((1, box, box, box), dtype=np.float32)
    decompose(maps, geometry, order, threads=threads)  # compiled, tables cached
    plan = _BlockLayout(geometry, order, None, 1, DEFAULT_WORKSPACE)
    engine = NumbaBackend(plan, 1, threads)
    g = plan.grid
    start = time.perf_counter()
    engine.load_maps(maps)
    seconds = {"fold": time.perf_counter() - start, "ring+polar": 0.0, "radial": 0.0}
    for m0, m1, s0, s1 in plan.iterate(False, ""):
        start = time.perf_counter()
        shells = engine.shell_sums(m0, m1, s0, s1)
        seconds["ring+polar"] += time.perf_counter() - start
        start = time.perf_counter()
        for l in range(m0, order + 1):
            _, block = plan.columns(l, m0, m1)
            engine.radial(l, s0, s1) @ shells[:, block]
        seconds["radial"] += time.perf_counter() - start
    n_lm = (order + 1) * (order + 2) // 2
    orbits_per_ring = np.bincount(g.orbit_ring, minlength=g.pair_of.shape[1])
    ring_flops = 12.0 * int(orbits_per_ring[g.pair_ring].sum()) * (order + 1)
    flops = {"fold": 3.0 * box**3, "ring+polar": ring_flops + 8.0 * g.n_pairs * n_lm,
             "radial": 4.0 * g.n_shells * coefficient_count(order)}
    a = np.random.default_rng(1).standard_normal((2048, 2048))
    a @ a
    start = time.perf_counter()
    for _ in range(3):
        a @ a
    peak = 3 * 2 * 2048**3 / (time.perf_counter() - start)
    return {"seconds": seconds, "gflops": {k: flops[k] / seconds[k] / 1e9 for k in seconds},
            "blas_gflops": peak / 1e9}


def legendre_table_rows(cases, threads, repeats):
    """Seconds per decompose call of one map, from the table of Pbar_lm and from the
    recurrence (``TABLE_MAX_ORDER`` set to -1), alternating, in this process."""
    import numpy as np

    from zernike3d.maths import transform
    from zernike3d.maths.geometry import BallGeometry

    limit = transform.TABLE_MAX_ORDER
    print(f"cores: {os.cpu_count()}, threads: {threads or 'all'}; seconds per call of one map, best block of 20 calls")
    print("| box | order | table of Pbar_lm (s) | recurrence (s) | speed-up | table MiB |")
    print("|---|---|---|---|---|---|")
    rows = []
    for case in cases:
        box, order = map(int, case.split(":"))
        geometry = BallGeometry.for_box(box, 1.0, radius=0.464 * box)
        volume = np.random.default_rng(0).standard_normal((box, box, box), dtype=np.float32)
        best = {}
        for _ in range(3 * repeats):
            for path, max_order in (("table", limit), ("recurrence", -1)):
                transform.TABLE_MAX_ORDER = max_order
                transform._cached_block_layout.cache_clear()
                transform.decompose(volume, geometry, order, threads=threads)  # plan and tables
                start = time.perf_counter()
                for _ in range(20):
                    transform.decompose(volume, geometry, order, threads=threads)
                best[path] = min(best.get(path, float("inf")), (time.perf_counter() - start) / 20)
        transform.TABLE_MAX_ORDER = limit
        size = transform.legendre_table_bytes(geometry.grid, order, 1, transform.DEFAULT_WORKSPACE)
        rows.append({"box": box, "order": order, **best, "table_bytes": size})
        note = "" if size else " (no table: above TABLE_MAX_ORDER or LEGENDRE_TABLE_MAX)"
        print(f"| {box} | {order} | {best['table']:.5f} | {best['recurrence']:.5f} | {best['recurrence'] / best['table']:.2f}x "
              f"| {size / 2**20:.1f}{note} |", flush=True)
    return rows


def run_planned(box, order, stage, threads, max_memory_gb):
    """One ``stage`` call on random data, placed by the planner within ``max_memory_gb``:
    seconds (basis preparation included), peak RSS and the planner's prediction."""
    import numpy as np

    from zernike3d.maths.basis import Basis
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.indexing import coefficient_count
    from zernike3d.maths.transform import decompose, reconstruct
    from zernike3d.scheduling.planner import plan_for

    tiny = BallGeometry.for_box(8, 1.0)
    reconstruct(decompose(np.ones((8, 8, 8), np.float32), tiny, 4), tiny, 4)  # compiled/cached kernels
    plan = plan_for(box, order, radius="circumscribed", stage=stage, device="cpu", threads=threads,
                    max_memory_bytes=int(max_memory_gb * 2**30))
    if plan.choice is None:
        return {"stage": stage, "error": plan.why_nothing_fits()}
    options = plan.choice.transform_options()
    geometry = BallGeometry.for_box(box, 1.0, "circumscribed")
    rng = np.random.default_rng(0)
    if stage == "decompose":
        data = rng.standard_normal((box, box, box), dtype=np.float32)
    else:
        data = rng.standard_normal(coefficient_count(order)) * (1 + 0j)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        if options["radial"] == "stream":
            from zernike3d.io.basis_store import load_basis

            basis = load_basis(cache, geometry, order, radial="stream")
        else:
            basis = Basis.build(geometry, order, radial_table=options["radial"] == "memory")
        transform = decompose if stage == "decompose" else reconstruct
        transform(data, geometry, order, basis=basis, threads=threads, max_workspace=options["max_workspace"])
    return {"stage": stage, "placement": plan.choice.placement, "m_block": plan.choice.m_block,
            "shell_block": plan.choice.shell_block,
            "seconds": time.perf_counter() - start, "peak_rss_bytes": peak_rss(),
            "predicted_seconds": plan.choice.seconds, "predicted_bytes": plan.choice.host_bytes}


def peak_rss():
    """This process's peak resident memory (bytes), from VmHWM."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(case, threads, env=None, extra=()):
    """Run one case in a fresh process; by default with this checkout's zernike3d first
    on the path (it need not be installed)."""
    if env is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, *extra] + (["--threads", str(threads)] if threads else []),
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_table(cases, threads, commit, repeats):
    """Old (``commit``) against new (this checkout), alternating, best warm time of each."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"cores: {os.cpu_count()}, threads: {threads or 'all'}; old = {commit}, new = this checkout; "
          f"best of {repeats} alternating runs each (warm: kernels compiled and cached)")
    print("| box | order | decompose old / new (s) | speed-up | reconstruct old / new (s) | speed-up |")
    print("|---|---|---|---|---|---|")
    results = []
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", root, "archive", commit, "zernike3d"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
        envs = {"old": {**os.environ, "PYTHONPATH": old}, "new": {**os.environ, "PYTHONPATH": root}}
        for env in envs.values():
            child("8:4", threads, env=env)  # compile each version's kernels into its cache
        for case in cases:
            box, order = map(int, case.split(":"))
            best = {}
            for _ in range(repeats):
                for version, env in envs.items():
                    t = child(case, threads, env=env)
                    for stage in ("decompose", "reconstruct"):
                        key = (version, stage)
                        best[key] = min(best.get(key, float("inf")), t[f"{stage}_warm"])
            row = {"box": box, "order": order, **{f"{v}_{s}": t for (v, s), t in best.items()}}
            results.append(row)
            print(f"| {box} | {order} | {best['old', 'decompose']:.3f} / {best['new', 'decompose']:.3f} "
                  f"| {best['old', 'decompose'] / best['new', 'decompose']:.2f}x "
                  f"| {best['old', 'reconstruct']:.3f} / {best['new', 'reconstruct']:.3f} "
                  f"| {best['old', 'reconstruct'] / best['new', 'reconstruct']:.2f}x |", flush=True)
    return results


def planned_table(cases, threads, max_memory_gb):
    print(f"cores: {os.cpu_count()}, threads: {threads or 'all'}, memory cap: {max_memory_gb:g} GiB (planner's choice)")
    print("| box | order | stage | placement (block: m x shells) | seconds (predicted) | peak RSS MiB (predicted) |")
    print("|---|---|---|---|---|---|")
    results = []
    for case in cases:
        box, order = map(int, case.split(":"))
        for stage in ("decompose", "reconstruct"):
            t = child(case, threads, extra=["--stage", stage, "--max-memory", str(max_memory_gb)])
            results.append({"box": box, "order": order, **t})
            if "error" in t:
                print(f"| {box} | {order} | {stage} | nothing fits: {t['error']} | | |", flush=True)
                continue
            print(f"| {box} | {order} | {stage} | {t['placement']} ({t['m_block']} x {t['shell_block']}) | {t['seconds']:.1f} "
                  f"({t['predicted_seconds']:.1f}) | {t['peak_rss_bytes'] / 2**20:.0f} "
                  f"({t['predicted_bytes'] / 2**20:.0f}) |", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["64:50", "128:50", "256:50", "64:150", "64:200"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-memory", type=float, default=None, metavar="GB",
                        help="run each case as planned within this many GiB (see above)")
    parser.add_argument("--compare-to", metavar="COMMIT", help="time that commit's zernike3d against this one")
    parser.add_argument("--repeats", type=int, default=3, help="with --compare-to: alternating runs of each")
    parser.add_argument("--steps", action="store_true", help="GFLOP/s of each step of decompose")
    parser.add_argument("--legendre-table", action="store_true", help="one map: the table of Pbar_lm against the recurrence")
    parser.add_argument("--out", default=None, help="also write the results as JSON (--max-memory, --compare-to, --steps, --legendre-table)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=("decompose", "reconstruct"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        box, order = map(int, args.child.split(":"))
        if args.max_memory is not None:
            print(json.dumps(run_planned(box, order, args.stage, args.threads, args.max_memory)))
        elif args.steps:
            print(json.dumps(step_rates(box, order, args.threads)))
        else:
            print(json.dumps(run_case(box, order, args.threads)))
        return
    results = None
    if args.max_memory is not None:
        results = planned_table(args.cases, args.threads, args.max_memory)
    elif args.compare_to:
        results = compare_table(args.cases, args.threads, args.compare_to, args.repeats)
    elif args.legendre_table:
        results = legendre_table_rows(args.cases, args.threads, args.repeats)
    elif args.steps:
        results = []
        print("seconds (GFLOP/s, % of the BLAS dgemm rate) of each step")
        print("| box | order | fold | ring + polar | radial | BLAS dgemm GFLOP/s |")
        print("|---|---|---|---|---|---|")
        for case in args.cases:
            box, order = map(int, case.split(":"))
            t = child(case, args.threads, extra=["--steps"])
            results.append({"box": box, "order": order, **t})
            cells = " | ".join(f"{t['seconds'][k]:.3f} ({t['gflops'][k]:.2f}, {100 * t['gflops'][k] / t['blas_gflops']:.1f}%)"
                               for k in ("fold", "ring+polar", "radial"))
            print(f"| {box} | {order} | {cells} | {t['blas_gflops']:.1f} |", flush=True)
    if results is not None:
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
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
