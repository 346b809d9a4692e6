"""numba kernels of the transforms (CPU, multi-threaded). See transform.py for the maths.

Array layouts (one block of m values, m = m0 + j, j < mb):
  maps      (V, box, box * box)       a volume's z planes, flattened [y, x]
  phase     (n_points, mb) complex     exp(-i m phi) of each xy point
  ring_sums (n_pairs, V, 2, mb)        per (fold, ring) pair: [even, odd] fold of the
                                       +dz / -dz planes of sum_ring f * exp(-i m phi)
  shell_sums(n_shells, n_lm, V)        per shell: sum_pairs Pbar_lm(cos theta) * ring_sums;
                                       column l_start[l] + j holds (l, m): l-major, so the
                                       columns of one l are consecutive
"""

import numba
import numpy as np
from numba import prange


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


@numba.njit(parallel=True, cache=True, fastmath=True)
def orbit_ring_sums(maps, fold_plus, fold_minus, orbit_index, orbit_ring, pair_of, cos_w, sin_w, m0, out):
    """:func:`ring_sums` over xy orbits (see :class:`zernike3d.maths.geometry.GridTables`).

    ``out`` is the ring sums as a float64 view (n_pairs, V, 2, mb, 2); ``cos_w``, ``sin_w``
    (n_orbits, mb) are w cos(m phi), w sin(m phi) of each orbit's first point, with w its
    weight. With E = exp(-i m phi) and f1..f8 the orbit's 8 values (the order of
    ``orbit_index``), the orbit adds

        E (f1 + (-1)^m f4 + (-i)^m f6 + i^m f7) + conj(E) (f3 + (-1)^m f2 + (-i)^m f5 + i^m f8),

    which per class of m mod 4 takes two or four real products with eight real
    combinations of the f (:func:`_orbit_channels`), instead of eight complex ones.
    """
    n_vol = maps.shape[0]
    mb = cos_w.shape[1]
    for f in prange(fold_plus.size):
        plus = fold_plus[f]
        minus = fold_minus[f]
        values = np.empty((2, 8))
        channels = np.empty(8)
        for q in range(orbit_ring.size):
            pair = pair_of[f, orbit_ring[q]]
            if pair < 0:
                continue
            for v in range(n_vol):
                for k in range(8):
                    idx = orbit_index[q, k]
                    upper = maps[v, plus, idx] if plus >= 0 and idx >= 0 else 0.0
                    lower = maps[v, minus, idx] if minus >= 0 and idx >= 0 else 0.0
                    values[0, k] = upper + lower
                    values[1, k] = upper - lower
                for parity in range(2):
                    _orbit_channels(values[parity], channels)
                    target = out[pair, v, parity]
                    for cls in range(4):
                        for j in range((cls - m0) % 4, mb, 4):
                            c = cos_w[q, j]
                            s = sin_w[q, j]
                            if cls == 0:
                                target[j, 0] += c * channels[0]
                                target[j, 1] -= s * channels[1]
                            elif cls == 2:
                                target[j, 0] += c * channels[2]
                                target[j, 1] -= s * channels[3]
                            elif cls == 1:
                                target[j, 0] += c * channels[4] + s * channels[5]
                                target[j, 1] += c * channels[6] - s * channels[7]
                            else:
                                target[j, 0] += c * channels[4] - s * channels[5]
                                target[j, 1] -= c * channels[6] + s * channels[7]


