"""numba kernels of the transforms (CPU, multi-threaded). See transform.py for the maths.

Array layouts (one block of m values, m = m0 + j, j < mb):
  maps      (V, box, box * box)       a volume's z planes, flattened [y, x]
  phase     (n_points, mb) complex     exp(-i m phi) of each xy point
  ring_sums (n_pairs, V, 2, mb)        per (fold, ring) pair: [even, odd] fold of the
                                       +dz / -dz planes of sum_ring f * exp(-i m phi)
                                       (only without xy orbits; with them the polar step
                                       computes each pair's from the channels)
  channels  (folds, n_orbits, V, 2, 8) per (fold, xy orbit): eight real combinations of
                                       its [even, odd] folded values (_orbit_channels)
  shell_sums(n_shells, 2 V n_lm)       per shell: sum_pairs Pbar_lm(cos theta) * ring_sums,
                                       real; l-major blocks of [real, imag] x V x m, so
                                       the columns of one l are consecutive
  table     (n_pairs, n_lm)            Pbar_lm(cos theta) of each pair, (l, m) l-major over
                                       every m (one map at low order, legendre_table)
"""

import numba
import numpy as np
from numba import prange


@numba.njit(parallel=True, cache=True)
def legendre_table(cos_theta: np.ndarray, sin_theta: np.ndarray, lmax: int, a: np.ndarray, b: np.ndarray,
                   diag: np.ndarray, out: np.ndarray) -> None:
    """Fill out[p, l (l + 1) / 2 + m] with Pbar_lm(cos_theta[p]) for 0 <= m <= l <= lmax
    (l-major, m fastest), with (a, b, diag) from
    :func:`zernike3d.maths.legendre.recurrence_coefficients`;
    ``sin_theta`` >= 0."""
    norm = 1.0 / np.sqrt(4.0 * np.pi)
    for p in numba.prange(cos_theta.size):
        ct = cos_theta[p]
        pmm = norm
        for m in range(lmax + 1):
            if m > 0:
                pmm *= diag[m] * sin_theta[p]
            older = 0.0
            current = pmm
            out[p, m * (m + 1) // 2 + m] = current
            for l in range(m + 1, lmax + 1):
                value = a[l, m] * (ct * current - b[l, m] * older)
                out[p, l * (l + 1) // 2 + m] = value
                older = current
                current = value


@numba.njit(parallel=True, cache=True)
def ring_sums(maps: np.ndarray, fold_plus: np.ndarray, fold_minus: np.ndarray, point_index: np.ndarray,
              point_ring: np.ndarray, pair_of: np.ndarray, phase: np.ndarray, out: np.ndarray) -> None:
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
def ring_sums_adjoint(ring_values: np.ndarray, fold_plus: np.ndarray, fold_minus: np.ndarray, point_index: np.ndarray,
                      point_ring: np.ndarray, pair_of: np.ndarray, phase: np.ndarray, m0: int, out: np.ndarray) -> None:
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
def orbit_channels(maps: np.ndarray, fold_plus: np.ndarray, fold_minus: np.ndarray, orbit_index: np.ndarray,
                   fold_start: int, out: np.ndarray) -> None:
    """out[fold - fold_start, orbit, v, parity, :] = the eight channels
    (:func:`_orbit_channels`) of the orbit's values in the even (parity 0: f(+dz) + f(-dz))
    and odd (1: f(+dz) - f(-dz)) fold of the map, for the folds fold_start ..
    fold_start + len(out) - 1; points beyond the box and missing planes read 0."""
    n_vol = maps.shape[0]
    for g in prange(out.shape[0]):
        f = fold_start + g
        plus = fold_plus[f]
        minus = fold_minus[f]
        values = np.empty((2, 8))
        for q in range(orbit_index.shape[0]):
            for v in range(n_vol):
                _fold_orbit(maps[v], plus, minus, orbit_index[q], values, out[g, q, v])


@numba.njit(cache=True, fastmath=True)
def _fold_orbit(planes, plus, minus, index, values, channels):
    """channels[parity, :] = the eight channels (:func:`_orbit_channels`) of the orbit's
    points ``index`` (-1: beyond the box) in the even (parity 0) and odd fold of planes
    ``plus`` and ``minus`` (-1: missing) of one map ``planes`` (box, box * box);
    ``values`` (2, 8) is scratch."""
    for k in range(8):
        idx = index[k]
        upper = planes[plus, idx] if plus >= 0 and idx >= 0 else 0.0
        lower = planes[minus, idx] if minus >= 0 and idx >= 0 else 0.0
        values[0, k] = upper + lower
        values[1, k] = upper - lower
    _orbit_channels(values[0], channels[0])
    _orbit_channels(values[1], channels[1])


@numba.njit(parallel=True, cache=True, fastmath=True)
def orbit_channels_adjoint(channels: np.ndarray, fold_plus: np.ndarray, fold_minus: np.ndarray, orbit_index: np.ndarray,
                           fold_start: int, out: np.ndarray) -> None:
    """Adjoint of :func:`orbit_channels`: adds to out[v, plane, idx]."""
    n_vol = out.shape[0]
    for g in prange(channels.shape[0]):
        f = fold_start + g
        plus = fold_plus[f]
        minus = fold_minus[f]
        values = np.empty((2, 8))
        for q in range(orbit_index.shape[0]):
            for v in range(n_vol):
                _orbit_channels_adjoint(channels[g, q, v, 0], values[0])
                _orbit_channels_adjoint(channels[g, q, v, 1], values[1])
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
    :func:`_add_orbit_ring_sums`) that its ring sums need, with sij = fi + fj, dij = fi - fj:

    even m: P = s14 + s23, Q = s67 + s58, R = s14 - s23, T = s67 - s58
    odd m:  X = d14 + d32, Y = d76 - d85, U = d76 + d85, W = d14 - d32
    """
    s14 = f[0] + f[3]
    s67 = f[5] + f[6]
    s23 = f[1] + f[2]
    s58 = f[4] + f[7]
    d14 = f[0] - f[3]
    d32 = f[2] - f[1]
    d76 = f[6] - f[5]
    d85 = f[7] - f[4]
    channels[0] = s14 + s23
    channels[1] = s67 + s58
    channels[2] = s14 - s23
    channels[3] = s67 - s58
    channels[4] = d14 + d32
    channels[5] = d76 - d85
    channels[6] = d76 + d85
    channels[7] = d14 - d32


@numba.njit(cache=True, fastmath=True)
def _orbit_channels_adjoint(channels, f):
    """Transpose of :func:`_orbit_channels`: f[0..7] from the eight channel values."""
    p, q, r, t, x, y, u, w = channels[0], channels[1], channels[2], channels[3], channels[4], channels[5], channels[6], channels[7]
    f[0] = p + r + x + w
    f[1] = p - r - x + w
    f[2] = p - r + x - w
    f[3] = p + r - x - w
    f[4] = q - t + y - u
    f[5] = q + t - y - u
    f[6] = q + t + y + u
    f[7] = q - t - y + u


@numba.njit(parallel=True, cache=True, fastmath=True)
def shell_transform(ring_values: np.ndarray, channels: np.ndarray, fold_start: int, shell_values: np.ndarray,
                    shell_first: np.ndarray, shell_start: np.ndarray, chunk_start: np.ndarray, pair_cos: np.ndarray,
                    pair_sin: np.ndarray, pair_fold: np.ndarray, pair_ring: np.ndarray, ring_orbits: np.ndarray,
                    phase: np.ndarray, m0: int, lmax: int, a: np.ndarray, b: np.ndarray, diag: np.ndarray,
                    l_start: np.ndarray, adjoint: bool) -> None:
    """The polar step and its adjoint, over the pairs of each shell.

    forward: S[s, l, part, v, j] += sum_{pairs p in s} Pbar_lm(cos theta_p) part(R[p, v, (l+m)%2, j])
    adjoint: R[p, v, (l+m)%2, j] += sum_l Pbar_lm(cos theta_p) S[s, l, part, v, j]

    with m = m0 + j, part = real | imaginary, S the shell sums (n_shells, 2 V n_lm)
    float64, whose block of l starts at column 2 V l_start[l] and holds [real, imag] x V x
    its n_m values of m (see :meth:`zernike3d.maths.transform._BlockLayout.columns`), and R the
    ring sums of the pair, [even, odd] fold, taken from one of two sources:

    * ``ring_values``, a float64 view (n_pairs, V, 2, mb, 2) of :func:`ring_sums`, when
      ``channels`` is empty (the centre is off the voxel lattice in x or y);
    * else computed here from the pair's xy orbits, orbits ``ring_orbits[r] ..
      ring_orbits[r + 1] - 1`` of its ring r at its fold: ``channels`` (folds,
      n_orbits, V, 2, 8) of the folds fold_start .. fold_start + len(channels) - 1 from
      :func:`orbit_channels` (only the pairs of those folds are visited), and ``phase``
      (n_orbits, 4, mb), each orbit's table of :func:`_add_orbit_ring_sums`. The ring sums of a block then never exist as an
      array; in the adjoint, ``channels`` accumulates the adjoint channels, which
      :func:`orbit_channels_adjoint` unfolds. ``ring_values`` must then have shape
      (0, V, 2, mb, 2).

    Threads take chunks of whole shells (``chunk_start``: shell offsets, see
    :func:`shell_chunks`; the chunks of one block of shells), so each shell's row, and each
    (fold, orbit) of ``channels``, has one writer; row s of S is shell_values[s -
    shell_first]. For each pair the Legendre recurrence runs in l, and for each l across
    all the m of the block at once: the m are independent, so the innermost loops run over
    m in SIMD lanes on unit-stride rows (the pair's ring sums are first put in rows
    ordered by the parity of l). fastmath lets LLVM fuse multiply-adds and vectorise;
    each sum still adds the pairs in their order.
    """
    n_vol = ring_values.shape[1]
    mb = ring_values.shape[3]
    width = 2 * n_vol
    from_orbits = channels.shape[0] > 0
    fold_stop = fold_start + channels.shape[0]
    norm = 1.0 / np.sqrt(4.0 * np.pi)
    for c in prange(chunk_start.size - 1):
        pmm = np.empty(mb)
        current = np.empty(mb)
        older = np.empty(mb)
        rows = np.empty((2, width, mb))  # [parity of l, part * V + v, j]
        for s in range(chunk_start[c], chunk_start[c + 1]):
            out = shell_values[s - shell_first]
            for p in range(shell_start[s], shell_start[s + 1]):
                f = pair_fold[p] - fold_start
                if from_orbits and (f < 0 or pair_fold[p] >= fold_stop):
                    continue
                ct = pair_cos[p]
                st = pair_sin[p]
                value = norm
                for m in range(1, m0 + 1):
                    value *= diag[m] * st
                for j in range(mb):
                    if j > 0:
                        value *= diag[m0 + j] * st
                    pmm[j] = value
                if adjoint or from_orbits:
                    rows[:] = 0.0
                if from_orbits and not adjoint:
                    for q in range(ring_orbits[pair_ring[p]], ring_orbits[pair_ring[p] + 1]):
                        for v in range(n_vol):
                            _add_orbit_ring_sums(channels[f, q, v], phase[q], m0, rows, v, n_vol)
                elif not adjoint:
                    for k in range(2):
                        for part in range(2):
                            for v in range(n_vol):
                                row = rows[k, part * n_vol + v]
                                for j in range(mb):
                                    row[j] = ring_values[p, v, (k + m0 + j) & 1, j, part]
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
                if adjoint and from_orbits:
                    for q in range(ring_orbits[pair_ring[p]], ring_orbits[pair_ring[p] + 1]):
                        for v in range(n_vol):
                            for parity in range(2):
                                _add_orbit_channels(rows, v, n_vol, parity, phase[q], m0, channels[f, q, v, parity])
                elif adjoint:
                    for k in range(2):
                        for part in range(2):
                            for v in range(n_vol):
                                row = rows[k, part * n_vol + v]
                                for j in range(mb):
                                    ring_values[p, v, (k + m0 + j) & 1, j, part] += row[j]


@numba.njit(parallel=True, cache=True, fastmath=True)
def shell_sums_from_table(planes: np.ndarray, fold_plus: np.ndarray, fold_minus: np.ndarray, orbit_index: np.ndarray,
                          shell_values: np.ndarray, shell_first: np.ndarray, shell_start: np.ndarray,
                          chunk_start: np.ndarray, pair_fold: np.ndarray, pair_ring: np.ndarray,
                          ring_orbits: np.ndarray, phase: np.ndarray, table: np.ndarray, gather: np.ndarray,
                          columns: np.ndarray) -> None:
    """The forward polar step of one map (V = 1) with every m, from a table of Pbar_lm:

        S[s, column of (l, m, part)] += sum_{pairs p in s} table[p, i] part(R[p, (l+m)%2, m])

    with i = l (l + 1) / 2 + m (``table`` from :func:`legendre_table`
    at the pairs' polar angles) and the ring sums R computed from the xy orbits as in
    :func:`shell_transform`, each orbit's channels folded here from the map ``planes``
    (box, box * box) (each (fold, orbit) belongs to one pair), ``phase`` (n_orbits, 4,
    order + 1). For single maps at low order, where :func:`shell_transform`
    spends its time on per-(pair, l) loop overheads: here each pair costs one loop over
    its (l, m) per part, reading its ring sum through ``gather`` (the index of (l, m) in the
    pair's rows (parity of l, part, m), part 0) and adding to a buffer per shell, which goes
    to the shell's row at ``columns`` (the (part, i) -> column map of
    :meth:`zernike3d.maths.transform._BlockLayout.columns`) once per shell.
    """
    mb = phase.shape[2]
    n_lm = table.shape[1]
    for c in prange(chunk_start.size - 1):
        rows = np.empty((2, 2, mb))  # [parity of l, part, m]
        flat = rows.reshape(4 * mb)
        buffer = np.empty(2 * n_lm)  # [part, i]
        scratch = np.empty((2, 8))
        channels = np.empty((2, 8))
        for s in range(chunk_start[c], chunk_start[c + 1]):
            buffer[:] = 0.0
            for p in range(shell_start[s], shell_start[s + 1]):
                f = pair_fold[p]
                rows[:] = 0.0
                for q in range(ring_orbits[pair_ring[p]], ring_orbits[pair_ring[p] + 1]):
                    _fold_orbit(planes, fold_plus[f], fold_minus[f], orbit_index[q], scratch, channels)
                    _add_orbit_ring_sums(channels, phase[q], 0, rows, 0, 1)
                legendre = table[p]
                for part in range(2):
                    start = part * n_lm
                    offset = part * mb
                    for i in range(n_lm):
                        buffer[start + i] += legendre[i] * flat[gather[i] + offset]
            out = shell_values[s - shell_first]
            for k in range(2 * n_lm):
                out[columns[k]] += buffer[k]


@numba.njit(cache=True, fastmath=True)
def _add_orbit_ring_sums(channels, table, m0, rows, v, n_vol):
    """Add one orbit's ring sums, both fold parities, to rows[(parity + m) % 2, part * V + v, j]
    (the row of the parity of l, as l + m = parity mod 2), m = m0 + j.

    With E = exp(-i m phi), the orbit's 8 values f1..f8 (the order of ``orbit_index``) in
    one fold add

        E (f1 + (-1)^m f4 + (-i)^m f6 + i^m f7) + conj(E) (f3 + (-1)^m f2 + (-i)^m f5 + i^m f8),

    which is, with that fold's channels (``channels[parity]``, :func:`_orbit_channels`)
    and the orbit's ``table`` (4, mb) from :meth:`zernike3d.maths.transform._BlockLayout.orbit_phase`:

        even m: real = t0 P + t1 Q, imag = t2 R + t3 T
        odd m:  real = t0 X + t1 Y, imag = t2 U + t3 W

    four real products per m and fold instead of eight complex ones. One pass over m:
    at low orders the loop overheads, not the products, cost the time.
    """
    mb = table.shape[1]
    for j in range(mb):
        half = (m0 + j) & 1  # 0: even m, P Q R T; 1: odd m, X Y U W
        t0 = table[0, j]
        t1 = table[1, j]
        t2 = table[2, j]
        t3 = table[3, j]
        for parity in range(2):
            c = channels[parity]
            k = parity ^ half
            rows[k, v, j] += t0 * c[4 * half] + t1 * c[4 * half + 1]
            rows[k, n_vol + v, j] += t2 * c[4 * half + 2] + t3 * c[4 * half + 3]


@numba.njit(cache=True, fastmath=True)
def _add_orbit_channels(rows, v, n_vol, parity, table, m0, channels):
    """Adjoint of :func:`_add_orbit_ring_sums`: adds to the eight channels. For a real
    map ``table`` holds each m weighted w_m = 1 (m = 0) or 2 (the m < 0 terms)."""
    mb = table.shape[1]
    for half in range(2):
        k = parity ^ half
        first = (m0 + half) & 1
        real = rows[k, v]
        imag = rows[k, n_vol + v]
        c0 = c1 = c2 = c3 = 0.0
        for j in range(first, mb, 2):
            c0 += table[0, j] * real[j]
            c1 += table[1, j] * real[j]
            c2 += table[2, j] * imag[j]
            c3 += table[3, j] * imag[j]
        channels[4 * half] += c0
        channels[4 * half + 1] += c1
        channels[4 * half + 2] += c2
        channels[4 * half + 3] += c3


def shell_chunks(shell_start: np.ndarray, pairs_per_chunk: int = 128) -> np.ndarray:
    """Shell offsets cutting the shells into runs of about ``pairs_per_chunk`` pairs (a
    shell is never split): the units of work of :func:`shell_transform`. Small units
    balance the threads of small transforms (64^3 at order 10-20: 8-14% faster than 512
    pairs a unit; no change at 128^3, order 50)."""
    shell_start = np.asarray(shell_start)
    targets = np.arange(0, shell_start[-1], pairs_per_chunk)
    cuts = np.unique(np.searchsorted(shell_start, targets, side="left"))
    return np.unique(np.concatenate([cuts, [shell_start.size - 1]])).astype(np.int64)


@numba.njit(cache=True, fastmath=True)
def gaussian_splat(positions: np.ndarray, weights: np.ndarray, voxel_size: float, sigma: float, reach: int,
                   out: np.ndarray) -> None:
    """out[z, y, x] += w exp(-|q - p|^2 / (2 sigma^2)) (2 pi sigma^2)^-1.5 for each atom p
    (positions (A, 3) x, y, z in Å; q = (x, y, z) voxel_size) within ``reach`` voxels of
    the atom's nearest voxel on each axis (a cube), inside the box. Serial (the atoms'
    windows overlap); the Gaussian factorises over the axes, so each voxel costs one
    product."""
    box = out.shape[0]
    norm = (2.0 * np.pi * sigma * sigma) ** -1.5
    width = 2 * reach + 1
    gx = np.empty(width)
    gy = np.empty(width)
    gz = np.empty(width)
    for a in range(positions.shape[0]):
        cx = int(np.rint(positions[a, 0] / voxel_size)) - reach
        cy = int(np.rint(positions[a, 1] / voxel_size)) - reach
        cz = int(np.rint(positions[a, 2] / voxel_size)) - reach
        for i in range(width):
            dx = (cx + i) * voxel_size - positions[a, 0]
            dy = (cy + i) * voxel_size - positions[a, 1]
            dz = (cz + i) * voxel_size - positions[a, 2]
            gx[i] = np.exp(-0.5 * dx * dx / (sigma * sigma))
            gy[i] = np.exp(-0.5 * dy * dy / (sigma * sigma))
            gz[i] = np.exp(-0.5 * dz * dz / (sigma * sigma)) * weights[a] * norm
        for k in range(width):
            z = cz + k
            if z < 0 or z >= box:
                continue
            for j in range(width):
                y = cy + j
                if y < 0 or y >= box:
                    continue
                wzy = gz[k] * gy[j]
                for i in range(width):
                    x = cx + i
                    if 0 <= x < box:
                        out[z, y, x] += wzy * gx[i]
