"""A slow, obviously-correct float64 evaluation of the basis at every voxel (tests only).

Independent of the package's recurrences: scipy's Jacobi polynomials and spherical
harmonics, evaluated voxel by voxel from the written-down conventions.
"""

import numpy as np
from scipy.special import eval_jacobi, sph_harm_y

from zernike3d.maths.indexing import nlm_table


def basis_functions(geometry, order):
    """Z_nlm at every voxel: complex (ncoef, box, box, box), 0 outside the ball."""
    n_box = geometry.box
    cz, cy, cx = geometry.center_voxels
    k = np.arange(n_box, dtype=np.float64)
    z, y, x = np.meshgrid(k - cz, k - cy, k - cx, indexing="ij")
    d = np.sqrt(x * x + y * y + z * z)
    r = d / geometry.radius_voxels
    inside = r <= 1 + 1e-9
    theta = np.arccos(np.divide(z, d, out=np.ones_like(d), where=d > 0))
    phi = np.arctan2(y, x)
    out = np.zeros((len(nlm_table(order)), n_box, n_box, n_box), dtype=np.complex128)
    for i, (n, l, m) in enumerate(nlm_table(order)):
        radial = np.sqrt(2 * n + 3) * r**l * eval_jacobi((n - l) // 2, 0, l + 0.5, 2 * r * r - 1)
        out[i] = np.where(inside, radial * sph_harm_y(l, m, theta, phi), 0)
    return out


def decompose(maps, geometry, order):
    basis = basis_functions(geometry, order)
    maps = np.asarray(maps, dtype=np.float64).reshape(-1, geometry.box, geometry.box, geometry.box)
    return np.einsum("vzyx,czyx->vc", maps, np.conj(basis)) * geometry.voxel_volume


def reconstruct(moments, geometry, order):
    basis = basis_functions(geometry, order)
    weights = np.where(nlm_table(order)[:, 2] == 0, 1.0, 2.0)
    return np.real(np.einsum("vc,czyx->vzyx", np.atleast_2d(moments) * weights, basis))
