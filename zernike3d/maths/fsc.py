"""Fourier shell correlation (FSC) between two maps, and where it crosses a threshold.

Maps are real (N, N, N) arrays indexed [z, y, x] with cubic voxels of ``voxel_size`` Å.
Shell k holds the Fourier voxels whose frequency, rounded to the nearest integer multiple
of 1/(M·voxel_size), is k, where M = N × ``oversample`` (the maps zero-padded to M voxels:
finer shells for maps that are zero outside a ball, as masked maps are); shells run from
0 (the mean) to M//2 (Nyquist, 1/(2·voxel_size)), and the corners beyond Nyquist are left
out. Sums over the half spectrum of ``rfftn`` count
every plane except x = 0 (and x = Nyquist for even N) twice, so each shell is summed over
the whole sphere exactly as with a full FFT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from zernike3d.maths.geometry import BallGeometry

#: the threshold for a map against a model of it (here its expansion). The 0.143 of half
#: maps (Rosenthal & Henderson) does not apply: the expansion is not an independent half.
MODEL_THRESHOLD = 0.5


@dataclass(frozen=True)
class FscCurve:
    """One FSC curve; every field has one entry per shell 0..N//2."""

    frequency: np.ndarray  # spatial frequency of the shell, 1/Å
    fsc: np.ndarray  # correlation in [-1, 1]; NaN where either map has no power
    voxels: np.ndarray  # Fourier voxels in the shell (whole sphere, of the padded maps)

    def resolution(self, threshold: float) -> float | None:
        """Resolution in Å where the curve first drops below ``threshold``, or None."""
        return crossing_resolution(self.frequency, self.fsc, threshold)


def fourier_shell_correlation(map1: np.ndarray, map2: np.ndarray, voxel_size: float, oversample: int = 1,
                              workers: int | None = None) -> FscCurve:
    """FSC of two real maps of the same cubic shape; ``voxel_size`` in Å. ``oversample``
    (integer >= 1): zero-pad both maps to ``oversample`` × the box first, for that many
    times more (correlated) shells. ``workers``: threads of each FFT (scipy.fft: None 1, -1 all cores)."""
    from scipy import fft

    map1 = np.asarray(map1, dtype=np.float64)
    map2 = np.asarray(map2, dtype=np.float64)
    if map1.shape != map2.shape or map1.ndim != 3 or len(set(map1.shape)) != 1:
        raise ValueError(f"need two cubic maps of one shape, got {map1.shape} and {map2.shape}")
    box = map1.shape[0] * int(oversample)
    shells, weights, keep = _shells_to_nyquist(box)
    n_shells = box // 2 + 1
    f1 = fft.rfftn(map1, s=(box,) * 3, axes=(0, 1, 2), workers=workers)[keep]
    f2 = fft.rfftn(map2, s=(box,) * 3, axes=(0, 1, 2), workers=workers)[keep]

    def shell_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(shells, weights=weights * values, minlength=n_shells)

    cross = shell_sum((f1 * f2.conj()).real)
    power = shell_sum(np.abs(f1) ** 2) * shell_sum(np.abs(f2) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        fsc = np.where(power > 0, cross / np.sqrt(power), np.nan)
    return FscCurve(
        frequency=np.arange(n_shells) / (box * voxel_size),
        fsc=fsc,
        voxels=np.bincount(shells, weights=weights, minlength=n_shells).astype(np.int64),
    )


def crossing_resolution(frequency: np.ndarray, fsc: np.ndarray, threshold: float) -> float | None:
    """Resolution in Å at which ``fsc`` first drops below ``threshold``, or None.

    The search starts after shell 0 (the mean). The crossing frequency is interpolated
    linearly between the last shell at or above the threshold and the first one below;
    None means the curve never drops below it up to the last shell ("not reached": the
    resolution is at least 1/frequency[-1]). NaN shells count as not below.
    """
    frequency = np.asarray(frequency, dtype=np.float64)
    fsc = np.asarray(fsc, dtype=np.float64)
    below = np.flatnonzero(fsc[1:] < threshold)
    if below.size == 0:
        return None
    i = below[0] + 1
    f0, f1 = frequency[i - 1], frequency[i]
    c0, c1 = fsc[i - 1], fsc[i]
    crossing = f1 if not np.isfinite(c0) else f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
    return float(np.inf) if crossing <= 0 else float(1.0 / crossing)


def ball_mask(geometry: BallGeometry, edge_width: float = 3.0) -> np.ndarray:
    """The ball of ``geometry`` as a (N, N, N) [z, y, x] float64 mask in [0, 1].

    ``edge_width`` 0 gives the ball's indicator (``geometry.inside()``); otherwise the
    mask is 1 up to radius - edge_width voxels and falls as a raised cosine to 0 at
    the radius, so the soft edge lies just inside the sphere.
    """
    if edge_width <= 0:
        return geometry.inside().astype(np.float64)
    cz, cy, cx = geometry.center_voxels
    k = np.arange(geometry.box, dtype=np.float64)
    r = np.sqrt((k[:, None, None] - cz) ** 2 + (k[None, :, None] - cy) ** 2 + (k[None, None, :] - cx) ** 2)
    t = np.clip((r - (geometry.radius_voxels - edge_width)) / edge_width, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def masked_fsc(original: np.ndarray, expansion: np.ndarray, geometry: BallGeometry, edge_width: float = 3.0,
               oversample: int = 1) -> FscCurve:
    """FSC of ``original`` against ``expansion`` (its Zernike expansion), both (N, N, N)
    [z, y, x] maps on ``geometry``'s grid, after multiplying each by :func:`ball_mask`
    (``edge_width`` voxels): the comparison is made inside the ball, where the expansion
    lives. ``oversample``: as :func:`fourier_shell_correlation`."""
    mask = ball_mask(geometry, edge_width)
    return fourier_shell_correlation(mask * original, mask * expansion, geometry.voxel_size, oversample)


def oversampling_for(box: int, shells: int = 64) -> int:
    """The zero-padding factor (1-4) that gives a box^3 map at least ``shells`` FSC shells."""
    return int(min(4, max(1, -(-2 * shells // box))))


@functools.lru_cache(maxsize=2)
def _shells_to_nyquist(box: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_shells` of the rfftn voxels up to Nyquist (shell < box // 2 + 1): (shell
    index, weight) of those voxels and the mask (box, box, box // 2 + 1) that picks them;
    kept for the next call (qc's FSC of every volume of a job has one box)."""
    shells, weights = _shells(box)
    keep = shells < box // 2 + 1
    arrays = shells[keep], weights[keep], keep
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _shells(box):
    """Shell index and Hermitian weight (1 or 2) of every rfftn voxel of a box^3 map."""
    fz = np.fft.fftfreq(box)[:, None, None]
    fy = np.fft.fftfreq(box)[None, :, None]
    fx = np.fft.rfftfreq(box)[None, None, :]
    shells = np.rint(np.sqrt(fz**2 + fy**2 + fx**2) * box).astype(np.int64)
    weights = np.full(fx.shape, 2.0)
    weights[..., 0] = 1.0
    if box % 2 == 0:
        weights[..., -1] = 1.0
    return shells, np.broadcast_to(weights, shells.shape)
