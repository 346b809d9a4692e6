"""Zernike moments of maps (decompose) and maps from moments (reconstruct).

Definitions (see docs/conventions.md): Z_nlm = R_nl(r) Y_lm(theta, phi) on the unit ball,
orthonormal (integral |Z|^2 dV = 1); the moments are the exact voxel sums

    Omega_nlm = sum_voxels f(v) conj(Z_nlm(v)) dV,     dV = (voxel_size / R)^3,

over the voxels inside the ball, and the reconstruction is f = sum_{n,l,m} Omega Z, where
the m < 0 terms of a real map follow from Omega_{n,l,-m} = (-1)^m conj(Omega_nlm).

Algorithm. With Y_lm = Pbar_lm(cos theta) exp(i m phi), the sum factorises over the grid
tables of :mod:`zernike3d.maths.geometry`:

1. ring step: for each (fold, ring) pair, the ring sums of f(+dz) +/- f(-dz) times
   exp(-i m phi). When the centre's x and y are on voxels (the default), the 8 points of
   an xy orbit share one phase up to conjugation and a factor (-1)^m or (+-i)^m: the maps
   are folded once into 8 real "channels" per (fold, orbit, parity), and a pair's ring
   sums cost 2-4 real multiply-adds per (orbit of its ring, m), about 8x less than per
   voxel, computed inside the polar step where they are used (no block of ring sums is
   stored). Off the lattice, the ring sums run over every xy point;
2. polar step: for each shell, the sum over its pairs of Pbar_lm(cos theta) times the
   even (l + m even) or odd fold: cost pairs x (l, m) x volumes. Each pair runs the
   Legendre recurrence in l across all the m of a block at once (SIMD lanes over m);
   decompose of a single map at low order reads Pbar_lm from a table kept with the layout
   instead (TABLE_MAX_ORDER), and folds each orbit's channels where it is used;
3. radial step: Omega_nlm = dV sum_shells R_nl(r_shell) A_lm(shell), a real matrix
   product per l (BLAS) on the shell sums as they lie in memory (real, l-major).

Reconstruction runs the adjoint steps in reverse order. The work is split into blocks
sized to a memory budget (blocks of shells that take every m, else blocks of m that take
every shell; see :class:`_BlockLayout`), so memory stays bounded by the map, the tables and the
budget, never by (basis functions x voxels); the orbit channels (about 8 bytes a voxel)
count against the budget. Everything is float64.

Why numba rather than ducc0's spherical-harmonic transforms (measured at box 128, order
50, whole-cube ball, 2 cores): ducc0's scattered-point adjoint transform sums all voxels
in 0.05 s but cannot keep the radial shells apart. Its Legendre step, called once per
shell (8,041 shells), would cost about 0.24 s per fold parity, against 0.17 s for both
parities and the ring sums in the polar step here (``benchmarks/bench_transform.py
--steps``, 2 shared cores).
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

import numpy as np

from zernike3d.maths.backends import make_backend, resolve_backend, transform_work
from zernike3d.maths.basis import RADIAL_TABLE_CACHED, Basis, radial_table_bytes
from zernike3d.maths.indexing import coefficient_count, nlm_offsets
from zernike3d.maths.legendre import recurrence_coefficients

if TYPE_CHECKING:
    from collections.abc import Iterable

    from zernike3d.maths.geometry import BallGeometry, GridTables

#: default memory budget of the per-block work arrays (bytes)
DEFAULT_WORKSPACE = 512 * 2**20


def decompose(maps: np.ndarray, geometry: BallGeometry, order: int, *, basis: Basis | None = None,
              backend: str = "numba", threads: int | None = None, gpu_id: int | str | None = None,
              radial_resident: bool = True, progress: bool = False, max_workspace: int = DEFAULT_WORKSPACE) -> np.ndarray:
    """Zernike moments of one map (box, box, box) or several (V, box, box, box).

    Maps are indexed [z, y, x]; all share ``geometry``. Returns complex128 (V, ncoef) in
    the order of :func:`zernike3d.maths.indexing.nlm_table`. ``backend``: 'numba' (CPU),
    'cupy' (GPU), 'numpy' (the GPU code path on the CPU) or 'auto' (numpy for small
    work, else numba: :func:`zernike3d.maths.backends.resolve_backend`); see
    :mod:`backends`. ``radial_resident``: keep the radial table on the GPU (else stream
    it per block).
    """
    maps = _as_volumes(maps, geometry)
    n_vol = maps.shape[0]
    backend = resolve_backend(backend, transform_work(geometry.grid.n_pairs, order, n_vol))
    layout = _block_layout(geometry, order, basis, n_vol, max_workspace, backend == "numba")
    engine = make_backend(backend, layout, n_vol, threads, gpu_id, radial_resident)
    xp = engine.xp
    engine.load_maps(maps)
    parts = xp.zeros(n_vol * coefficient_count(order) * 2)  # the moments' [real, imag]
    for m0, m1, s0, s1 in layout.iterate(progress, "decompose"):
        shells = None  # the previous block's shell sums are freed before the next are made
        shells = engine.shell_sums(m0, m1, s0, s1)
        for l in range(m0, order + 1):
            index, block = layout.columns(l, m0, m1)
            parts[xp.asarray(index)] += engine.radial(l, s0, s1) @ shells[:, block]
    return engine.to_numpy(parts).view(np.complex128).reshape(n_vol, -1) * geometry.voxel_volume


def reconstruct(moments: np.ndarray, geometry: BallGeometry, order: int, *, basis: Basis | None = None,
                backend: str = "numba", threads: int | None = None, gpu_id: int | str | None = None,
                radial_resident: bool = True, progress: bool = False, max_workspace: int = DEFAULT_WORKSPACE) -> np.ndarray:
    """Maps (V, box, box, box) float64 from moments (V, ncoef) or (ncoef,) up to ``order``.

    ``moments`` must hold exactly the coefficients up to ``order`` (use
    :func:`zernike3d.maths.indexing.truncate` first). Voxels outside the ball are 0.
    ``backend`` and the other options as in :func:`decompose`.
    """
    moments = np.atleast_2d(np.asarray(moments, dtype=np.complex128))
    if moments.shape[1] != coefficient_count(order):
        raise ValueError(f"expected {coefficient_count(order)} coefficients for order {order}, got {moments.shape[1]}")
    n_vol = moments.shape[0]
    backend = resolve_backend(backend, transform_work(geometry.grid.n_pairs, order, n_vol))
    layout = _block_layout(geometry, order, basis, n_vol, max_workspace, backend == "numba")
    engine = make_backend(backend, layout, n_vol, threads, gpu_id, radial_resident)
    xp = engine.xp
    parts = xp.asarray(np.ascontiguousarray(moments).view(np.float64).ravel())  # [real, imag]
    for m0, m1, s0, s1 in layout.iterate(progress, "reconstruct"):
        shells = None  # the previous block's shell sums are freed before the next are made
        shells = xp.empty((s1 - s0, layout.shell_width(m0, m1)))
        for l in range(m0, order + 1):
            index, block = layout.columns(l, m0, m1)
            shells[:, block] = engine.radial(l, s0, s1).T @ parts[xp.asarray(index)]
        engine.add_maps(shells, m0, m1, s0, s1)
    return engine.maps()


def workspace_bytes(grid: GridTables, order: int, n_volumes: int, m_block: int) -> int:
    """Bytes of the per-block work arrays for a block of ``m_block`` orders (worst block).

    With xy orbits: the orbit channels of every fold (see :func:`channel_bytes`; the
    transform holds fewer folds at a time when they take more than half its budget), the
    shell sums and the orbit phases. Without: the ring sums, shell sums and point phases.
    """
    lm = sum(order + 1 - m for m in range(min(m_block, order + 1)))
    shells = grid.n_shells * lm * n_volumes * 16
    if grid.orbit_ring.size:
        return channel_bytes(grid, n_volumes) + shells + grid.orbit_ring.size * m_block * 16
    rings = grid.n_pairs * n_volumes * 2 * m_block * 16
    phase = grid.n_points * m_block * 16
    return rings + shells + phase


def channel_bytes(grid: GridTables, n_volumes: int, folds: int | None = None) -> int:
    """Bytes of the orbit channels (16 float64 per fold, orbit and volume) of ``folds``
    folds (default all): about 8 bytes per voxel of the maps; 0 without orbits."""
    folds = grid.fold_plus.size if folds is None else folds
    return folds * grid.orbit_ring.size * n_volumes * 16 * 8


def fold_group_size(grid: GridTables, n_volumes: int, max_workspace: int) -> int:
    """Folds whose orbit channels are held at once: all of them when they take at most
    half of ``max_workspace``, else as many as do (at least one)."""
    per_fold = channel_bytes(grid, n_volumes, 1)
    if per_fold == 0:
        return grid.fold_plus.size
    return int(min(grid.fold_plus.size, max(1, (max_workspace // 2) // per_fold)))


def m_block_size(grid: GridTables, order: int, n_volumes: int, max_workspace: int) -> int:
    """The largest block of m values whose work arrays fit in ``max_workspace`` (>= 1),
    with the channels of one group of folds (:func:`fold_group_size`) held."""
    unheld = channel_bytes(grid, n_volumes) - channel_bytes(grid, n_volumes, fold_group_size(grid, n_volumes, max_workspace))
    size = order + 1
    while size > 1 and workspace_bytes(grid, order, n_volumes, size) - unheld > max_workspace:
        size = max(1, size * 3 // 4)
    return size


def _block_layout(geometry, order, basis, n_volumes, max_workspace, shell_blocks):
    """The :class:`_BlockLayout` of a call; without a ``basis`` given, small layouts are kept
    between calls (the per-call costs of many small maps in a row)."""
    if basis is None and order >= 0 and radial_table_bytes(order, geometry.grid.n_shells) <= RADIAL_TABLE_CACHED:
        return _cached_block_layout(geometry, order, n_volumes, max_workspace, shell_blocks)
    return _BlockLayout(geometry, order, basis, n_volumes, max_workspace, shell_blocks)


@lru_cache(maxsize=8)
def _cached_block_layout(geometry, order, n_volumes, max_workspace, shell_blocks):
    return _BlockLayout(geometry, order, None, n_volumes, max_workspace, shell_blocks)


#: shell blocks smaller than this are not worth their per-block costs (m blocks instead)
MIN_SHELL_BLOCK = 256

#: decompose of a single map up to this order takes the polar step from a table of
#: Pbar_lm at the pairs (:func:`zernike3d.maths._kernels.shell_sums_from_table`) when the
#: table fits in LEGENDRE_TABLE_MAX; kept with the layout, so a loop over maps builds it
#: once. Whole decompose calls, 2 cores (``bench_transform.py --legendre-table``): 1.75x
#: faster than the recurrence at 64^3 orders 5-10, 1.4x at 15, 1.25x at 20, 1.6x at 96^3
#: order 10; the polar step alone was slower than the recurrence from order 30, and with
#: 2 maps or more (the recurrence then serves every map at once)
TABLE_MAX_ORDER = 20
LEGENDRE_TABLE_MAX = 16 * 2**20


def shell_block_size(grid: GridTables, order: int, n_volumes: int, max_workspace: int) -> int:
    """Shells per block when every m goes in one block: the shell sums of that many
    shells, beside the orbit channels of all folds and the orbit phases, fit in
    ``max_workspace`` (0 when not even one does)."""
    fixed = channel_bytes(grid, n_volumes) + grid.orbit_ring.size * (order + 1) * 32
    per_shell = 2 * n_volumes * sum(order + 1 - m for m in range(order + 1)) * 8
    return int(max(0, min(grid.n_shells, (max_workspace - fixed) // per_shell)))


def legendre_table_bytes(grid: GridTables, order: int, n_volumes: int, max_workspace: int,
                         shell_blocks: bool = True) -> int:
    """Bytes of the table of Pbar_lm at the pairs that decompose of ``n_volumes`` maps
    uses (see TABLE_MAX_ORDER), 0 when it takes the recurrence: one map, xy orbits, every
    m and every fold's channels in each block (numba backend), n_pairs x n_lm float64."""
    if not (shell_blocks and n_volumes == 1 and grid.orbit_ring.size and order <= TABLE_MAX_ORDER):
        return 0
    m_block, _, group = block_layout(grid, order, n_volumes, max_workspace, shell_blocks)
    size = grid.n_pairs * (order + 1) * (order + 2) // 2 * 8
    return size if m_block == order + 1 and group == grid.fold_plus.size and size <= LEGENDRE_TABLE_MAX else 0


