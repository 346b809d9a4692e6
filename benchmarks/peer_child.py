"""The peer's side of ``bench_peer.py``: runs in the peer's own virtual environment.

Serves one JSON request per line on stdin and answers one JSON line on stdout, so that
the parent can alternate peer and zernike3d calls while this process (and the peer's
library, OpenMP threads included) stays loaded:

    {"op": "info"}                                   -> {"version": ..., "omp_num_threads": ...}
    {"op": "fit", "path": "map.npy", "order": 20,    -> {"descriptors": [...]}
     "dtype": "float32"}
    {"op": "time", "path": ..., "order": ..., "dtype": ...,
     "repeats": 5, "warm_seconds": 0.3}               -> {"seconds": [...]}

"time" runs warm-up calls (at least one, and for at least warm_seconds), then times
``repeats`` back-to-back calls in-process (``time.perf_counter`` around the C++
constructor, which computes the geometric moments, the Zernike moments and the
invariants; the same rule as ``bench_peer.timed_block``). Each call gets a fresh copy of
the map, made before the clock starts: the peer zeroes, in place, the voxels of the
array it is given that lie outside its ball. Maps are cached by path. Needs only NumPy
and the peer.

The PyPI sdist of zernike-descriptors 0.1.0 installs only the compiled module
``pyzernike._core`` (its build leaves out the Python wrapper ``pyzernike.ZernikeDescriptor``),
so the classes are called directly, as that wrapper's ``fit`` does: float32 maps go to
``ZernikeDescriptorFloat`` (float arithmetic throughout), float64 maps to
``ZernikeDescriptorDouble``.
"""

import json
import os
import sys
import time
from importlib import metadata

import numpy as np
from pyzernike._core import ZernikeDescriptorDouble, ZernikeDescriptorFloat

PEER_CLASS = {"float32": ZernikeDescriptorFloat, "float64": ZernikeDescriptorDouble}


def fit(volume, order):
    """(seconds, invariants) of one call of the peer on a copy of ``volume``."""
    data = volume.copy()
    start = time.perf_counter()
    descriptors = PEER_CLASS[volume.dtype.name](data, order).get_descriptors()
    return time.perf_counter() - start, descriptors


def timed_block(volume, order, repeats, warm_seconds):
    start = time.perf_counter()
    fit(volume, order)
    while time.perf_counter() - start < warm_seconds:
        fit(volume, order)
    return [fit(volume, order)[0] for _ in range(repeats)]


def main():
    maps = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "info":
            answer = {"version": metadata.version("zernike-descriptors"),
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
        else:
            key = (request["path"], request["dtype"])
            if key not in maps:
                maps[key] = np.ascontiguousarray(np.load(request["path"]), dtype=request["dtype"])
            if request["op"] == "time":
                answer = {"seconds": timed_block(maps[key], request["order"], request["repeats"],
                                                 request["warm_seconds"])}
            else:
                answer = {"descriptors": [float(d) for d in fit(maps[key], request["order"])[1]]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
