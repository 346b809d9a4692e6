"""Rigid motions of Zernike moments: rotation and mirror image (exact), translation
(by re-expansion), and the correlation of two expansions over a grid of rotations.

Conventions (docs/conventions.md): moments are (V, K) complex arrays, m >= 0 columns in
:func:`zernike3d.maths.indexing.nlm_table` order, Omega_nlm = sum f conj(Z_nlm) dV with
complex Y_lm (Condon-Shortley phase) and Omega_{n,l,-m} = (-1)^m conj(Omega_nlm).
Rotations are 3x3 proper rotation matrices acting on (x, y, z) about the ball centre;
"the map f rotated by R" is g(x) = f(R^T x). Euler angles are ZYZ, R = Rz(alpha)
Ry(beta) Rz(gamma), about fixed axes applied right to left (gamma first).

Rotation. For fixed n and l the 2l + 1 moments transform like the spherical-harmonic
coefficients of degree l, by the Wigner matrix D^l(R), the same for every n. The moments
with the same radial index k = (n - l) / 2 hold each l = 0 .. order - 2k once, so they
form one set of a_lm of a real field, and ducc0's ``sht.rotate_alm`` (healpix a_lm
layout, m >= 0 stored, active rotation with Euler angles psi, theta, phi applied in that
order about the fixed z, y, z axes) rotates them with one call per k. The mapping
(alpha, beta, gamma) -> (phi, theta, psi) is checked in tests/test_align.py against
maps rotated exactly on the grid.

Mirror image: :func:`mirror_moments` is the inversion through the ball centre,
g(x) = f(-x), so Omega_nlm -> (-1)^l Omega_nlm. Any other reflection is the inversion
followed by a rotation (x -> -x is the inversion, then a half turn about x).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from zernike3d.maths.indexing import coefficient_count, nlm_table

if TYPE_CHECKING:
    from zernike3d.maths.geometry import BallGeometry


def rotate_moments(moments: np.ndarray, nlm: np.ndarray, rotation: np.ndarray, threads: int = 1) -> np.ndarray:
    """Moments (V, K) complex, m >= 0 columns in ``nlm`` order, of the map f rotated by
    ``rotation`` (3x3 proper rotation acting on (x, y, z) about the ball centre:
    g(x) = f(R^T x)). ``nlm`` must be the full table of some order. Exact (ducc0)."""
    moments, order, single = _as_table(moments, nlm)
    alpha, beta, gamma = euler_zyz(rotation)
    out = np.empty_like(moments)
    for columns, positions, lmax in _radial_groups(order):
        alm = np.zeros((moments.shape[0], (lmax + 1) * (lmax + 2) // 2), dtype=np.complex128)
        alm[:, positions] = moments[:, columns]
        rotated = _ducc_rotate(alm, lmax, gamma, beta, alpha, threads)
        out[:, columns] = rotated[:, positions]
    return out[0] if single else out


def mirror_moments(moments: np.ndarray, nlm: np.ndarray) -> np.ndarray:
    """Moments of the mirror image g(x) = f(-x) (inversion through the ball centre):
    Omega_nlm -> (-1)^l Omega_nlm. Exact; its own inverse."""
    nlm = np.asarray(nlm)
    return np.asarray(moments) * np.where(nlm[:, 1] % 2 == 0, 1.0, -1.0)


def euler_zyz(rotation: np.ndarray, lock: float = 1e-12) -> tuple[float, float, float]:
    """(alpha, beta, gamma) in radians with R = Rz(alpha) Ry(beta) Rz(gamma), beta in
    [0, pi]; at gimbal lock, sin(beta) <= ``lock``, beta is 0 or pi and gamma = 0 (a
    larger ``lock`` gives the angles a reader expects of a rotation that is a turn about z
    but for rounding, e.g. (30, 0, 0) rather than (131, 0.00001, -101), at the cost of
    that much error). Closed form (it is called in the inner loop of the alignment
    search); beta from atan2, accurate near 0 and pi too."""
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3) or np.abs(r @ r.T - np.eye(3)).max() > 1e-6 or np.linalg.det(r) < 0:
        raise ValueError(f"not a proper rotation matrix: {r.tolist()}")
    beta = float(np.arctan2(np.hypot(r[0, 2], r[1, 2]), r[2, 2]))
    if np.hypot(r[0, 2], r[1, 2]) > lock:
        return float(np.arctan2(r[1, 2], r[0, 2])), beta, float(np.arctan2(r[2, 1], -r[2, 0]))
    if r[2, 2] > 0:  # R = Rz(alpha + gamma)
        return float(np.arctan2(r[1, 0], r[0, 0])), 0.0, 0.0
    return float(np.arctan2(-r[1, 0], -r[0, 0])), np.pi, 0.0  # R = Rz(alpha) Ry(pi)


def rotation_from_euler_zyz(alpha: float, beta: float, gamma: float) -> np.ndarray:
    """R = Rz(alpha) Ry(beta) Rz(gamma), angles in radians."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("ZYZ", [alpha, beta, gamma]).as_matrix()