@numba.njit(parallel=True, cache=True, fastmath=True)
def orbit_ring_sums_adjoint(ring_values, fold_plus, fold_minus, orbit_index, orbit_ring, pair_of, cos_w, sin_w, m0, out):
    """Adjoint of :func:`orbit_ring_sums` for a real map, as :func:`ring_sums_adjoint`:
    adds to out[v, plane, idx]. ``ring_values`` is a float64 view (n_pairs, V, 2, mb, 2)."""
    n_vol = out.shape[0]
    mb = cos_w.shape[1]
    for f in prange(fold_plus.size):
        plus = fold_plus[f]
        minus = fold_minus[f]
        values = np.empty((2, 8))
        channels = np.empty(8)
        for q in range(orbit_ring.size):
            pair = pair_of[f, orbit_ring[q]]
            if pair < 0:
                continue
            for v in range(n_vol):
                for parity in range(2):
                    source = ring_values[pair, v, parity]
                    channels[:] = 0.0
                    for cls in range(4):
                        for j in range((cls - m0) % 4, mb, 4):
                            w = 1.0 if m0 + j == 0 else 2.0
                            c = w * cos_w[q, j]
                            s = w * sin_w[q, j]
                            real = source[j, 0]
                            imag = source[j, 1]
                            if cls == 0:
                                channels[0] += c * real
                                channels[1] -= s * imag
                            elif cls == 2:
                                channels[2] += c * real
                                channels[3] -= s * imag
                            elif cls == 1:
                                channels[4] += c * real
                                channels[5] += s * real
                                channels[6] += c * imag
                                channels[7] -= s * imag
                            else:
                                channels[4] += c * real
                                channels[5] -= s * real
                                channels[6] -= c * imag
                                channels[7] -= s * imag
                    _orbit_channels_adjoint(channels, values[parity])
                for k in range(8):
                    idx = orbit_index[q, k]
                    if idx < 0:
                        continue
                    if plus >= 0:
                        out[v, plus, idx] += values[0, k] + values[1, k]
                    if minus >= 0:
                        out[v, minus, idx] += values[0, k] - values[1, k]


@numba.njit(cache=True, fastmath=True)
def _orbit_channels(f, channels):
    """The eight real combinations of an orbit's values f[0..7] (f1..f8 of
    :func:`orbit_ring_sums`) that its ring sums need, by class of m mod 4:

    0: E0 = s14 + s67 + s23 + s58,  F0 = s14 + s67 - s23 - s58   (re += c E0, im -= s F0)
    2: E2 = s14 - s67 + s23 - s58,  F2 = s14 - s67 - s23 + s58   (re += c E2, im -= s F2)
    1, 3: X = d14 + d32, Y = d76 - d85, U = d76 + d85, W = d14 - d32
       (re += c X +- s Y, im += +-c U - s W; upper signs for m = 1 mod 4)

    with sij = fi + fj and dij = fi - fj.
    """
    s14 = f[0] + f[3]
    s67 = f[5] + f[6]
    s23 = f[1] + f[2]
    s58 = f[4] + f[7]
    d14 = f[0] - f[3]
    d32 = f[2] - f[1]
    d76 = f[6] - f[5]
    d85 = f[7] - f[4]
    channels[0] = s14 + s67 + s23 + s58
    channels[1] = s14 + s67 - s23 - s58
    channels[2] = s14 - s67 + s23 - s58
    channels[3] = s14 - s67 - s23 + s58
    channels[4] = d14 + d32
    channels[5] = d76 - d85
    channels[6] = d76 + d85
    channels[7] = d14 - d32


@numba.njit(cache=True, fastmath=True)
def _orbit_channels_adjoint(channels, f):
    """Transpose of :func:`_orbit_channels`: f[0..7] from the eight channel values."""
    e0, f0, e2, f2, x, y, u, w = channels[0], channels[1], channels[2], channels[3], channels[4], channels[5], channels[6], channels[7]
    f[0] = e0 + f0 + e2 + f2 + x + w
    f[1] = e0 - f0 + e2 - f2 - x + w
    f[2] = e0 - f0 + e2 - f2 + x - w
    f[3] = e0 + f0 + e2 + f2 - x - w
    f[4] = e0 - f0 - e2 + f2 + y - u
    f[5] = e0 + f0 - e2 - f2 - y - u
    f[6] = e0 + f0 - e2 - f2 + y + u
    f[7] = e0 - f0 - e2 + f2 - y + u


