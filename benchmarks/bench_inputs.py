"""What the checked readers of issue 7 cost: time and peak memory of reading inputs.

* Dataset bundle (base + K components of box N, float32): ``Dataset.load`` wall time, of
  which the per-map SHA-256 fingerprint (``maps_fingerprint``) checked against the
  stored ``maps_sha256``, and the peak RSS of the reading process against the bundle's
  size.
* Decompression bomb: a moments file with an ignored key of zeros deflated from
  --bomb-gib GiB to a few MB. Peak RSS of ``Moments.load`` (which reads only the keys it
  needs) against reading every key as ``np.load`` does (``{k: npz[k] for k in npz.files}``:
  what the reader did before).

Each measurement runs in its own Python process, so that its peak RSS (``VmHWM`` from
/proc/self/status) is its own.

    python benchmarks/bench_inputs.py                       # boxes 128 and 256, K = 3, bomb 1 GiB
    python benchmarks/bench_inputs.py --boxes 64 --bomb-gib 0.25
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
what, path = sys.argv[1], sys.argv[2]
result = {}
if what == "dataset":
    from zernike3d.io.dataset import Dataset, maps_fingerprint
    t = time.perf_counter(); dataset = Dataset.load(path); result["load_s"] = time.perf_counter() - t
    t = time.perf_counter(); maps_fingerprint(dataset.maps, dataset.voxel_size); result["fingerprint_s"] = time.perf_counter() - t
elif what == "moments":
    from zernike3d.moments import Moments
    t = time.perf_counter(); Moments.load(path); result["load_s"] = time.perf_counter() - t
elif what == "np.load":
    import numpy as np
    t = time.perf_counter()
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    result["load_s"] = time.perf_counter() - t
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        result["peak_rss_mib"] = int(line.split()[1]) / 1024
print(json.dumps(result))
"""


def child(what, path):
    run = subprocess.run([sys.executable, "-c", CHILD, what, str(path)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def bundle(directory, box, components):
    from zernike3d.io.dataset import Dataset

    rng = np.random.default_rng(0)
    maps = rng.standard_normal((1 + components, box, box, box), dtype=np.float32)
    latents = rng.standard_normal((1000, components))
    path = directory / f"dataset_{box}.npz"
    Dataset(maps, latents, np.arange(1000), 1.0, (0.0, 0.0, 0.0), []).save(path)
    return path


def bombed_moments(directory, gib):
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.moments import Moments

    geometry = BallGeometry.for_box(16, 1.0)
    maps = np.random.default_rng(1).standard_normal((2, 16, 16, 16), dtype=np.float32)
    path = directory / "bombed.npz"
    Moments.from_maps(maps, geometry, 10, names=["a", "b"]).save(path)
    chunk = np.zeros(2**24 // 8)
    count = int(gib * 2**30 // chunk.nbytes)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("junk.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (count * chunk.size,)})
            for _ in range(count):
                f.write(chunk.tobytes())
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--components", type=int, default=3)
    parser.add_argument("--bomb-gib", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"dataset bundles: base + {args.components} components, float32; Dataset.load in a fresh process")
        print(f"{'box':>5} {'bundle MiB':>11} {'load s':>8} {'fingerprint s':>14} {'peak RSS MiB':>13}")
        for box in args.boxes:
            path = bundle(tmp, box, args.components)
            result = child("dataset", path)
            print(f"{box:>5} {path.stat().st_size / 2**20:>11.0f} {result['load_s']:>8.2f} "
                  f"{result['fingerprint_s']:>14.2f} {result['peak_rss_mib']:>13.0f}")
            path.unlink()
        start = time.perf_counter()
        path = bombed_moments(tmp, args.bomb_gib)
        print(f"\nmoments file with an ignored key of {args.bomb_gib:g} GiB of zeros, deflated: "
              f"{path.stat().st_size / 2**20:.1f} MiB on disk (built in {time.perf_counter() - start:.0f} s)")
        print(f"{'reader':>32} {'load s':>8} {'peak RSS MiB':>13}")
        for what, label in (("moments", "Moments.load (keys it needs)"), ("np.load", "np.load, every key")):
            result = child(what, path)
            print(f"{label:>32} {result['load_s']:>8.2f} {result['peak_rss_mib']:>13.0f}")


if __name__ == "__main__":
    main()
