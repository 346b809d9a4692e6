"""Reading a basis from the zarr cache against rebuilding it (issue 9: the cache must pay).

For each (box, order), in fresh Python processes (so that no grid table is cached in
memory; the store's files are in the page cache, as for the jobs that follow a `basis`
job on one node):

* rebuild: ``Basis.build(geometry, order, radial_table=True)``: grid tables and radial
  table, as `decompose` builds them without ``--basis``;
* read: ``load_basis(store)``: the key, the attribute checks and every table read from
  the store, each chunk checked against its CRC32C;
* radial rebuild / radial read: the same with the grid tables already in memory, as in
  `decompose`, whose planner builds them to size the plan: the radial table computed, or
  read with ``load_basis(store, grid=geometry.grid)``, which is what `decompose --basis`
  does;
* verify: ``ensure_store`` finding the store complete (everything read and checked): what
  a `basis` job pays to reuse a store.

The ball is the inscribed one at 1 Å voxels. Each figure is the median of --repeats runs.
On a shared, loaded machine the figures vary 2-4x from run to run: compare columns of
one run, not runs.

    python benchmarks/bench_basis_cache.py                       # (128, 50), (256, 50), (256, 150)
    python benchmarks/bench_basis_cache.py --cases 64:30 --repeats 3
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CASES = ((128, 50), (256, 50), (256, 150))

CHILD = r"""
import json, sys, time
box, order, cache, what = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
from zernike3d.io.basis_store import ensure_store, load_basis, store_path, basis_key
from zernike3d.maths.basis import Basis
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.radial import radial_polynomials
geometry = BallGeometry.for_box(box, 1.0)
path = store_path(cache, basis_key(geometry, order))
if what.startswith("radial"):
    grid = geometry.grid
start = time.perf_counter()
if what == "rebuild":
    Basis.build(geometry, order, radial_table=True)
elif what == "read":
    load_basis(path, geometry, order, radial="memory")
elif what == "radial rebuild":
    radial_polynomials(order, grid.shell_radius)
elif what == "radial read":
    load_basis(path, geometry, order, radial="memory", grid=grid)
elif what == "verify":
    assert not ensure_store(cache, geometry, order).built
elif what == "write":
    ensure_store(cache, geometry, order)
print(json.dumps(time.perf_counter() - start))
"""

WHAT = ("rebuild", "read", "radial rebuild", "radial read", "verify")


def timed(box, order, cache, what):
    out = subprocess.run([sys.executable, "-c", CHILD, str(box), str(order), cache, what],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=[f"{b}:{o}" for b, o in CASES], help="box:order pairs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'box':>5s} {'order':>5s} {'write':>6s} " + " ".join(f"{w:>14s}" for w in WHAT) + f" {'store (MB)':>10s}")
    for case in args.cases:
        box, order = (int(v) for v in case.split(":"))
        with tempfile.TemporaryDirectory() as cache:
            write = timed(box, order, cache, "write")
            times = [statistics.median(timed(box, order, cache, what) for _ in range(args.repeats)) for what in WHAT]
            size = subprocess.run(["du", "-sm", cache], capture_output=True, text=True).stdout.split()[0]
        print(f"{box:5d} {order:5d} {write:6.2f} " + " ".join(f"{t:14.3f}" for t in times) + f" {size:>10s}")
    print("seconds; read and radial read include every CRC32C check")


if __name__ == "__main__":
    main()
