"""Peak memory of building a box's grid tables against the lower bound the stages check.

    python benchmarks/bench_grid_memory.py [--boxes 200 400 800 1200]

For each box (default centre, inscribed and circumscribed ball, 1 Å voxels), a fresh
process builds :class:`zernike3d.maths.geometry.GridTables` and reports the growth of its
peak RSS (``ru_maxrss``) during the build. Printed: the (fold, ring) table size, the
measured peak in bytes per (fold, ring), and measured / :func:`grid_build_bytes`, which
must stay above 1 (the bound is what `plan --box`, `reconstruct --box` and
`example --box` compare with the free memory before trying, so it must never exceed the
real need). Peaks hardly depend on the load of the machine.
"""

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys
from zernike3d.maths.geometry import BallGeometry, grid_build_bytes
box, radius = int(sys.argv[1]), sys.argv[2]
geometry = BallGeometry.for_box(box, 1.0, radius=radius)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tables = geometry.grid
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({"peak": peak, "bound": grid_build_bytes(geometry), "folds": int(tables.fold_dz.size),
                  "rings": int(tables.pair_of.shape[1])}))
"""


def measure(box, radius):
    done = subprocess.run([sys.executable, "-c", CHILD, str(box), radius], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, nargs="+", default=[200, 400, 800, 1200])
    args = parser.parse_args()
    print(f"{'box':>6} {'ball':>13} {'folds x rings':>14} {'peak MiB':>9} {'bytes/(fold,ring)':>18} {'peak / bound':>13}")
    worst = None
    for box in args.boxes:
        for radius in ("inscribed", "circumscribed"):
            r = measure(box, radius)
            pairs = r["folds"] * r["rings"]
            ratio = r["peak"] / r["bound"]
            worst = ratio if worst is None else min(worst, ratio)
            print(f"{box:>6} {radius:>13} {pairs:>14,} {r['peak'] / 2**20:>9.0f} {r['peak'] / pairs:>18.1f} {ratio:>13.2f}")
    print(f"smallest peak / bound: {worst:.2f} (must be >= 1: the bound never refuses a box that fits)")


if __name__ == "__main__":
    main()
