"""numba kernels of the transforms (CPU, multi-threaded). See transform.py for the maths.

Array layouts (one block of m values, m = m0 + j, j < mb):
  maps      (V, box, box * box)       a volume's z planes, flattened [y, x]
  phase     (n_points, mb) complex     exp(-i m phi) of each xy point
  ring_sums (n_pairs, V, 2, mb)        per (fold, ring) pair: [even, odd] fold of the
                                       +dz / -dz planes of sum_ring f * exp(-i m phi)
  shell_sums(n_shells, n_lm, V)        per shell: sum_pairs Pbar_lm(cos theta) * ring_sums;
                                       column lm_offset[j] + (l - m) holds (l, m)
"""

import numba
import numpy as np
from numba import prange

from zernike3d.maths.legendre import legendre_column


@numba.njit(parallel=True, cache=True)
def ring_sums(maps, fold_plus, fold_minus, point_index, point_ring, pair_of, phase, out):
    """out[pair, v, 0|1, j] = sum over the pair's ring of (f(+dz) +|- f(-dz)) phase[., j]."""
    n_folds = fold_plus.size
    n_vol = maps.shape[0]
    mb = phase.shape[1]
    for f in prange(n_folds):
        plus = fold_plus[f]
        minus = fold_minus[f]
        for q in range(point_index.size):
            pair = pair_of[f, point_ring[q]]
            if pair < 0:
                continue
            idx = point_index[q]
            for v in range(n_vol):
                a = maps[v, plus, idx] if plus >= 0 else 0.0
                b = maps[v, minus, idx] if minus >= 0 else 0.0
                even = a + b
                odd = a - b
                for j in range(mb):
                    e = phase[q, j]
                    out[pair, v, 0, j] += even * e
                    out[pair, v, 1, j] += odd * e


@numba.njit(parallel=True, cache=True)
def ring_sums_adjoint(ring_values, fold_plus, fold_minus, point_index, point_ring, pair_of, phase, m0, out):
    """Adjoint of :func:`ring_sums` for a real map: adds to out[v, plane, idx]

    Re sum_j w_m conj(phase[q, j]) (ring_values[pair, v, 0, j] +/- ring_values[pair, v, 1, j])
    with w_0 = 1 and w_m = 2 (the m < 0 terms of a real map), + for the +dz plane.
    """
    n_folds = fold_plus.size
    n_vol = out.shape[0]
    mb = phase.shape[1]
    for f in prange(n_folds):
        plus = fold_plus[f]
        minus = fold_minus[f]
        for q in range(point_index.size):
            pair = pair_of[f, point_ring[q]]
            if pair < 0:
                continue
            idx = point_index[q]
            for v in range(n_vol):
                even = 0.0
                odd = 0.0
                for j in range(mb):
                    w = 1.0 if m0 + j == 0 else 2.0
                    e = phase[q, j]
                    ev = ring_values[pair, v, 0, j]
                    od = ring_values[pair, v, 1, j]
                    even += w * (e.real * ev.real + e.imag * ev.imag)
                    odd += w * (e.real * od.real + e.imag * od.imag)
                if plus >= 0:
                    out[v, plus, idx] += even + odd
                if minus >= 0:
                    out[v, minus, idx] += even - odd


@numba.njit(cache=True)
def _diagonal_start(st, m0, diag):
    """Pbar_{m0,m0}(theta) from Pbar_00 by the diagonal recurrence."""
    pmm = 1.0 / np.sqrt(4.0 * np.pi)
    for m in range(1, m0 + 1):
        pmm *= diag[m] * st
    return pmm


@numba.njit(parallel=True, cache=True)
def shell_transform(ring_values, shell_values, shell_start, pair_cos, pair_sin, m0, lmax, a, b, diag, lm_offset, adjoint):
    """The polar step and its adjoint, over the pairs of each shell.

    forward: shell_values[s, lm, v] += sum_{pairs p in s} Pbar_lm(cos theta_p) ring_values[p, v, (l+m)%2, j]
    adjoint: ring_values[p, v, (l+m)%2, j] += sum_l Pbar_lm(cos theta_p) shell_values[s, lm, v]
    """
    n_shells = shell_start.size - 1
    n_vol = ring_values.shape[1]
    mb = ring_values.shape[3]
    for s in prange(n_shells):
        column = np.empty(lmax + 1)
        for p in range(shell_start[s], shell_start[s + 1]):
            st = pair_sin[p]
            pmm = _diagonal_start(st, m0, diag)
            for j in range(mb):
                m = m0 + j
                if m > lmax:
                    break
                if j > 0:
                    pmm *= diag[m] * st
                legendre_column(pair_cos[p], pmm, m, lmax, a, b, column)
                base = lm_offset[j] - m
                for l in range(m, lmax + 1):
                    plm = column[l - m]
                    parity = (l + m) & 1
                    if adjoint:
                        for v in range(n_vol):
                            ring_values[p, v, parity, j] += plm * shell_values[s, base + l, v]
                    else:
                        for v in range(n_vol):
                            shell_values[s, base + l, v] += plm * ring_values[p, v, parity, j]
