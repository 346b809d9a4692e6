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


@numba.njit(parallel=True, cache=True)
def shell_transform(ring_values, shell_values, shell_start, chunk_start, pair_cos, pair_sin, m0, lmax, a, b, diag, lm_offset, adjoint):
    """The polar step and its adjoint, over the pairs of each shell.

    forward: shell_values[s, lm, v] += sum_{pairs p in s} Pbar_lm(cos theta_p) ring_values[p, v, (l+m)%2, j]
    adjoint: ring_values[p, v, (l+m)%2, j] += sum_l Pbar_lm(cos theta_p) shell_values[s, lm, v]

    Threads take chunks of whole shells (``chunk_start``: shell offsets, see
    :func:`shell_chunks`). Within a chunk the l-recurrence of Pbar_lm runs for all its
    pairs at once: the recurrence is sequential in l but the pairs are independent, so the
    innermost loops run over pairs (SIMD lanes, no dependency chain), on the chunk's ring
    values copied once per m into contiguous real/imaginary rows.
    """
    n_vol = ring_values.shape[1]
    mb = ring_values.shape[3]
    norm = 1.0 / np.sqrt(4.0 * np.pi)
    for c in prange(chunk_start.size - 1):
        s0 = chunk_start[c]
        s1 = chunk_start[c + 1]
        p0 = shell_start[s0]
        n = shell_start[s1] - p0
        ct = pair_cos[p0 : p0 + n]
        st = pair_sin[p0 : p0 + n]
        pmm = np.empty(n)
        older = np.empty(n)
        current = np.empty(n)
        real = np.empty((2, n_vol, n))
        imag = np.empty((2, n_vol, n))
        for i in range(n):
            pmm[i] = norm
        for m in range(1, m0 + 1):
            for i in range(n):
                pmm[i] *= diag[m] * st[i]
        for j in range(mb):
            m = m0 + j
            if m > lmax:
                break
            if j > 0:
                for i in range(n):
                    pmm[i] *= diag[m] * st[i]
            for parity in range(2):
                for v in range(n_vol):
                    for i in range(n):
                        if adjoint:
                            real[parity, v, i] = 0.0
                            imag[parity, v, i] = 0.0
                        else:
                            value = ring_values[p0 + i, v, parity, j]
                            real[parity, v, i] = value.real
                            imag[parity, v, i] = value.imag
            for i in range(n):
                current[i] = pmm[i]
                older[i] = 0.0
            base = lm_offset[j] - m
            for l in range(m, lmax + 1):
                parity = (l + m) & 1
                if l > m:
                    al = a[l, m]
                    bl = b[l, m]
                    for i in range(n):
                        value = al * (ct[i] * current[i] - bl * older[i])
                        older[i] = current[i]
                        current[i] = value
                for s in range(s0, s1):
                    q0 = shell_start[s] - p0
                    q1 = shell_start[s + 1] - p0
                    for v in range(n_vol):
                        if adjoint:
                            wr = shell_values[s, base + l, v].real
                            wi = shell_values[s, base + l, v].imag
                            for i in range(q0, q1):
                                real[parity, v, i] += current[i] * wr
                                imag[parity, v, i] += current[i] * wi
                        else:
                            sr = 0.0
                            si = 0.0
                            for i in range(q0, q1):
                                sr += current[i] * real[parity, v, i]
                                si += current[i] * imag[parity, v, i]
                            shell_values[s, base + l, v] += complex(sr, si)
            if adjoint:
                for i in range(n):
                    for v in range(n_vol):
                        for parity in range(2):
                            ring_values[p0 + i, v, parity, j] += complex(real[parity, v, i], imag[parity, v, i])


def shell_chunks(shell_start, pairs_per_chunk=512):
    """Shell offsets cutting the shells into runs of about ``pairs_per_chunk`` pairs (a
    shell is never split): the units of work of :func:`shell_transform`."""
    shell_start = np.asarray(shell_start)
    targets = np.arange(0, shell_start[-1], pairs_per_chunk)
    cuts = np.unique(np.searchsorted(shell_start, targets, side="left"))
    return np.unique(np.concatenate([cuts, [shell_start.size - 1]])).astype(np.int64)
