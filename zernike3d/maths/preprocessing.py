"""Crop, Fourier-bin and mask maps: pure functions on arrays indexed [..., z, y, x].

Positions are in Å measured from the centre of voxel [0, 0, 0] and given as (x, y, z);
voxel indices are given as (z, y, x), like the arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def center_of_mass(data: np.ndarray, voxel_size: float) -> tuple[float, ...]:
    """Centre of mass (x, y, z) in Å of the positive density of one map (N, N, N).

    Negative values (solvent noise below the mean, common in cryo-EM maps) are ignored so
    that they cannot pull the centre away from the molecule or cancel its mass.
    """
    weights = np.clip(np.asarray(data, dtype=np.float64), 0.0, None)
    total = weights.sum()
    if not total > 0:
        raise ValueError("map has no positive density: its centre of mass is undefined")
    zyx = [
        (weights.sum(axis=tuple(a for a in range(3) if a != axis)) * np.arange(n)).sum() / total
        for axis, n in enumerate(weights.shape)
    ]
    return tuple(float(v * voxel_size) for v in zyx[::-1])


def crop_box(data: np.ndarray, center_zyx: Sequence[int], box: int) -> tuple[np.ndarray, tuple[int, ...], bool]:
    """Cut a cube of ``box`` voxels out of every map of ``data`` (..., N, N, N).

    Voxel ``center_zyx`` (integer indices, may lie anywhere) of the input becomes voxel
    ``box // 2`` of the output on each axis; where the cube leaves the input it is filled
    with zeros. Returns ``(cropped, start_zyx, padded)``: ``start_zyx`` the input index of
    output voxel [0, 0, 0] (negative when padded below), ``padded`` whether zeros were added.
    """
    shape = data.shape[-3:]
    start = tuple(int(c) - box // 2 for c in center_zyx)
    out = np.zeros(data.shape[:-3] + (box,) * 3, dtype=data.dtype)
    src, dst = [], []
    for s, n in zip(start, shape):
        lo, hi = max(s, 0), min(s + box, n)
        if hi <= lo:
            return out, start, True
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[(...,) + tuple(dst)] = data[(...,) + tuple(src)]
    padded = any(s < 0 or s + box > n for s, n in zip(start, shape))
    return out, start, padded


#: the smallest box binning may leave (a map of fewer voxels has no shape left to describe)
MIN_BINNED_BOX = 8


def binning_problem(box: int, factor: int) -> str | None:
    """Why a box of ``box`` voxels cannot be Fourier-binned by ``factor``: "too small"
    (fewer than :data:`MIN_BINNED_BOX` voxels would remain) or "not divisible"; None if
    it can. The one rule that `zernike3d preprocess --bin` and the workflow's config
    check (``preprocess.bin``) both apply."""
    if box // factor < MIN_BINNED_BOX:
        return "too small"
    if box % factor:
        return "not divisible"
    return None


def fourier_bin(data: np.ndarray, factor: int) -> np.ndarray:
    """Downsample every map of ``data`` (..., N, N, N) by an integer ``factor``.

    Keeps the Fourier coefficients below the new Nyquist frequency (the Nyquist plane of
    an even output box gets the mean of the two input planes it aliases, which keeps the
    spectrum Hermitian) and transforms back on the coarse grid, so a band-limited map is
    resampled exactly. Output voxel j samples input position j * factor, so the origin is
    unchanged. Values are scaled by 1 / factor**3: density magnitudes and the mean are
    preserved. ``N`` must be divisible by ``factor``. Returns float32 (..., N/f, N/f, N/f).
    """
    n_in = data.shape[-1]
    if n_in % factor:
        raise ValueError(f"box {n_in} is not divisible by {factor}")
    n = n_in // factor
    out = np.empty(data.shape[:-3] + (n,) * 3, dtype=np.float32)
    for index in np.ndindex(data.shape[:-3]):
        spectrum = np.fft.rfftn(np.asarray(data[index], dtype=np.float64))
        spectrum = _keep_low(_keep_low(spectrum, n, axis=0), n, axis=1)[:, :, : n // 2 + 1]
        out[index] = np.fft.irfftn(spectrum, s=(n,) * 3, axes=(0, 1, 2)) / factor**3
    return out


def _keep_low(spectrum, n, axis):
    """The ``n`` lowest frequencies along a full (complex FFT) ``axis``, in FFT order."""
    half = n // 2
    frequencies = np.fft.fftfreq(n, d=1.0 / n).round().astype(int)  # 0, 1, .., -half, .., -1
    kept = np.take(spectrum, frequencies, axis=axis)
    if n % 2 == 0:
        at = (slice(None),) * axis
        kept[at + (half,)] = 0.5 * (spectrum[at + (half,)] + spectrum[at + (-half,)])
    return kept


def soft_sphere_mask(box: int, voxel_size: float, radius: float, edge: float,
                     center: Sequence[float] | None = None) -> np.ndarray:
    """Spherical mask (box, box, box) float32: 1 within ``radius`` Å of ``center``, 0 beyond
    ``radius + edge``, and a raised-cosine fall-off ``(1 + cos(pi * (r - radius) / edge)) / 2``
    in between. ``center`` (x, y, z) in Å; default the centre of voxel ``box // 2``.
    """
    if center is None:
        center = ((box // 2) * voxel_size,) * 3
    axis = np.arange(box) * voxel_size
    cx, cy, cz = center
    r = np.sqrt(
        (axis[:, None, None] - cz) ** 2 + (axis[None, :, None] - cy) ** 2
        + (axis[None, None, :] - cx) ** 2
    )
    return _cosine_edge(r - radius, edge)


def soften_mask(mask: np.ndarray, voxel_size: float, edge: float) -> np.ndarray:
    """Binarise ``mask`` (N, N, N) at 0.5 and add a raised-cosine edge ``edge`` Å wide outside.

    Voxels inside stay 1; a voxel at distance d (Å) from the nearest inside voxel gets
    ``(1 + cos(pi * d / edge)) / 2`` for d < ``edge``, 0 beyond.
    """
    inside = np.asarray(mask) >= 0.5
    if not inside.any():
        return np.zeros(inside.shape, dtype=np.float32)
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(~inside, sampling=voxel_size)
    return _cosine_edge(distance, edge)


def _cosine_edge(distance, edge):
    """1 for distance <= 0, raised cosine to 0 at ``edge`` (Å), 0 beyond; float32."""
    if edge <= 0:
        return (distance <= 0).astype(np.float32)
    t = np.clip(distance / edge, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)