def block_layout(grid: GridTables, order: int, n_volumes: int, max_workspace: int,
                 shell_blocks: bool = True) -> tuple[int, int, int]:
    """(m values, shells, folds of orbit channels) a block of the transforms takes within
    ``max_workspace`` bytes (see :class:`_BlockLayout`; ``shell_blocks``: the numba backend)."""
    n_folds = grid.fold_plus.size
    m_block = m_block_size(grid, order, n_volumes, max_workspace)
    if shell_blocks and grid.orbit_ring.size and m_block <= order:
        size = shell_block_size(grid, order, n_volumes, max_workspace)
        if size >= min(MIN_SHELL_BLOCK, grid.n_shells):  # every m, every fold's channels
            return order + 1, size, n_folds
    return m_block, grid.n_shells, fold_group_size(grid, n_volumes, max_workspace)


class _BlockLayout:
    """Per-call constants: basis, Legendre coefficients, blocks and column indices.
    Read-only once built, but for the tables it computes once on first use.

    Blocks. The work arrays of a block are its shell sums, (shells of the block) x (2 V
    (l, m) of its m), the orbit channels and phases. When every m does not fit with every
    shell, the transforms split the shells into blocks that each take every m (with
    ``shell_blocks``, the numba backend, and xy orbits; the orbit channels of all folds
    are then held): each pair's Legendre recurrence then runs once, over every m.
    Otherwise (the CuPy backend, no orbits, or not even MIN_SHELL_BLOCK shells a block
    beside the channels) the m values are split into blocks that each take every shell,
    with the channels in fold groups when they take more than half the budget.
    """

    def __init__(self, geometry: BallGeometry, order: int, basis: Basis | None, n_volumes: int, max_workspace: int,
                 shell_blocks: bool = True) -> None:
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        if basis is None:
            basis = Basis.build(geometry, order)
        elif basis.geometry != geometry or basis.order < order:
            raise ValueError("basis was built for another geometry or a lower order")
        if basis.order != order:
            basis = Basis.build(geometry, order)
        self.basis = basis
        self.grid = basis.grid
        self.order = order
        self.a, self.b, self.diag = recurrence_coefficients(order)
        self.offsets = nlm_offsets(order)
        self.n_volumes = n_volumes
        self.m_block, self.shell_block, group = block_layout(self.grid, order, n_volumes, max_workspace, shell_blocks)
        n_folds = self.grid.fold_plus.size
        self.fold_groups = [(f0, min(f0 + group, n_folds)) for f0 in range(0, n_folds, group)]
        self.uses_legendre_table = legendre_table_bytes(self.grid, order, n_volumes, max_workspace, shell_blocks) > 0
        self._l_starts: dict[tuple[int, int], np.ndarray] = {}
        self._columns: dict[tuple[int, int, int], tuple[np.ndarray, slice]] = {}
        self._orbit_phases: dict[tuple[int, int, bool], np.ndarray] = {}

    @cached_property
    def shell_chunks(self) -> np.ndarray:
        """The polar step's units of work (:func:`zernike3d.maths._kernels.shell_chunks`)."""
        from zernike3d.maths._kernels import shell_chunks

        return shell_chunks(self.grid.shell_start)

    @cached_property
    def legendre_table(self) -> np.ndarray:
        """Pbar_lm(cos theta) of every pair, (n_pairs, n_lm), l-major (decompose of one map
        at low order: see :func:`legendre_table_bytes`)."""
        from zernike3d.maths._kernels import legendre_table

        g = self.grid
        table = np.empty((g.n_pairs, (self.order + 1) * (self.order + 2) // 2))
        legendre_table(g.pair_cos, g.pair_sin, self.order, self.a, self.b, self.diag, table)
        table.flags.writeable = False
        return table

    @cached_property
    def legendre_table_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(gather, columns) of :func:`zernike3d.maths._kernels.shell_sums_from_table`: for
        (l, m) at i = l (l + 1) / 2 + m, the index (parity of l) * 2 (order + 1) + m of its
        ring sum, and for (part, i) the shell-sum column (one map, every m)."""
        lm = [(l, m) for l in range(self.order + 1) for m in range(l + 1)]
        gather = np.array([(l & 1) * 2 * (self.order + 1) + m for l, m in lm], dtype=np.int64)
        columns = np.array([[self.shell_columns(l, m, 0, self.order + 1)[part] for l, m in lm] for part in range(2)], dtype=np.int64)
        return gather, columns.ravel()

    @cached_property
    def ring_orbits(self) -> np.ndarray:
        """CSR offsets of each ring's xy orbits (they are sorted by ring)."""
        return np.searchsorted(self.grid.orbit_ring, np.arange(self.grid.pair_of.shape[1] + 1)).astype(np.int64)

    def iterate(self, progress: bool, label: str) -> Iterable[tuple[int, int, int, int]]:
        """The blocks (m0, m1, s0, s1): m values m0 .. m1 - 1 of shells s0 .. s1 - 1."""
        n_shells = self.grid.n_shells
        blocks = [(m0, min(m0 + self.m_block, self.order + 1), s0, min(s0 + self.shell_block, n_shells))
                  for m0 in range(0, self.order + 1, self.m_block) for s0 in range(0, n_shells, self.shell_block)]
        if progress and len(blocks) > 1:
            from zernike3d.progress import progress as report

            return report(blocks, label, "block")
        return blocks

    def phase(self, m0: int, m1: int) -> np.ndarray:
        """exp(-i m phi) of every xy point, (n_points, m1 - m0)."""
        return np.exp(-1j * np.outer(self.grid.point_phi, np.arange(m0, m1)))

    def orbit_phase(self, m0: int, m1: int, adjoint: bool = False) -> np.ndarray:
        """Each xy orbit's table (n_orbits, 4, m1 - m0) for its ring sums
        (:func:`zernike3d.maths._kernels._add_orbit_ring_sums`): with c = w cos(m phi),
        s = w sin(m phi) (w the orbit's weight, phi its first point's azimuth) and
        sigma = +1 for m = 0, 1 mod 4, -1 for m = 2, 3 mod 4:

            even m: (c, sigma c, -s, -sigma s);   odd m: (c, sigma s, sigma c, -s).

        ``adjoint``: each m weighted 1 (m = 0) or 2 (the m < 0 terms of a real map).
        Kept with the layout: every block of shells uses the same table."""
        key = (m0, m1, adjoint)
        if key in self._orbit_phases:
            return self._orbit_phases[key]
        m = np.arange(m0, m1)
        angles = np.outer(self.grid.orbit_phi, m)
        weight = self.grid.orbit_weight[:, None]
        c, s = weight * np.cos(angles), weight * np.sin(angles)
        sigma = np.where(m % 4 < 2, 1.0, -1.0)
        even = m % 2 == 0
        table = np.stack([c, np.where(even, sigma * c, sigma * s), np.where(even, -s, sigma * c),
                          np.where(even, -sigma * s, -s)], axis=1)
        if adjoint:
            table *= np.where(m == 0, 1.0, 2.0)
        table.flags.writeable = False
        self._orbit_phases[key] = table
        return table

    def l_start(self, m0: int, m1: int) -> np.ndarray:
        """Index of (l, m0) among the (l, m) of the block, for each l (length order + 1;
        l < m0 unused): the (l, m) are l-major, for l = m0, ..., order the m = m0, ...,
        min(l, m1 - 1)."""
        if (m0, m1) not in self._l_starts:
            counts = [min(l, m1 - 1) - m0 + 1 if l >= m0 else 0 for l in range(self.order + 1)]
            self._l_starts[m0, m1] = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        return self._l_starts[m0, m1]

    def lm_count(self, m0: int, m1: int) -> int:
        return sum(self.order + 1 - m for m in range(m0, m1))

    def shell_width(self, m0: int, m1: int) -> int:
        """Columns of the block's shell sums: 2 (real, imag) x V x lm_count."""
        return 2 * self.n_volumes * self.lm_count(m0, m1)

    def columns(self, l: int, m0: int, m1: int) -> tuple[np.ndarray, slice]:
        """For one l: the moments its radial step makes and the shell-sum columns it
        reads, (index, block).

        Shell sums are real, (n_shells, shell_width): the block of l starts at column
        2 V l_start[l] and holds [real, imag] x V x n_m for its m = m0, ..., min(l, m1 - 1),
        m fastest, so that it is the right-hand side of the radial step's matrix product
        as it lies in memory. ``index`` (n_count, 2 V n_m) gives where each entry of that
        product (row n = l, l + 2, ..., order) goes in the moments (V, ncoef) complex seen
        as float64 [real, imag] and flattened."""
        key = (l, m0, m1)
        if key not in self._columns:
            ms = np.arange(m0, min(m1, l + 1))
            ns = np.arange(l, self.order + 1, 2)
            coefficient = self.offsets[ns, l][:, None, None, None] + ms  # (n, part, v, m)
            volume = np.arange(self.n_volumes)[:, None]
            index = (volume * coefficient_count(self.order) + coefficient) * 2 + np.arange(2)[:, None, None]
            start = 2 * self.n_volumes * self.l_start(m0, m1)[l]
            self._columns[key] = index.reshape(ns.size, -1), slice(start, start + 2 * self.n_volumes * ms.size)
        return self._columns[key]

    def shell_columns(self, l: int, m: int, m0: int, m1: int) -> np.ndarray:
        """The 2 V shell-sum columns of one (l, m): [real, imag] x V (see :meth:`columns`)."""
        n_m = min(l, m1 - 1) - m0 + 1
        start = 2 * self.n_volumes * self.l_start(m0, m1)[l]
        return start + np.arange(2 * self.n_volumes) * n_m + (m - m0)


def _as_volumes(maps, geometry):
    maps = np.asarray(maps)
    if maps.ndim == 3:
        maps = maps[None]
    box = geometry.box
    if maps.ndim != 4 or maps.shape[1:] != (box, box, box):
        raise ValueError(f"maps of shape {maps.shape} do not match the box {box}")
    if maps.dtype not in (np.float32, np.float64):
        maps = maps.astype(np.float64)
    return np.ascontiguousarray(maps)
