"""Re-expressing a map in another frame: from its own maps (decomposed again about the
point that lands on the reference's centre, as `compare` and `align --rotated-out` of a
results folder do) against from its moments alone (the expansion reconstructed, shifted,
decomposed), both against the direct decomposition about the off-grid landing point of
the same fit (slow: an off-grid centre has no symmetric shells).

A chiral phantom (zernike3d.synthetic.chiral_phantom) is the reference; its twin is the
same map turned by a known rotation and shifted by a known off-grid shift (cubic
splines). Aligned (zernike3d.analysis.alignment.align), the twin is expressed in the
reference's frame both ways; the table gives the relative error of the invariants (and of
the moments) against the reference's, and the time of each. Run:

    python benchmarks/bench_reexpress.py [--box 64] [--voxel-size 1.0] [--orders 20 50] [--shift 3]
"""

import argparse
import time
import warnings

import numpy as np
from scipy.ndimage import affine_transform
from scipy.spatial.transform import Rotation

from zernike3d.analysis.alignment import align, express_in_reference_frame
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.invariants import invariants
from zernike3d.maths.rotation import rotate_moments
from zernike3d.maths.transform import decompose
from zernike3d.moments import Moments
from zernike3d.synthetic import chiral_phantom


def moved(data, rotation, shift, voxel_size):
    """g(q) = f(R^T (q - c - shift) + c) about voxel box // 2 (cubic splines)."""
    box = data.shape[0]
    centre = np.full(3, box // 2, dtype=np.float64)
    flip = np.eye(3)[::-1]  # (x, y, z) <-> (z, y, x)
    inverse = flip @ rotation.T @ flip
    offset = centre - inverse @ (centre + flip @ shift / voxel_size)
    return affine_transform(data, inverse, offset=offset, order=3, mode="constant")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--voxel-size", type=float, default=1.0)
    parser.add_argument("--orders", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--shift", type=float, default=3.0, help="length of the twin's shift, Å")
    args = parser.parse_args()
    geometry = BallGeometry.for_box(args.box, args.voxel_size)
    reference_map = chiral_phantom(args.box, args.voxel_size).astype(np.float64)
    rotation = Rotation.from_euler("zyz", [37.0, 71.0, -122.0], degrees=True).as_matrix()
    shift = args.shift * np.array([0.7, -0.5, 0.51]) / np.linalg.norm([0.7, -0.5, 0.51])
    twin_map = moved(reference_map, rotation, shift, args.voxel_size)[None]
    print(f"box {args.box}, voxel {args.voxel_size} Å, twin turned and shifted by {args.shift} Å "
          "(relative errors against the reference's; times in s)")
    print("order | invariants: own maps, moments only, direct | moments: own maps, moments only | time: own maps, "
          "moments only, direct")
    for order in args.orders:
        reference = Moments.from_maps(reference_map, geometry, order)
        twin = Moments.from_maps(twin_map, geometry, order)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = align(twin, reference, order=min(order, 20))
        assert fit.hand == "same"
        t0 = time.perf_counter()
        from_maps = express_in_reference_frame(twin, fit, maps=twin_map)
        t1 = time.perf_counter()
        from_moments = express_in_reference_frame(twin, fit)
        t2 = time.perf_counter()
        # the same fit, decomposed about the off-grid landing point p = c - R^T shift directly
        point = tuple(np.asarray(twin.center) - fit.rotation.T @ np.asarray(fit.shift))
        direct = decompose(twin_map, BallGeometry(args.box, args.voxel_size, geometry.radius, point), order)
        direct = rotate_moments(direct, twin.nlm, fit.rotation)
        t3 = time.perf_counter()
        f = reference.invariants()

        def error(values, truth):
            return np.linalg.norm(values - truth) / np.linalg.norm(truth)

        print(f"{order} | {error(from_maps.invariants(), f):.4f}, {error(from_moments.invariants(), f):.4f}, "
              f"{error(invariants(direct, order), f):.4f} | {error(from_maps.moments, reference.moments):.4f}, "
              f"{error(from_moments.moments, reference.moments):.4f} | {t1 - t0:.2f}, {t2 - t1:.2f}, {t3 - t2:.2f}")


if __name__ == "__main__":
    main()
