"""Normalised associated Legendre functions, the polar part of orthonormal Y_lm.

    Y_lm(theta, phi) = Pbar_lm(cos theta) * exp(i m phi),   m >= 0,

with Pbar_lm including the Condon-Shortley phase (-1)^m and the normalisation that makes
Y_lm orthonormal on the unit sphere. They are computed by the standard stable
recurrences:

    Pbar_00 = 1 / sqrt(4 pi)
    Pbar_mm = -sqrt((2m + 1) / (2m)) sin(theta) Pbar_{m-1,m-1}
    Pbar_lm = a_lm (cos(theta) Pbar_{l-1,m} - b_lm Pbar_{l-2,m}),   l > m
    a_lm = sqrt((4l^2 - 1) / (l^2 - m^2)),  b_lm = sqrt(((l-1)^2 - m^2) / (4(l-1)^2 - 1))

Pbar_mm ~ sin(theta)^m underflows to 0 for m in the hundreds near the poles, where the
true value is negligible against the other terms; this is accurate to well beyond l = 200.
"""

import numpy as np


def recurrence_coefficients(lmax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, c) arrays: a[l, m], b[l, m] of the l-recurrence and c[m] of the diagonal."""
    l = np.arange(lmax + 1, dtype=np.float64)[:, None]
    m = np.arange(lmax + 1, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
        b = np.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
    valid = l > m
    a = np.where(valid, a, 0.0)
    b = np.where(valid & (l > m + 1), b, 0.0)
    mm = np.arange(lmax + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        c = np.where(mm > 0, -np.sqrt((2.0 * mm + 1.0) / np.maximum(2.0 * mm, 1.0)), 1.0)
    return np.ascontiguousarray(a), np.ascontiguousarray(b), c


def normalised_legendre(lmax: int, cos_theta: np.ndarray | float) -> np.ndarray:
    """Pbar_lm(cos_theta) for 0 <= m <= l <= lmax; shape (lmax+1, lmax+1, n), [l, m, point].

    A NumPy-facing layout of :func:`zernike3d.maths._kernels.legendre_table` (the
    recurrence the transforms use, a numba kernel) for tests and small problems; entries
    with m > l are 0.
    """
    from zernike3d.maths._kernels import legendre_table

    ct = np.atleast_1d(np.asarray(cos_theta, dtype=np.float64))
    st = np.sqrt(np.clip(1.0 - ct * ct, 0.0, None))
    table = np.empty((ct.size, (lmax + 1) * (lmax + 2) // 2))
    legendre_table(ct, st, lmax, *recurrence_coefficients(lmax), table)
    l, m = np.tril_indices(lmax + 1)
    out = np.zeros((lmax + 1, lmax + 1, ct.size))
    out[l, m] = table.T
    return out