def correlation_grid(moving: np.ndarray, reference: np.ndarray, nlm: np.ndarray, n_angles: int,
                     weights: np.ndarray | None = None, threads: int = 1) -> np.ndarray:
    """Re <reference, moving rotated by R> over a grid of rotations, by one FFT per
    (beta, gamma): returns C (n_beta, n_alpha, n_gamma) real, for every row of
    ``weights``, as an array (W, n_beta, n_alpha, n_gamma).

    moving, reference: (K,) complex moments of one volume each (columns ``nlm``).
    R = Rz(alpha_i) Ry(beta_j) Rz(gamma_k) with alpha_i = 2 pi i / n_angles,
    gamma_k = 2 pi k / n_angles and beta_j = pi (j + 1/2) / n_beta, n_beta = n_angles // 2.
    The inner product sums over all m = -l..l: for real maps it is
    Re(sum_{m >= 0} w_m conj(a_nlm) b_nlm) with w_0 = 1 and w_m = 2 for m > 0.
    ``weights``: (W, K) real factors applied to the reference's moments (e.g. (-1)^l
    gives the correlation with the moving map's mirror image at the same time, because
    the inversion commutes with every rotation); default one row of ones.

    Method: Rz(gamma) multiplies b_nlm by exp(-i m gamma); ducc0 rotates the stack of
    all gammas by Ry(beta) in one call per radial index; Rz(alpha) multiplies by
    exp(-i m alpha), so the sum over m is one FFT along alpha.
    """
    moving, order, _ = _as_table(moving, nlm)
    reference, _, _ = _as_table(reference, nlm)
    nlm = nlm_table(order)
    m = nlm[:, 2]
    if n_angles < 2 * order + 1:
        raise ValueError(f"n_angles {n_angles} must be at least 2 * order + 1 = {2 * order + 1}")
    weights = np.ones((1, nlm.shape[0])) if weights is None else np.atleast_2d(weights)
    n_beta = n_angles // 2
    gammas = 2 * np.pi * np.arange(n_angles) / n_angles
    betas = np.pi * (np.arange(n_beta) + 0.5) / n_beta
    phased = moving[0][None, :] * np.exp(-1j * gammas[:, None] * m[None, :])  # (n_gamma, K)
    conj_ref = np.conj(reference[0])[None, :] * weights * np.where(m == 0, 1.0, 2.0)  # (W, K)
    by_m = np.argsort(m, kind="stable")  # columns grouped by m, for one reduceat per beta
    m_starts = np.searchsorted(m[by_m], np.arange(order + 1))
    out = np.empty((weights.shape[0], n_beta, n_angles, n_angles))
    rotated = np.empty_like(phased)
    for j, beta in enumerate(betas):
        for columns, positions, lmax in _radial_groups(order):
            alm = np.zeros((n_angles, (lmax + 1) * (lmax + 2) // 2), dtype=np.complex128)
            alm[:, positions] = phased[:, columns]
            rotated[:, columns] = _ducc_rotate(alm, lmax, 0.0, beta, 0.0, threads)[:, positions]
        terms = (rotated[None, :, :] * conj_ref[:, None, :])[:, :, by_m]
        per_m = np.add.reduceat(terms, m_starts, axis=2)  # (W, n_gamma, m = 0..order)
        # the sum over m of per_m exp(-i m alpha) at every alpha is an FFT along m
        out[:, j] = np.fft.fft(per_m, n=n_angles, axis=2).real.transpose(0, 2, 1)
    return out


def grid_rotation(n_angles: int, j: int, i: int, k: int) -> np.ndarray:
    """The rotation at index (beta j, alpha i, gamma k) of :func:`correlation_grid`."""
    n_beta = n_angles // 2
    return rotation_from_euler_zyz(2 * np.pi * i / n_angles, np.pi * (j + 0.5) / n_beta, 2 * np.pi * k / n_angles)


def inner_product(a: np.ndarray, b: np.ndarray, nlm: np.ndarray) -> np.ndarray:
    """Re sum over all n, l and m = -l..l of conj(a_nlm) b_nlm, of the last axis, for real
    maps stored with m >= 0 (m > 0 terms counted twice): the L2 inner product over the
    unit ball of the two expansions."""
    weight = np.where(np.asarray(nlm)[:, 2] == 0, 1.0, 2.0)
    return np.real(np.sum(np.conj(a) * b * weight, axis=-1))


def translate_moments(moments: np.ndarray, geometry: BallGeometry, order: int, shift: Sequence[float],
                      threads: int | None = None) -> np.ndarray:
    """Moments (V, K) of the maps translated by ``shift`` (x, y, z) in Å: g(x) = f(x - shift).

    Re-expansion, not an exact operator: the expansion is reconstructed on the voxel grid
    of ``geometry`` (zero outside the ball), shifted by a phase ramp in Fourier space
    (exact for the sampled, band-limited map; the box is periodic, so content pushed over
    a face re-enters on the other side) and decomposed again up to ``order``. What moves
    out of the ball is lost, and the result is the truncation of the shifted expansion,
    not the shifted truncation. The grid round trip decompose(reconstruct(Omega)) is not
    the identity (voxel sums are not exact integrals: about 2% at order 12 on a 32^3 box,
    0.4% at order 20 on 64^3), so the result is Omega + T(shift) - T(0), T being the
    round trip with the shift: Omega (to rounding) for a zero shift, and the round trip's own
    error cancels to first order. At order ~20 on a 64^3 box this costs about 0.2 s: a
    translation operator in Zernike space would couple every (n, l) with every other
    and cost more than this grid round trip.
    """
    return translate_with_derivatives(moments, geometry, order, shift, derivatives=0, threads=threads)[0]


#: (a, b) axes (0 = x, 1 = y, 2 = z) of the second derivatives, in the order returned
SECOND_DERIVATIVES = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def translate_with_derivatives(moments: np.ndarray, geometry: BallGeometry, order: int, shift: Sequence[float],
                               derivatives: int = 2, threads: int | None = None) -> np.ndarray:
    """Moments of the maps translated by ``shift`` (Å), as :func:`translate_moments`, and
    their derivatives with respect to the shift (per Å): an array (1 + 3 + 6, V, K) for
    ``derivatives`` = 2 (value; d/ds_x, d/ds_y, d/ds_z; the second derivatives in the
    order of :data:`SECOND_DERIVATIVES`), (1 + 3, V, K) for 1, (1, V, K) for 0.

    The value is Omega + T(shift) - T(0) (see :func:`translate_moments`); the
    derivatives are the moments of the derivative maps, -df/dx_a and d2f/dx_a dx_b
    of the shifted reconstruction, taken in Fourier space; so the Taylor model
    g(s + d) ~ g + d.grad g + d^T H d / 2 of the re-expansion costs one decomposition
    of up to 11 maps per volume.
    """
    from zernike3d.maths.transform import decompose, reconstruct

    moments = np.atleast_2d(moments)
    maps = reconstruct(moments, geometry, order, threads=threads)
    n = geometry.box
    # angular frequencies per Å along z, y, x (rfft along x)
    kz = 2 * np.pi * np.fft.fftfreq(n, d=geometry.voxel_size)[:, None, None]
    ky = 2 * np.pi * np.fft.fftfreq(n, d=geometry.voxel_size)[None, :, None]
    kx = 2 * np.pi * np.fft.rfftfreq(n, d=geometry.voxel_size)[None, None, :]
    k = (kx, ky, kz)
    sx, sy, sz = np.asarray(shift, dtype=np.float64)
    spectrum = np.fft.rfftn(maps, axes=(-3, -2, -1)) * np.exp(-1j * (kx * sx + ky * sy + kz * sz))
    # d/ds_a of exp(-i k.s) is -i k_a
    factors: list[Any] = [1.0, None]  # None: the unshifted map, T(0)
    if derivatives >= 1:
        factors += [-1j * k[a] for a in range(3)]
    if derivatives >= 2:
        factors += [-k[a] * k[b] for a, b in SECOND_DERIVATIVES]
    stack = np.stack([maps if f is None else np.fft.irfftn(spectrum * f, s=(n, n, n), axes=(-3, -2, -1)) for f in factors])
    volumes = moments.shape[0]
    out = decompose(stack.reshape(-1, n, n, n), geometry, order, threads=threads).reshape(len(factors), volumes, -1)
    out[0] += moments - out[1]  # Omega + T(shift) - T(0)
    return np.delete(out, 1, axis=0)


def _as_table(moments, nlm):
    """(V, K) moments, their order, and whether the input was one (K,) vector."""
    moments = np.asarray(moments, dtype=np.complex128)
    single = moments.ndim == 1
    moments = np.atleast_2d(moments)
    nlm = np.asarray(nlm)
    order = int(nlm[:, 0].max()) if nlm.size else 0
    if nlm.shape != (coefficient_count(order), 3) or not np.array_equal(nlm, _table(order)):
        raise ValueError("nlm must be the full (n, l, m) table of one order (zernike3d.maths.indexing.nlm_table)")
    if moments.shape[1] != nlm.shape[0]:
        raise ValueError(f"moments have {moments.shape[1]} columns, nlm has {nlm.shape[0]} rows")
    return moments, order, single


@lru_cache(maxsize=16)
def _table(order):
    return nlm_table(order)


@lru_cache(maxsize=16)
def _radial_groups(order):
    """For each radial index k = (n - l) / 2: (our columns, their positions in ducc0's
    a_lm layout (index m (2 lmax + 1 - m) / 2 + l), lmax = order - 2k)."""
    nlm = nlm_table(order)
    groups = []
    for k in range(order // 2 + 1):
        lmax = order - 2 * k
        columns = np.flatnonzero(nlm[:, 0] - nlm[:, 1] == 2 * k)
        l, m = nlm[columns, 1], nlm[columns, 2]
        groups.append((columns, m * (2 * lmax + 1 - m) // 2 + l, lmax))
    return tuple(groups)


def _ducc_rotate(alm, lmax, psi, theta, phi, threads):
    import ducc0

    return ducc0.sht.rotate_alm(alm, lmax, psi, theta, phi, nthreads=threads)
