"""Measure the resolution a Zernike expansion of order n reaches, and fit resolution ≈ c·πR/n.

For several real-like maps (the real ``hand-vol.mrc`` phantom, binned and cropped, and
synthetic protein-like maps: a chain of Gaussian atoms 1.5 Å apart packed in a globule,
low-passed), each map is decomposed once at the highest order and rebuilt from the moments
up to each order n. The FSC between map and expansion, both multiplied by the ball mask
(raised-cosine edge 3 voxels, as `zernike3d qc`), gives the resolution at FSC 0.5. Points
where the crossing is not reached or lies within 1.25× Nyquist (the voxels, not the order,
limit them) are left out of the fit. Two forms are fitted: resolution = c·πR/n (c the
median of the per-point ratios, spread their 10th–90th percentile), and resolution =
c·πR/(n + b) (least squares on log resolution over a grid of b), which follows the
measurements better because the ratio to πR/n grows with n.

    python benchmarks/fit_resolution.py                      # the table and the fit
    python benchmarks/fit_resolution.py --hand /path/hand-vol.mrc --threads 2

The second fit gives ``RESOLUTION_FACTOR`` (c) and ``ORDER_OFFSET`` (b) of
``zernike3d/maths/resolution.py``.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from zernike3d.io.mrc import read_map
from zernike3d.maths.fsc import masked_fsc
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.indexing import truncate
from zernike3d.maths.preprocessing import crop_box, fourier_bin
from zernike3d.maths.transform import decompose, reconstruct
from zernike3d.synthetic import protein_like

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand-vol.mrc"


def maps_to_fit(hand_path):
    """[(label, map (N, N, N) [z, y, x], voxel size Å, orders)]."""
    cases = []
    if hand_path.is_file():
        hand = read_map(hand_path)
        data = hand.data.astype(np.float64)
        cases.append(("hand-vol 64³ 1 Å", data, hand.voxel_size, [8, 12, 16, 24, 32, 40, 50, 60]))
        cases.append(("hand-vol binned 2: 32³ 2 Å", fourier_bin(data, 2), 2 * hand.voxel_size, [6, 8, 12, 16, 20, 24]))
        cropped, _, _ = crop_box(data, (32, 32, 32), 48)
        cases.append(("hand-vol cropped 48³ 1 Å", cropped, hand.voxel_size, [8, 12, 16, 24, 32, 40]))
    else:
        print(f"{hand_path} not found: synthetic maps only")
    cases.append(("protein-like 64³ 1 Å", protein_like(64, 1.0, seed=1), 1.0, [10, 16, 24, 32, 40, 50, 60]))
    cases.append(("protein-like 64³ 1.6 Å", protein_like(64, 1.6, seed=2, blur=1.2), 1.6, [10, 16, 24, 32, 40]))
    cases.append(("protein-like 96³ 1 Å", protein_like(96, 1.0, seed=3), 1.0, [16, 24, 32, 48, 64, 80]))
    cases.append(("protein-like 128³ 0.8 Å", protein_like(128, 0.8, seed=4, blur=0.7), 0.8, [24, 40, 60, 80, 100]))
    return cases


def measure(label, data, voxel_size, orders, threads):
    """Rows (label, R, voxel, n, πR/n, FSC-0.5 resolution or None) of one map."""
    geometry = BallGeometry.for_box(data.shape[0], voxel_size)
    top = max(orders)
    moments = decompose(data, geometry, top, threads=threads)
    rows = []
    for order in orders:
        expansion = reconstruct(truncate(moments, top, order), geometry, order, threads=threads)[0]
        curve = masked_fsc(data, expansion, geometry)
        rows.append((label, geometry.radius, voxel_size, order, np.pi * geometry.radius / order, curve.resolution(0.5)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hand", type=Path, default=HAND, help="hand-vol.mrc (default: ../shared/data)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    for label, data, voxel_size, orders in maps_to_fit(args.hand):
        rows += measure(label, data, voxel_size, orders, args.threads)
    print(f"{'map':28s} {'R (Å)':>6s} {'voxel':>6s} {'n':>4s} {'πR/n':>6s} {'FSC0.5 (Å)':>10s} {'ratio':>6s}  used")
    ratios = []
    for label, radius, voxel_size, order, rule, resolution in rows:
        used = resolution is not None and resolution > 1.25 * 2 * voxel_size
        ratio = resolution / rule if resolution is not None else float("nan")
        if used:
            ratios.append(ratio)
        text = "not reached" if resolution is None else f"{resolution:.2f}"
        print(f"{label:28s} {radius:6.1f} {voxel_size:6.2f} {order:4d} {rule:6.2f} {text:>10s} {ratio:6.2f}  {'yes' if used else 'no'}")
    ratios = np.array(ratios)
    low, median, high = np.percentile(ratios, [10, 50, 90])
    print(f"\nresolution ≈ c·πR/n over {len(ratios)} points: c = {median:.2f} (median), "
          f"10–90% {low:.2f}–{high:.2f}, min {ratios.min():.2f}, max {ratios.max():.2f}")
    kept = [(radius, order, res) for _, radius, voxel, order, _, res in rows if res is not None and res > 2.5 * voxel]
    radius, order, resolution = (np.array(v, dtype=float) for v in zip(*kept))
    best = None
    for offset in np.arange(0.0, 10.01, 0.05):
        # least squares on log(resolution): log c is the mean log ratio
        log_ratio = np.log(resolution * (order + offset) / (np.pi * radius))
        rms = np.sqrt(np.mean((log_ratio - log_ratio.mean()) ** 2))
        if best is None or rms < best[0]:
            best = (rms, offset, np.exp(log_ratio.mean()), log_ratio - log_ratio.mean())
    rms, offset, factor, residual = best
    error = np.expm1(residual)
    print(f"resolution ≈ c·πR/(n + b): c = {factor:.3f}, b = {offset:.2f}; relative error rms {100 * rms:.1f}%, "
          f"range {100 * error.min():+.1f}% to {100 * error.max():+.1f}%")
    plain = np.log(ratios / np.exp(np.log(ratios).mean()))
    print(f"  (c·πR/n alone: relative error rms {100 * np.sqrt(np.mean(plain**2)):.1f}%, "
          f"range {100 * np.expm1(plain.min()):+.1f}% to {100 * np.expm1(plain.max()):+.1f}%)")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
