"""Time and peak memory of each placement, measured against the planner's predictions.

    python benchmarks/bench_placements.py [--threads 1] [--volumes 1] [--max-seconds 300]
        [--cases 128x50,256x50,64x150,128x100] [--stage decompose] [--out results.json]
        [--placements gpu-resident,cpu-ram]

Every (case, placement) runs in a fresh Python process, so that its peak resident memory
(``VmHWM``, which unlike ``ru_maxrss`` does not inherit the parent's) is its own: the process imports zernike3d, compiles the kernels on a tiny
map, builds the basis the placement uses (cpu-zarr: from a store built beforehand, not
timed), then runs the transform on random float32 maps with the block size the planner
chose (after one unmeasured run that fills numba's cache). "seconds" covers preparing
the basis (computing or checking the radial table)
and the transform; "MiB" is the whole process's peak RSS (the planner's figure includes
its fixed allowance for the interpreter and libraries). Cases the planner predicts to
take longer than --max-seconds are skipped and listed. Each placement runs --repeats
times (shared machines are noisy); the fastest run is reported. GPU placements run only where
CuPy can use a GPU (gpu-resident; gpu-streamed is not selectable through decompose()).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import numpy as np
def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
from zernike3d.io.basis_store import ensure_store, open_store
from zernike3d.maths.basis import Basis
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.indexing import coefficient_count
from zernike3d.maths.transform import decompose, reconstruct

box, order, volumes, placement, stage, max_workspace, cache = json.loads(sys.argv[1])
tiny = BallGeometry.for_box(12, 1.0)
decompose(np.ones((12, 12, 12), np.float32), tiny, 3)
reconstruct(np.ones((1, coefficient_count(3))), tiny, 3)
geometry = BallGeometry.for_box(box, 1.0)
grid = geometry.grid
rng = np.random.default_rng(0)
if stage == "decompose":
    data = rng.standard_normal((volumes, box, box, box), dtype=np.float32)
else:
    data = rng.standard_normal((volumes, coefficient_count(order))) * (1 + 0j)
backend = "cupy" if placement.startswith("gpu") else "numba"
if placement == "cpu-zarr":
    path = ensure_store(cache, geometry, order).path
start = time.perf_counter()
if placement == "cpu-zarr":
    basis = open_store(path, geometry, order, "stream")
elif placement == "cpu-onthefly":
    basis = Basis.build(geometry, order, radial_table=False)
else:
    basis = Basis.build(geometry, order, radial_table=True)
transform = decompose if stage == "decompose" else reconstruct
result = transform(data, geometry, order, basis=basis, backend=backend, max_workspace=max_workspace)
seconds = time.perf_counter() - start
gpu_bytes = 0
if backend == "cupy":
    import cupy
    gpu_bytes = cupy.get_default_memory_pool().total_bytes()
peak = peak_rss()
print(json.dumps({"seconds": seconds, "host_bytes": peak, "gpu_bytes": gpu_bytes}))
"""

CASES = "128x50,256x50,64x150,128x100"


def measure(case, placement, stage, volumes, threads, max_workspace, cache):
    """Run one placement in a fresh process; its measured seconds and peak bytes."""
    box, order = case
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    argument = json.dumps([box, order, volumes, placement, stage, max_workspace, cache])
    child = subprocess.run([sys.executable, "-c", CHILD, argument], env=env, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"{case} {placement} failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=CASES, help="comma-separated BOXxORDER")
    parser.add_argument("--volumes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stage", choices=("decompose", "reconstruct"), default="decompose")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="skip cases predicted to take longer")
    parser.add_argument("--repeats", type=int, default=2, help="fresh runs per placement; the fastest counts")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    parser.add_argument("--placements", default=None,
                        help="comma-separated placements to run (default: all); the others are skipped")
    args = parser.parse_args(argv)
    chosen = None if args.placements is None else set(args.placements.split(","))

    from zernike3d.scheduling.hardware import probe
    from zernike3d.scheduling.planner import plan_for

    machine = probe()
    gpu_ready = machine.cupy_usable
    if not gpu_ready:
        print("no GPU: GPU placements are predicted only (" + "; ".join(machine.notes) + ")")
    header = (f"{'case':<10}{'placement':<14}{'m-block':>8}{'pred MiB':>9}{'meas MiB':>9}{'pred/meas':>10}"
              f"{'pred s':>9}{'meas s':>9}{'pred/meas':>10}")
    print(header)
    results = []
    with tempfile.TemporaryDirectory() as cache:
        # fill numba's cache first (not measured): compiling adds ~70 MB to a peak, which
        # the workflow allows for separately (zernike3d.scheduling.resources.NUMBA_COMPILE_MB)
        measure((16, 4), "cpu-ram", args.stage, args.volumes, args.threads, 2**20, cache)
        for text in args.cases.split(","):
            case = tuple(int(v) for v in text.split("x"))
            plan = plan_for(*case, n_volumes=args.volumes, stage=args.stage, machine=machine,
                            threads=args.threads)
            for estimate in plan.estimates:
                row = {"case": text, "placement": estimate.placement, "m_block": estimate.m_block,
                       "predicted_bytes": estimate.host_bytes, "predicted_gpu_bytes": estimate.gpu_bytes,
                       "predicted_seconds": estimate.seconds}
                runnable = estimate.fits and (gpu_ready or not estimate.placement.startswith("gpu"))
                if estimate.placement == "gpu-streamed":
                    runnable = False
                if chosen is not None and estimate.placement not in chosen:
                    row["skipped"] = "not in --placements"
                elif runnable and estimate.seconds > args.max_seconds:
                    row["skipped"] = f"predicted {estimate.seconds:.0f} s > --max-seconds"
                elif runnable:
                    runs = [measure(case, estimate.placement, args.stage, args.volumes, args.threads,
                                    estimate.max_workspace, cache) for _ in range(args.repeats)]
                    row.update(min(runs, key=lambda run: run["seconds"]))
                else:
                    row["skipped"] = estimate.why_not or "not selectable through decompose()"
                results.append(row)
                print(_line(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


def _line(row):
    head = f"{row['case']:<10}{row['placement']:<14}{row['m_block']:>8}{row['predicted_bytes'] / 2**20:>9.0f}"
    if "skipped" in row:
        return f"{head}{'':>9}{'':>10}{row['predicted_seconds']:>9.3g}   skipped: {row['skipped']}"
    memory_ratio = row["predicted_bytes"] / row["host_bytes"]
    time_ratio = row["predicted_seconds"] / row["seconds"]
    return (f"{head}{row['host_bytes'] / 2**20:>9.0f}{memory_ratio:>10.2f}"
            f"{row['predicted_seconds']:>9.3g}{row['seconds']:>9.3g}{time_ratio:>10.2f}")


if __name__ == "__main__":
    main()
