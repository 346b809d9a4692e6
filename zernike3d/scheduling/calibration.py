"""Measure this machine's CPU rates for the planner (``zernike3d plan --calibrate``).

Each calibration case times the real transform once in a fresh single-threaded Python
process, as a job would run it (first touches of fresh work arrays included); the
per-op costs of :class:`zernike3d.scheduling.planner.CpuRates` are then fitted by non-negative least
squares on relative error over the op counts of :class:`zernike3d.scheduling.planner.Sizes`. The
radial-table rates (recompute, read from a zarr store) are timed directly.

:func:`calibrate_gpu` measures a GPU's rates with CuPy (``benchmarks/gpu_check.sh`` runs
it): the raw rates of :class:`zernike3d.scheduling.planner.GpuRates` by micro-benchmarks, then the
efficiency of the CuPy backend's kernels fitted to real decompositions on that GPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.transform import workspace_bytes
from zernike3d.scheduling.planner import RATES_FILE, CpuRates, GpuRates, Sizes, cpu_model


#: (box, order, volumes, m_block or None for all at once): chosen so that each op count
#: dominates somewhere (ring ~ order, polar ~ order^2, radial ~ order^3; small blocks
#: for the scan and the per-step overhead); each runs in about 0.1-1 s on one thread
CALIBRATION_CASES = (
    (160, 12, 1, None), (160, 12, 6, None), (160, 12, 2, 1), (112, 40, 1, None), (112, 40, 6, None),
    (112, 40, 2, 3), (64, 110, 1, None), (64, 110, 4, None), (176, 30, 3, None), (96, 90, 2, None),
    (40, 90, 1, 1),
)


def calibrate(path: str | Path = RATES_FILE, repeats: int = 3) -> tuple[CpuRates, float]:
    """Measure this machine's single-thread rates; store them in ``path`` (read back by
    :func:`zernike3d.scheduling.planner.load_rates`) and return (rates, worst relative error of the fit).

    Each calibration case runs once in a fresh process, as a real job does: its first
    touches of freshly mapped work arrays (page faults) are part of the cost. The
    fastest of ``repeats`` runs counts. The per-op costs are fitted by non-negative least
    squares on relative error.
    """
    from scipy.optimize import nnls

    names = ("ring", "scan", "sweep", "polar", "legendre", "radial", "step")
    rows, seconds = [], []
    for case in CALIBRATION_CASES:
        box, order, volumes, m_block = case
        m_block = m_block or order + 1
        seconds.append(min(_in_fresh_process("time_case", case) for _ in range(repeats)))
        counts = Sizes.of(BallGeometry.for_box(box, 1.0), order, volumes, "decompose").op_counts(m_block)
        rows.append([counts[name] for name in names])
    design = np.array(rows, dtype=np.float64) / np.array(seconds)[:, None]
    costs, _ = nnls(design, np.ones(len(seconds)))
    error = float(np.max(np.abs(design @ costs - 1.0)))
    radial_eval, zarr_read, zarr_rate = _in_fresh_process("time_radial_tables", None)
    rates = CpuRates(**dict(zip(names, map(float, costs))), radial_eval=radial_eval,
                     zarr_read_seconds=zarr_read, zarr_bytes_per_s=zarr_rate, cpu_model=cpu_model())
    from zernike3d.io.atomic import atomic_path, json_kind

    fields = [field.name for field in dataclasses.fields(CpuRates)]
    with atomic_path(path, json_kind(fields, "a zernike3d CPU rates file")) as tmp:
        Path(tmp).write_text(json.dumps(dataclasses.asdict(rates), indent=2) + "\n")
    return rates, error


def _in_fresh_process(function, argument):
    """``function(argument)`` of this module, run in a new single-threaded Python."""
    single = {name: "1" for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS")}
    code = f"import json, sys, zernike3d.scheduling.calibration as c; print(json.dumps(c.{function}(json.loads(sys.argv[1]))))"
    child = subprocess.run([sys.executable, "-c", code, json.dumps(argument)], env={**os.environ, **single},
                           capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def time_case(case: tuple[int, int, int, int | None]) -> float:
    """Seconds of one decompose of random maps for a (box, order, volumes, m_block) case,
    after compiling the kernels on a tiny map (calibration; see :func:`calibrate`)."""
    import time

    from zernike3d.maths.basis import Basis
    from zernike3d.maths.transform import decompose

    box, order, volumes, m_block = case
    decompose(np.ones((12, 12, 12), np.float32), BallGeometry.for_box(12, 1.0), 3)
    geometry = BallGeometry.for_box(box, 1.0)
    basis = Basis.build(geometry, order, radial_table=True)
    maps = np.random.default_rng(0).standard_normal((volumes, box, box, box), dtype=np.float32)
    budget = workspace_bytes(geometry.grid, order, volumes, m_block or order + 1)
    start = time.perf_counter()
    decompose(maps, geometry, order, basis=basis, max_workspace=budget)
    return time.perf_counter() - start


def time_radial_tables(_: object = None) -> tuple[float, float, float]:
    """(seconds per R_nl value recomputed, seconds per chunk read from a store, bytes/s
    of radial slabs read from it): the latency from a store of tiny slabs, the rate from
    one of large slabs (calibration; see :func:`calibrate`)."""
    import tempfile
    import time

    from zernike3d.io.basis_store import ensure_store, open_store
    from zernike3d.maths.radial import radial_polynomials_for_l

    def best_time(function: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times)

    order = 60
    seconds = {}
    with tempfile.TemporaryDirectory() as cache:
        for box in (8, 128):
            geometry = BallGeometry.for_box(box, 1.0)
            stored = open_store(ensure_store(cache, geometry, order).path, geometry, order, "stream")
            seconds[box] = best_time(lambda: [stored.radial(l) for l in range(order + 1)])  # noqa: B023 (called at once)
    shells = geometry.grid.shell_radius
    evaluated = sum(len(range(l, order + 1, 2)) for l in range(order + 1)) * shells.size
    eval_seconds = best_time(lambda: [radial_polynomials_for_l(order, l, shells) for l in range(order + 1)])
    latency = seconds[8] / (order + 1)
    slab_bytes = (order + 1) * (order // 2 + 1) * shells.size * 8
    return eval_seconds / evaluated, latency, slab_bytes / max(seconds[128] - seconds[8], 1e-9)


#: (box, order) of the real CuPy decompositions that fit the kernel efficiency: one
#: ring-heavy, one polar-heavy; each takes well under a second on an H100-class GPU
GPU_FIT_CASES = ((128, 50), (96, 100))


def calibrate_gpu(path: str | Path | None = None, gpu_id: int | None = None) -> tuple[GpuRates, dict[str, Any]]:
    """Measure GPU ``gpu_id``'s rates with CuPy and store them in ``path`` (default
    :data:`zernike3d.scheduling.planner.GPU_RATES_FILE`) under the GPU's name, where
    :func:`zernike3d.scheduling.planner.gpu_rates` reads them; return (rates, details).

    Raw rates (best of several, timed with CUDA events, float64): device memory bandwidth
    (a 512 MiB copy, bytes read + written), FP64 vector FLOP/s (an elementwise kernel of
    dependent FMAs), FP64 matrix FLOP/s (8192² @ 8192²), pinned host-to-device bandwidth
    (256 MiB) and seconds per kernel launch from Python (a 1-element kernel, wall clock).
    Then each :data:`GPU_FIT_CASES` decomposition is run on the GPU and on the CPU (numba):
    ``kernel_efficiency`` is fitted so that the planner's model
    (:func:`zernike3d.scheduling.planner.gpu_time_parts`) reproduces the GPU times, and
    ``details["max_relative_error"]`` is the largest difference between the two backends'
    moments relative to the largest moment. Raises
    :class:`zernike3d.maths.backends.BackendUnavailable` where CuPy cannot use a GPU.
    """
    import time

    from zernike3d.maths.backends import import_cupy
    from zernike3d.maths.basis import Basis
    from zernike3d.maths.transform import DEFAULT_WORKSPACE, decompose, m_block_size
    from zernike3d.scheduling.planner import gpu_time_parts

    cupy, _ = import_cupy(gpu_id)
    device = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)

    def best_seconds(function: Callable[[], object], repeats: int = 5) -> float:
        function()  # warm-up: compilation, allocation
        times = []
        for _ in range(repeats):
            start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            function()
            stop.record()
            stop.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
        return min(times)

    source = cupy.empty(2**26, dtype=cupy.float64)  # 512 MiB
    source.fill(1.0)
    target = cupy.empty_like(source)
    memory = 2 * source.nbytes / best_seconds(lambda: cupy.copyto(target, source))  # noqa: F821 (called before the del below)
    del source, target

    fma_steps = 512
    fma = cupy.ElementwiseKernel(
        "float64 x", "float64 y",
        f"double a = x; for (int i = 0; i < {fma_steps}; ++i) a = fma(a, 0.999999, 1e-7); y = a;",
        "zernike3d_fma_rate")
    values = cupy.ones(2**24, dtype=cupy.float64)
    output = cupy.empty_like(values)
    fp64 = 2 * fma_steps * values.size / best_seconds(lambda: fma(values, output))  # noqa: F821 (called before the del below)
    del values, output

    size = 8192
    a = cupy.random.random((size, size))
    b = cupy.random.random((size, size))
    matmul = 2 * size**3 / best_seconds(lambda: a @ b, repeats=3)  # noqa: F821 (called before the del below)
    del a, b

    import cupyx

    host = cupyx.empty_pinned(2**25, dtype=np.float64)  # 256 MiB of page-locked host memory
    host.fill(1.0)
    on_device = cupy.empty(host.size, dtype=cupy.float64)
    pcie = host.nbytes / best_seconds(lambda: on_device.set(host))  # noqa: F821 (called before the del below)
    del on_device, host

    one = cupy.zeros(1)
    cupy.cuda.Device().synchronize()
    launches = 2000
    start = time.perf_counter()
    for _ in range(launches):
        one += 1.0
    cupy.cuda.Device().synchronize()
    launch = (time.perf_counter() - start) / launches
    cupy.get_default_memory_pool().free_all_blocks()

    raw = GpuRates(name, fp64, matmul, memory, pcie, launch_seconds=launch)
    cases, efficiencies, worst_error = [], [], 0.0
    for box, order in GPU_FIT_CASES:
        geometry = BallGeometry.for_box(box, 1.0)
        basis = Basis.build(geometry, order, radial_table=True)
        maps = np.random.default_rng(0).standard_normal((1, box, box, box), dtype=np.float32)
        expected = decompose(maps, geometry, order, basis=basis)
        seconds = []
        for _ in range(3):  # the first run includes CuPy's kernel compilation
            start = time.perf_counter()
            moments = decompose(maps, geometry, order, basis=basis, backend="cupy", gpu_id=gpu_id)
            seconds.append(time.perf_counter() - start)
        error = float(np.max(np.abs(moments - expected)) / np.max(np.abs(expected)))
        worst_error = max(worst_error, error)
        sizes = Sizes.of(geometry, order, 1, "decompose")
        parts = gpu_time_parts(sizes, m_block_size(geometry.grid, order, 1, DEFAULT_WORKSPACE), raw)
        rest = parts["matmul"] + parts["launches"] + parts["transfers"]
        measured = min(seconds)
        efficiency = parts["kernels"] / max(measured - rest, 1e-9)
        efficiencies.append(efficiency)
        cases.append({"box": box, "order": order, "seconds": measured, "model_parts": parts,
                      "kernel_efficiency": efficiency, "max_relative_error": error})
    # the slower of the fitted cases sets the efficiency: never an optimistic plan
    efficiency = float(min(1.0, max(1e-3, min(efficiencies))))
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    rates = dataclasses.replace(raw, kernel_efficiency=efficiency,
                                measured=f"calibrate_gpu on {stamp} (CuPy {cupy.__version__})")
    store_gpu_rates(rates, path)
    return rates, {"cases": cases, "max_relative_error": worst_error}


def store_gpu_rates(rates: GpuRates, path: str | Path | None = None) -> None:
    """Add or replace ``rates`` (a :class:`GpuRates`) under its name in the JSON file
    ``path`` (default :data:`zernike3d.scheduling.planner.GPU_RATES_FILE`; GPU name -> fields),
    keeping the other GPUs' entries."""
    from zernike3d.scheduling import planner as planning
    from zernike3d.io.atomic import atomic_path, json_kind

    path = Path(planning.GPU_RATES_FILE if path is None else path)
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    kind = json_kind(list(stored), "a zernike3d GPU rates file")  # replaces only such a file
    stored[rates.name] = dataclasses.asdict(rates)
    with atomic_path(path, kind) as tmp:
        Path(tmp).write_text(json.dumps(stored, indent=2) + "\n")
