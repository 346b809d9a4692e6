"""What a stage costs to start, against its work (issue 21's start-up target).

`zernike3d decompose` of one random 64^3 map (1 Å voxels) at order 20, one thread, with a
warm numba cache, timed four ways (best of --repeats interleaved runs each, wall clock, and
CPU time for the two whole processes):

  * whole process: ``zernike3d decompose MAP --order 20 --out M.npz`` as a job runs it
    (the CPU backend ``auto`` runs this size on NumPy: no numba import, no cache load);
  * ``python -c "import numpy, numba"``: the floor of any numba stage;
  * numba's cache load: the first call, in a fresh process, of a kernel already in the
    cache (numba then builds its CPU target, which imports its NumPy, linalg and random
    registries and SciPy's BLAS), less the same call once loaded;
  * the in-process transform: the whole stage (read, plan, transform, write) called again
    in a process that has already run it once (no imports, no cache load).

Target: whole process <= 2 x (in-process transform + import numpy, numba). Also the
imports of the stage (``python -X importtime``) above --top-ms, largest first.

``--threshold`` measures instead where the ``auto`` backend should switch from NumPy to
numba (``zernike3d.maths.backends.AUTO_NUMPY_WORK``): numba's start-up in a fresh process
(``import numpy, numba`` less ``import numpy``, plus the cache load) against the numpy
backend's extra seconds per unit of work (``transform_work``) over numba's, decompose of
one map at a few boxes and orders in one process, one thread; the break-even work is
their ratio (the largest extra per unit of work is used, so the threshold errs towards
numba).

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --repeats 7 --top-ms 20
    python benchmarks/bench_startup.py --threshold
    python benchmarks/bench_startup.py --figure

``--figure`` times a stage's other fixed cost that issue 21 names: the latent-space figure
of `zernike3d cluster` and `zernike3d path` (``plot_latent_pairs``: 15 panels for 6
components, 3 clusters) for 1,000 and 500,000 random particles, best of --repeats in one
process, after matplotlib's import (timed in a fresh process).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORDER = 20
BOX = 64

#: a fresh process timing the first and a second call of a cached numba kernel
NUMBA_LOAD = """
import time, numpy as np
from zernike3d.maths._kernels import legendre_table
from zernike3d.maths.legendre import recurrence_coefficients
ct = np.linspace(-1, 1, 16); st = np.sqrt(1 - ct * ct); out = np.empty((16, 231))
coeffs = recurrence_coefficients(20)
t0 = time.perf_counter(); legendre_table(ct, st, 20, *coeffs, out)
t1 = time.perf_counter(); legendre_table(ct, st, 20, *coeffs, out)
t2 = time.perf_counter(); print(t1 - t0 - (t2 - t1))
"""

#: a process running the stage twice; prints the second run's seconds
IN_PROCESS = """
import contextlib, io, sys, time
from zernike3d.cli import main
argv = sys.argv[1:]
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    main(argv)
    t0 = time.perf_counter(); main(argv); t1 = time.perf_counter()
print(t1 - t0)
"""


#: a process timing decompose of one map on both CPU backends (best of 3 after a warm-up)
#: at each (box, order) of argv; prints "box order work numba_s numpy_s" lines
BACKEND_SECONDS = """
import sys, time, numpy as np
from zernike3d.maths.backends import transform_work
from zernike3d.maths.basis import Basis
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.transform import decompose
for box, order in zip(*[iter(map(int, sys.argv[1:]))] * 2):
    geometry = BallGeometry.for_box(box, 1.0)
    maps = np.random.default_rng(0).standard_normal((box,) * 3).astype(np.float32)
    basis = Basis.build(geometry, order, radial_table=True)
    best = {}
    for backend in ("numba", "numpy"):
        decompose(maps, geometry, order, basis=basis, backend=backend, threads=1)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter(); decompose(maps, geometry, order, basis=basis, backend=backend, threads=1)
            runs.append(time.perf_counter() - t0)
        best[backend] = min(runs)
    print(box, order, transform_work(geometry.grid.n_pairs, order, 1), best["numba"], best["numpy"])
"""

#: a process timing plot_latent_pairs (argv: particles, components, repeats); prints seconds
FIGURE = """
import sys, tempfile, time, numpy as np
from zernike3d.analysis.latent_plots import plot_latent_pairs
particles, components, repeats = map(int, sys.argv[1:])
rng = np.random.default_rng(0)
latents = rng.standard_normal((particles, components))
labels = rng.integers(0, 3, particles)
centres = {f"cluster_{c:02d}": latents[c] for c in range(3)}
runs = []
with tempfile.TemporaryDirectory() as tmp:
    for r in range(repeats + 1):  # the first draws also load the fonts
        t0 = time.perf_counter()
        plot_latent_pairs(f"{tmp}/latents.png", latents, f"{particles} particles\\n3 k-means clusters", labels=labels,
                          centres=centres)
        runs.append(time.perf_counter() - t0)
