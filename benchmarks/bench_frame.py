"""Benchmark: the error of the common frame of two 3D Variability jobs of one molecule.

Pairs of synthetic jobs (zernike3d.synthetic.two_state_job: a chiral molecule whose lid
is closed or open, analytic Gaussian maps, so the second job's turn and shift are exact;
each job's base is its particles' mean and its components their principal directions,
as 3DVA gives them) with other populations, the second turned by a random rotation and
moved by 3 Å. For each pair: the error of the rotation (degrees) and of the shift (Å)
found by aligning the base maps (`zernike3d align`, what `compare --frame base` does) and
by fitting the jobs' families (`compare --frame family`, zernike3d.analysis.frame), and
the CPU time of the family fit. Also C4-symmetric bases whose components break the
symmetry (the same populations), turned about the axis and about a tilted one.
``--noise f`` adds smooth Gaussian noise (white noise filtered by a Gaussian of 1 voxel)
to every map, f times each component's rms and f / 5 times the base's, as 3DVA's
components are noisier than its consensus.

    python benchmarks/bench_frame.py --box 48 --order 20 --pairs 4 [--noise 0.5]
"""

import argparse
import time
import warnings

import numpy as np
from scipy.spatial.transform import Rotation

from zernike3d.analysis.alignment import align
from zernike3d.analysis.frame import align_jobs
from zernike3d.maths.geometry import BallGeometry
from zernike3d.moments import Moments
from zernike3d.synthetic import two_state_job


def noisy(maps, noise, rng):
    """``maps`` (1+K, N, N, N) with smooth noise: ``noise`` times each component's rms, a
    fifth of that times the base's."""
    from scipy.ndimage import gaussian_filter

    out = np.array(maps, dtype=np.float64)
    for i, volume in enumerate(out):
        field = gaussian_filter(rng.normal(size=volume.shape), 1.0)
        out[i] += (noise if i else noise / 5) * volume.std() * field / field.std()
    return out


def errors(alignment, rotation, shift):
    """(degrees, Å) of a fit against the truth: the moving job's points p sit at
    R (p - c) + c + s, so the fit should be rotation R^T and shift -R^T s."""
    cosine = (np.trace(alignment.rotation @ rotation) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cosine, -1, 1)))), float(np.linalg.norm(alignment.shift + rotation.T @ shift))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--box", type=int, default=48)
    parser.add_argument("--voxel-size", type=float, default=2.0)
    parser.add_argument("--order", type=int, default=20)
    parser.add_argument("--particles", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=4, help="random turns per pair of populations")
    parser.add_argument("--noise", type=float, default=0.0, help="noise of the components, times their rms")
    args = parser.parse_args()
    geometry = BallGeometry.for_box(args.box, args.voxel_size)
    rng = np.random.default_rng(0)
    cases = [(0.4, 0.75, 1), (0.2, 0.6, 1), (0.5, 0.5, 1), (0.5, 0.5, 4)]
    print(f"noise {args.noise:g}")
    print("| populations open (A / B) | symmetry of the base | base maps: rotation (°) / shift (Å) | "
          "families: rotation (°) / shift (Å) | family fit CPU (s) |")
    print("|---|---|---|---|---|")
    for share_a, share_b, symmetry in cases:
        reference, latents_a, _ = two_state_job(args.box, args.voxel_size, share_a, args.particles, seed=1, symmetry=symmetry)
        a = Moments.from_maps(noisy(reference, args.noise, rng), geometry, args.order)
        for pair in range(args.pairs):
            if symmetry > 1 and pair % 2 == 0:  # about the symmetry axis
                rotation = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True).as_matrix()
            else:
                rotation = Rotation.random(random_state=rng.integers(2**31)).as_matrix()
            direction = rng.normal(size=3)
            shift = 3.0 * direction / np.linalg.norm(direction)
            seed = 1 if symmetry > 1 else 2 + pair  # a symmetric pair: one job turned (its twin)
            moving, latents_b, _ = two_state_job(args.box, args.voxel_size, share_b, args.particles, seed=seed,
                                                 rotation=rotation, shift=shift, symmetry=symmetry)
            b = Moments.from_maps(noisy(moving, args.noise, rng), geometry, args.order)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                base = errors(align(b, a), rotation, shift)
                start = time.process_time()
                family_fit = align_jobs(b, a, latents_b)
                cpu = time.process_time() - start
            family = errors(family_fit, rotation, shift)
            print(f"| {share_a:.2f} / {share_b:.2f} | C{symmetry} | {base[0]:.3f} / {base[1]:.3f} | "
                  f"{family[0]:.3f} / {family[1]:.3f} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
