"""The peer's side of ``bench_peer.py``: runs in the peer's own virtual environment.

Serves one JSON request per line on stdin and answers one JSON line on stdout, so that
the parent can alternate peer and zernike3d calls while this process (and the peer's
library, OpenMP threads included) stays loaded:

    {"op": "info"}                                   -> {"version": ..., "omp_num_threads": ...}
    {"op": "fit", "path": "map.npy", "order": 20,    -> {"seconds": s, "descriptors": [...]}
     "dtype": "float32"}

"fit" times one call of the peer in-process (``time.perf_counter`` around the C++
constructor, which computes the geometric moments, the Zernike moments and the
invariants) on a fresh copy of the map: the peer zeroes, in place, the voxels of the
array it is given that lie outside its ball, so each call gets its own copy, made before
the clock starts. Maps are cached by path. Needs only NumPy and the peer.

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
            data = maps[key].copy()
            peer_class = PEER_CLASS[request["dtype"]]
            start = time.perf_counter()
            descriptors = peer_class(data, request["order"]).get_descriptors()
            seconds = time.perf_counter() - start
            answer = {"seconds": seconds, "descriptors": [float(d) for d in descriptors]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
