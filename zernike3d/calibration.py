"""Measure this machine's CPU rates for the planner (``zernike3d plan --calibrate``).

Each calibration case times the real transform once in a fresh single-threaded Python
process, as a job would run it (first touches of fresh work arrays included); the
per-op costs of :class:`zernike3d.planning.CpuRates` are then fitted by non-negative least
squares on relative error over the op counts of :class:`zernike3d.planning.Sizes`. The
radial-table rates (recompute, read from a zarr store) are timed directly.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.transform import workspace_bytes
from zernike3d.planning import RATES_FILE, CpuRates, Sizes, cpu_model


#: (box, order, volumes, m_block or None for all at once): chosen so that each op count
#: dominates somewhere (ring ~ order, polar ~ order^2, radial ~ order^3; small blocks
#: for the scan and the per-step overhead); each runs in about 0.1-1 s on one thread
CALIBRATION_CASES = (
    (96, 12, 1, None), (96, 12, 6, None), (96, 12, 2, 1), (64, 40, 1, None), (64, 40, 6, None),
    (64, 40, 2, 3), (40, 110, 1, None), (40, 110, 4, None), (112, 30, 3, None), (56, 90, 2, None),
    (24, 90, 1, 1),
)


def calibrate(path=RATES_FILE, repeats=3):
    """Measure this machine's single-thread rates; store them in ``path`` (read back by
    :func:`zernike3d.planning.load_rates`) and return (rates, worst relative error of the fit).

    Each calibration case runs once in a fresh process, as a real job does: its first
    touches of freshly mapped work arrays (page faults) are part of the cost. The
    fastest of ``repeats`` runs counts. The per-op costs are fitted by non-negative least
    squares on relative error.
    """
    from scipy.optimize import nnls

    names = ("ring", "scan", "polar", "legendre", "radial", "step")
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
    code = f"import json, sys, zernike3d.calibration as c; print(json.dumps(c.{function}(json.loads(sys.argv[1]))))"
    child = subprocess.run([sys.executable, "-c", code, json.dumps(argument)], env={**os.environ, **single},
                           capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def time_case(case):
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


def time_radial_tables(_=None):
    """(seconds per R_nl value recomputed, seconds per chunk read from a store, bytes/s
    of radial slabs read from it): the latency from a store of tiny slabs, the rate from
    one of large slabs (calibration; see :func:`calibrate`)."""
    import tempfile
    import time

    from zernike3d.io.basis_store import ensure_store, open_store
    from zernike3d.maths.radial import radial_polynomials_for_l

    def best_time(function):
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
            seconds[box] = best_time(lambda: [stored.radial(l) for l in range(order + 1)])
    shells = geometry.grid.shell_radius
    evaluated = sum(len(range(l, order + 1, 2)) for l in range(order + 1)) * shells.size
    eval_seconds = best_time(lambda: [radial_polynomials_for_l(order, l, shells) for l in range(order + 1)])
    latency = seconds[8] / (order + 1)
    slab_bytes = (order + 1) * (order // 2 + 1) * shells.size * 8
    return eval_seconds / evaluated, latency, slab_bytes / max(seconds[128] - seconds[8], 1e-9)