@numba.njit(parallel=True, cache=True, fastmath=True)
def shell_transform(ring_values, shell_values, shell_start, chunk_start, pair_cos, pair_sin, m0, lmax, a, b, diag, l_start, adjoint):
    """The polar step and its adjoint, over the pairs of each shell.

    forward: S[s, l, part, v, j] += sum_{pairs p in s} Pbar_lm(cos theta_p) part(ring_values[p, v, (l+m)%2, j])
    adjoint: ring_values[p, v, (l+m)%2, j] += sum_l Pbar_lm(cos theta_p) S[s, l, part, v, j]

    with m = m0 + j, part = real | imaginary, ``ring_values`` passed as a float64 view
    (n_pairs, V, 2, mb, 2), and S the shell sums (n_shells, 2 V n_lm) float64, where the
    block of l starts at column 2 V l_start[l] and holds [real, imag] x V x its n_m
    values of m (see :meth:`zernike3d.maths.transform._Plan.columns`).

    Threads take chunks of whole shells (``chunk_start``: shell offsets, see
    :func:`shell_chunks`), so each shell's row has one writer. For each pair the
    Legendre recurrence runs in l, and for each l across all the m of the block at once:
    the m are independent, so the innermost loops run over m in SIMD lanes on unit-stride
    rows (the pair's ring values are first copied into rows ordered by the parity of l).
    fastmath lets LLVM fuse multiply-adds and vectorise; each sum still adds the pairs in
    their order.
    """
    n_vol = ring_values.shape[1]
    mb = ring_values.shape[3]
    width = 2 * n_vol
    norm = 1.0 / np.sqrt(4.0 * np.pi)
    for c in prange(chunk_start.size - 1):
        pmm = np.empty(mb)
        current = np.empty(mb)
        older = np.empty(mb)
        rows = np.empty((2, width, mb))  # [parity of l, part * V + v, j]
        for s in range(chunk_start[c], chunk_start[c + 1]):
            out = shell_values[s]
            for p in range(shell_start[s], shell_start[s + 1]):
                ct = pair_cos[p]
                st = pair_sin[p]
                value = norm
                for m in range(1, m0 + 1):
                    value *= diag[m] * st
                for j in range(mb):
                    if j > 0:
                        value *= diag[m0 + j] * st
                    pmm[j] = value
                for k in range(2):
                    for part in range(2):
                        for v in range(n_vol):
                            row = rows[k, part * n_vol + v]
                            for j in range(mb):
                                row[j] = 0.0 if adjoint else ring_values[p, v, (k + m0 + j) & 1, j, part]
                for l in range(m0, lmax + 1):
                    n_old = min(l - m0, mb)  # the m < l, continued by the recurrence
                    a_l = a[l, m0:]
                    b_l = b[l, m0:]
                    for j in range(n_old):
                        value = a_l[j] * (ct * current[j] - b_l[j] * older[j])
                        older[j] = current[j]
                        current[j] = value
                    if n_old < mb:  # m = l starts
                        current[n_old] = pmm[n_old]
                        older[n_old] = 0.0
                    n_m = min(n_old + 1, mb)
                    base = width * l_start[l]
                    k = l & 1
                    for r in range(width):
                        row = rows[k, r]
                        block = out[base + r * n_m : base + (r + 1) * n_m]
                        if adjoint:
                            for j in range(n_m):
                                row[j] += current[j] * block[j]
                        else:
                            for j in range(n_m):
                                block[j] += current[j] * row[j]
                if adjoint:
                    for k in range(2):
                        for part in range(2):
                            for v in range(n_vol):
                                row = rows[k, part * n_vol + v]
                                for j in range(mb):
                                    ring_values[p, v, (k + m0 + j) & 1, j, part] += row[j]


def shell_chunks(shell_start, pairs_per_chunk=512):
    """Shell offsets cutting the shells into runs of about ``pairs_per_chunk`` pairs (a
    shell is never split): the units of work of :func:`shell_transform`."""
    shell_start = np.asarray(shell_start)
    targets = np.arange(0, shell_start[-1], pairs_per_chunk)
    cuts = np.unique(np.searchsorted(shell_start, targets, side="left"))
    return np.unique(np.concatenate([cuts, [shell_start.size - 1]])).astype(np.int64)
