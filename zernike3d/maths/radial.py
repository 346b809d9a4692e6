"""Orthonormal radial Zernike polynomials on the unit ball.

    R_nl(r) = sqrt(2n + 3) * r^l * P_k^(0, l + 1/2)(2 r^2 - 1),   k = (n - l) / 2,

with P_k^(alpha, beta) the Jacobi polynomials. The factor sqrt(2n+3) makes
``integral_0^1 R_nl(r)^2 r^2 dr = 1``, so that Z_nlm = R_nl Y_lm (Y_lm orthonormal on the
sphere) satisfies ``integral_ball |Z_nlm|^2 dV = 1``. The Jacobi polynomials are evaluated
by their three-term recurrence in k (stable for x in [-1, 1]), which is accurate to well
beyond order 200 in float64.
"""

import numpy as np


def radial_polynomials_for_l(order: int, l: int, r: np.ndarray) -> np.ndarray:
    """R_nl(r) for n = l, l+2, ..., <= order; shape (len(ns), len(r)), float64.

    ``r`` is the radius in unit-ball units (0 <= r <= 1).
    """
    r = np.asarray(r, dtype=np.float64)
    kmax = (order - l) // 2
    x = 2.0 * r * r - 1.0
    rl = r**l
    beta = l + 0.5
    out = np.empty((kmax + 1, r.size), dtype=np.float64)
    p_prev = np.ones_like(r)
    out[0] = p_prev
    if kmax >= 1:
        p = 1.0 + (beta + 2.0) * (x - 1.0) / 2.0
        out[1] = p
        for k in range(2, kmax + 1):
            s = 2 * k + beta
            c0 = 2.0 * k * (k + beta) * (s - 2.0)
            c1 = (s - 1.0) * (s * (s - 2.0) * x - beta * beta)
            c2 = 2.0 * (k - 1.0) * (k - 1.0 + beta) * s
            p_prev, p = p, (c1 * p - c2 * p_prev) / c0
            out[k] = p
    ns = l + 2 * np.arange(kmax + 1)
    return out * rl * np.sqrt(2.0 * ns + 3.0)[:, None]


def radial_polynomials(order: int, r: np.ndarray) -> np.ndarray:
    """R_nl(r) for every (n, l) of :func:`zernike3d.maths.indexing.nl_table`; (n_nl, len(r))."""
    from zernike3d.maths.indexing import nl_table

    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    nl = nl_table(order)
    # filled in place, one l at a time: the table is the only large array (no second copy)
    table = np.empty((len(nl), r.size), dtype=np.float64)
    for l in range(order + 1):
        rows = np.flatnonzero(nl[:, 1] == l)  # n = l, l + 2, ... in nl_table order
        table[rows[np.argsort(nl[rows, 0])]] = radial_polynomials_for_l(order, l, r)
    return table
