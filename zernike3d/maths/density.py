"""Densities on a voxel grid from atoms or from another map, placed by a rigid motion.

Grids are cubic, indexed ``data[z, y, x]``, with voxel [i, j, k] at (x, y, z) = (k, j, i)
× voxel size, in Å from the centre of voxel [0, 0, 0]. A placement is a 3×4 matrix
[A | t] (Å) that takes a point p of the source's frame to A p + t in the grid's frame
(A a rotation, or a rotation times -1 for a mirror image), as
:class:`zernike3d.analysis.alignment.Alignment` reports a fit.

* :func:`atom_density`: a sum of one isotropic Gaussian per atom, as ChimeraX's
  ``molmap`` makes a map from a model: standard deviation ``sigma`` = MOLMAP_SIGMA_FACTOR ×
  resolution (Å), each Gaussian normalised to its weight (so the map is in weight units
  per Å³, e.g. electrons / Å³), truncated at :data:`GAUSSIAN_REACH` standard deviations
  along each axis.
* :func:`resampled_map`: another map (any box and voxel size) carried onto the grid by a
  placement: low-passed to the grid's Nyquist frequency first when its voxels are finer
  (so that sampling it does not alias), then cubic B-spline interpolation (zero outside
  its box).
"""

import numpy as np

#: molmap's sigmaFactor: sigma = 1 / (pi sqrt 2) × resolution, the Gaussian whose Fourier
#: transform falls to 1/e at 1/resolution
MOLMAP_SIGMA_FACTOR = 1.0 / (np.pi * np.sqrt(2.0))
#: each Gaussian is summed out to this many standard deviations along each axis (a cube;
#: the tail beyond holds 0.02% of its weight, the density there is 3e-4 of its peak)
GAUSSIAN_REACH = 4.0


def enclosing_sphere(points: np.ndarray, iterations: int = 5000) -> tuple:
    """(centre (3,), radius) of a sphere holding every point (A, 3), close to the smallest:
    Bădoiu and Clarkson's iteration (step towards the farthest point by 1 / (i + 2)) from
    the centroid, within about 1 / sqrt(i) of the smallest radius after i steps. The first
    200 steps see every point; the rest only those beyond 3/4 of the radius then (the
    centre moves by less than that, so the farthest point is always among them). The
    radius returned is the farthest point's distance from the centre: every point is held."""
    points = np.asarray(points, dtype=np.float64)
    centre = points.mean(axis=0)
    candidates = points
    for i in range(iterations):
        if i == 200:
            distance = np.sqrt(np.sum((points - centre) ** 2, axis=1))
            candidates = points[distance > 0.75 * distance.max()]
        farthest = candidates[np.argmax(np.sum((candidates - centre) ** 2, axis=1))]
        centre = centre + (farthest - centre) / (i + 2)
    return centre, float(np.sqrt(np.max(np.sum((points - centre) ** 2, axis=1))))


def placed_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (..., 3) (x, y, z) Å moved by the 3×4 placement ``matrix``: A p + t."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ matrix[:, :3].T + matrix[:, 3]


def atom_density(positions: np.ndarray, weights: np.ndarray, box: int, voxel_size: float,
                 sigma: float) -> np.ndarray:
    """The map (box, box, box) float64 [z, y, x] of Gaussians of standard deviation
    ``sigma`` Å at ``positions`` (A, 3) (x, y, z) Å in the grid's frame, each integrating
    to its weight (weight units per Å³), summed over the voxels within
    :data:`GAUSSIAN_REACH` standard deviations of the atom's nearest voxel along each axis
    (numba kernel :func:`zernike3d.maths._kernels.gaussian_splat`). Atoms whose Gaussian
    misses the box add nothing."""
    from zernike3d.maths._kernels import gaussian_splat

    out = np.zeros((box, box, box))
    reach = int(np.ceil(GAUSSIAN_REACH * sigma / voxel_size))
    gaussian_splat(np.ascontiguousarray(positions, dtype=np.float64), np.ascontiguousarray(weights, dtype=np.float64),
                   float(voxel_size), float(sigma), reach, out)
    return out


def resampled_map(data: np.ndarray, voxel_size: float, matrix: np.ndarray, box: int,
                  grid_voxel_size: float) -> np.ndarray:
    """The map ``data`` [z, y, x] (voxels of ``voxel_size`` Å, positions from its voxel
    [0, 0, 0]) placed by ``matrix`` on a grid of ``box`` voxels of ``grid_voxel_size`` Å:
    out(q) = data(A^-1 (q - t)), float64 [z, y, x]; zero where that falls outside ``data``.

    A map sampled finer than the grid is first low-passed to the grid's Nyquist
    frequency (a sharp cut of its Fourier transform), then it is interpolated with cubic
    B-splines (scipy.ndimage.map_coordinates)."""
    from scipy import ndimage

    data = np.asarray(data, dtype=np.float64)
    if voxel_size < grid_voxel_size:
        frequencies = [np.fft.fftfreq(n, voxel_size) for n in data.shape[:2]] + [np.fft.rfftfreq(data.shape[2], voxel_size)]
        fz, fy, fx = np.meshgrid(*frequencies, indexing="ij", sparse=True)
        keep = fz**2 + fy**2 + fx**2 <= (0.5 / grid_voxel_size) ** 2
        data = np.fft.irfftn(np.fft.rfftn(data) * keep, s=data.shape, axes=(0, 1, 2))
    matrix = np.asarray(matrix, dtype=np.float64)
    inverse = np.linalg.inv(matrix[:, :3])
    axis = np.arange(box, dtype=np.float64) * grid_voxel_size
    coefficients = ndimage.spline_filter(data, order=3, mode="constant")  # once, not per section
    out = np.empty((box, box, box))
    y, x = np.meshgrid(axis, axis, indexing="ij")
    for i, z in enumerate(axis):  # one section at a time: the coordinates of a 256^3 grid would take 1.2 GB
        section = np.stack([x, y, np.full_like(x, z)], axis=-1) - matrix[:, 3]
        source = section @ inverse.T / voxel_size  # (x, y, z) in the map's voxels
        out[i] = ndimage.map_coordinates(coefficients, np.moveaxis(source[..., ::-1], -1, 0), order=3,
                                         mode="constant", cval=0.0, prefilter=False)
    return out