print(runs[0], min(runs[1:]))
"""


def figure(env: dict[str, str], repeats: int) -> None:
    """Print the latent-space figure's seconds (see the module docstring)."""
    imports = min(wall([sys.executable, "-c", "import matplotlib.figure, matplotlib.backends.backend_agg"], env)[0]
                  - wall([sys.executable, "-c", "import numpy"], env)[0] for _ in range(repeats))
    print(f"latent-space figure (plot_latent_pairs), 6 components: 15 panels "
          f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print(f"import matplotlib's Figure and Agg canvas (beyond numpy): {imports:.2f} s")
    for particles in (1_000, 500_000):
        out = subprocess.run([sys.executable, "-c", FIGURE, str(particles), "6", str(repeats)], check=True, env=env,
                             capture_output=True, text=True).stdout.split()
        print(f"{particles:>9,} particles: first figure {float(out[0]):.2f} s, then {float(out[1]):.2f} s "
              f"(best of {repeats})")


#: (box, order) of the --threshold measurement
THRESHOLD_SIZES = ((48, 20), (64, 20), (64, 30), (96, 20), (96, 30))


def threshold(env: dict[str, str], repeats: int) -> None:
    """Print numba's start-up, the numpy backend's extra cost per unit of work, and the
    break-even work (see the module docstring)."""
    starts = []
    for _ in range(repeats):
        numba_import = wall([sys.executable, "-c", "import numpy, numba"], env)[0]
        numpy_import = wall([sys.executable, "-c", "import numpy"], env)[0]
        starts.append(numba_import - numpy_import + printed([sys.executable, "-c", NUMBA_LOAD], env))
    start = min(starts)
    sizes = [str(n) for size in THRESHOLD_SIZES for n in size]
    out = subprocess.run([sys.executable, "-c", BACKEND_SECONDS, *sizes], check=True, env=env, capture_output=True,
                         text=True).stdout
    print(f"auto backend threshold, 1 thread ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print(f"numba's start-up (import beyond numpy + cache load, best of {repeats}): {start:.2f} s")
    print(f"| {'box':>4} | {'order':>5} | {'work':>9} | {'numba s':>7} | {'numpy s':>7} | {'extra ns/work':>13} |")
    print(f"|{'-' * 6}|{'-' * 7}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 15}|")
    extras = []
    for line in out.split("\n"):
        if not line.strip():
            continue
        box, order, work, numba_s, numpy_s = line.split()
        extra = (float(numpy_s) - float(numba_s)) / int(work)
        extras.append(extra)
        print(f"| {box:>4} | {order:>5} | {int(work):9.3g} | {float(numba_s):7.3f} | {float(numpy_s):7.3f} | "
              f"{extra * 1e9:13.1f} |")
    print(f"break-even work = start-up / largest extra per work = {start / max(extras):.3g} "
          "(AUTO_NUMPY_WORK in zernike3d/maths/backends.py)")


def wall(command, env):
    """(wall seconds, CPU seconds: user + system of the process and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def printed(command, env):
    return float(subprocess.run(command, check=True, env=env, capture_output=True, text=True).stdout.split()[-1])


def write_map(path):
    import mrcfile
    import numpy as np

    data = np.random.default_rng(0).standard_normal((BOX, BOX, BOX)).astype(np.float32)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 1.0


def imports(stage, env, top_ms):
    """[(ms, module)] of the stage's top-level imports (-X importtime, cumulative) above top_ms."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-m", "zernike3d", *stage], env=env,
                         capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit() and len(name) - len(name.lstrip()) <= 1:
            rows.append((int(cumulative) / 1000, name.strip()))
    return sorted((r for r in rows if r[0] >= top_ms), reverse=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top-ms", type=float, default=30.0, help="list the imports above this (ms)")
    parser.add_argument("--threshold", action="store_true", help="measure the auto backend's NumPy/numba threshold")
    parser.add_argument("--figure", action="store_true", help="time the latent-space figure of cluster and path")
    args = parser.parse_args()
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if args.threshold:
        threshold(env, args.repeats)
        return
    if args.figure:
        figure(env, args.repeats)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_map(tmp / "map.mrc")
        stage = ["decompose", str(tmp / "map.mrc"), "--order", str(ORDER), "--out", str(tmp / "m.npz"),
                 "--threads", "1"]
        whole_cmd = [sys.executable, "-m", "zernike3d", *stage]
        subprocess.run(whole_cmd, check=True, env=env, capture_output=True)  # fills the numba cache
        runs = {"whole": [], "whole_cpu": [], "import": [], "import_cpu": [], "numba": [], "work": []}
        for _ in range(args.repeats):  # interleaved: a shared machine's load hits all alike
            for key, command in (("whole", whole_cmd), ("import", [sys.executable, "-c", "import numpy, numba"])):
                seconds, cpu = wall(command, env)
                runs[key].append(seconds)
                runs[key + "_cpu"].append(cpu)
            runs["numba"].append(printed([sys.executable, "-c", NUMBA_LOAD], env))
            runs["work"].append(printed([sys.executable, "-c", IN_PROCESS, *stage], env))
        best = {key: min(values) for key, values in runs.items()}
        top = imports(stage, env, args.top_ms)
    print(f"zernike3d decompose, {BOX}^3 map, order {ORDER}, 1 thread, warm numba cache "
          f"(best of {args.repeats}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print(f"| {'step':<54} | {'wall s':>6} | {'CPU s':>6} |")
    print(f"|{'-' * 56}|{'-' * 8}|{'-' * 8}|")
    for label, value, cpu in (("whole process", best["whole"], best["whole_cpu"]),
                              ('python -c "import numpy, numba"', best["import"], best["import_cpu"]),
                              ("numba's cache load (first cached call, less a second)", best["numba"], None),
                              ("in-process transform (the stage run again)", best["work"], None)):
        print(f"| {label:<54} | {value:6.2f} | {'' if cpu is None else f'{cpu:6.2f}':>6} |")
    for what, whole, floor in (("wall", best["whole"], best["work"] + best["import"]),
                               ("CPU", best["whole_cpu"], best["work"] + best["import_cpu"])):
        print(f"{what}: whole / (in-process transform + import numpy, numba) = {whole / floor:.2f} (target <= 2)")
    print("imports of the stage (cumulative ms, top level):")
    for ms, name in top:
        print(f"  {ms:7.0f}  {name}")


if __name__ == "__main__":
    main()
