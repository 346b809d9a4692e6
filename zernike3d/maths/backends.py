"""Where the ring and polar steps of the transforms run.

Two implementations of the same three operations, chosen by name (or by size):

* ``numba``: the multi-threaded CPU kernels of :mod:`zernike3d.maths._kernels`;
  the ring step runs over xy orbits when the grid has them (centre on a voxel in x and
  y), else over every xy point.
* ``numpy`` / ``cupy``: the same sums written as array operations only (elementwise
  products, sums over ring and shell members (:class:`GroupSums`), dense matrix
  products), for any NumPy-compatible array module. With ``cupy`` everything runs on the
  GPU (the member sums as CSR products); with ``numpy`` the very same code runs on the
  CPU (the member sums in NumPy alone, so no SciPy import), which is how the tests check
  the GPU code path on machines without a GPU (and its CSR products with scipy.sparse).
* ``auto`` (what the stages run on the CPU; the library's default stays ``numba``):
  ``numpy`` for small work, else ``numba``; see :func:`resolve_backend`. numba is
  imported only when its backend runs: a process's first numba kernel call costs
  numba's import and the load of its cache (building numba's CPU target imports its
  NumPy, linalg and random registries and SciPy's BLAS, about 0.5 s together), more
  than a small transform takes with ``numpy``.

Each backend offers ``xp`` (its array module), ``load_maps(maps)``,
``shell_sums(m0, m1, s0, s1)`` -> (s1 - s0, layout.shell_width) real, the block of m values
m0 .. m1 - 1 and shells s0 .. s1 - 1 (layout: ``transform._BlockLayout.columns``),
``add_maps(shells, m0, m1, s0, s1)`` (the adjoint, accumulating into the output maps),
``maps()`` -> NumPy (V, box, box, box), and ``radial(l, s0, s1)`` -> the radial rows of
one l at those shells on the backend's device (kept resident when ``radial_resident``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

BACKENDS = ("auto", "numba", "numpy", "cupy")
#: ``auto`` runs a transform on the numpy backend when its work, in (pair, (l, m), volume)
#: terms (:func:`transform_work`), is at most this, else on numba: below it the numpy
#: backend's extra time over numba's kernels is less than numba's start-up in a fresh
#: process (its import and the load of its cache), which numpy does not pay.
#: ``python benchmarks/bench_startup.py --threshold`` measures both and prints the
#: break-even work: 2.4e7 on 2 shared cores under load (start-up 0.97 s, numpy 19-40 ns
#: more than numba per unit of work, one thread); set lower, as numba's start-up is
#: about half that on an idle machine and numba gains more from several threads. A
#: 64^3 map at order 20 (1 Å voxels, inscribed ball) is 1.75e6, 128^3 at order 20 1.2e7.
AUTO_NUMPY_WORK = 10_000_000


def transform_work(n_pairs: int, order: int, n_volumes: int) -> int:
    """The work of one transform: (fold, ring) pairs x (l, m) with m >= 0 x volumes, the
    terms of its polar step, which dominates both CPU backends."""
    return n_pairs * (order + 1) * (order + 2) // 2 * n_volumes


def resolve_backend(name: str, work: int) -> str:
    """The backend that runs a transform of ``work`` (:func:`transform_work`) asked for
    as ``name``: ``name`` itself unless it is ``auto``, then ``numpy`` up to
    AUTO_NUMPY_WORK and ``numba`` beyond. The same call always gets the same backend;
    the two give the same moments and maps to rounding (1e-12 relative, the tests)."""
    if name != "auto":
        return name
    return "numpy" if work <= AUTO_NUMPY_WORK else "numba"


if TYPE_CHECKING:
    from zernike3d.maths.transform import _BlockLayout

#: work arrays up to this size are kept per thread and reused by the next transform that
#: needs one of the same shape: repeated small transforms otherwise spend most of their
#: time faulting in fresh pages (glibc returns the freed heap to the system after each
#: call: 64^3 at order 15 took 7 ms a call instead of 2 ms on 2 threads)
REUSE_LIMIT = 16 * 2**20
_spare = threading.local()


def _work_array(role, shape, zero=True):
    """A float64 array of ``shape`` for ``role`` ('shells' or 'channels'): the one this
    thread used last for that role when the shape matches (zeroed if ``zero``), else a
    new one. A role's array is in use by one transform at a time (the transforms of one
    thread never overlap)."""
    arrays = _spare.__dict__.setdefault("arrays", {})
    array = arrays.get(role)
    if array is not None and array.shape == shape:
        if zero:
            array.fill(0.0)
        return array
    array = np.zeros(shape) if zero else np.empty(shape)
    if array.nbytes <= REUSE_LIMIT:
        arrays[role] = array
    else:
        arrays.pop(role, None)
    return array


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (no CuPy, no GPU, no driver)."""


def make_backend(name: str, layout: _BlockLayout, n_volumes: int, threads: int | None = None, gpu_id: int | str | None = None,
                 radial_resident: bool = True) -> NumbaBackend | ArrayBackend:
    """The backend ``name`` (numba, numpy or cupy: :func:`resolve_backend` first for auto)
    for the block ``layout`` and ``n_volumes`` maps; ``threads`` (numba), ``gpu_id`` and
    ``radial_resident`` (cupy) as in :func:`zernike3d.maths.transform.decompose`."""
    if name == "numba":
        return NumbaBackend(layout, n_volumes, threads)
    if name == "numpy":
        return ArrayBackend(layout, n_volumes, np, None, radial_resident)
    if name == "cupy":
        cupy, sparse = import_cupy(gpu_id)
        return ArrayBackend(layout, n_volumes, cupy, sparse, radial_resident)
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS[1:]} (auto: resolve_backend first)")


def import_cupy(gpu_id: int | str | None = None) -> tuple[Any, Any]:
    """(cupy, cupyx.scipy.sparse) on device ``gpu_id``, or BackendUnavailable saying why."""
    try:
        import cupy
        import cupyx.scipy.sparse as sparse
    except ImportError as err:
        raise BackendUnavailable(f"CuPy is not installed ({err}); install zernike3d[gpu]") from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken: cupy raises its own types
        raise BackendUnavailable(f"CuPy cannot reach a CUDA driver ({err})") from err
    device = 0 if gpu_id is None else int(gpu_id)
    if not 0 <= device < count:
        raise BackendUnavailable(f"GPU {device} requested but {count} CUDA device(s) found")
    cupy.cuda.Device(device).use()
    return cupy, sparse


class NumbaBackend:
    """CPU kernels; ``threads`` limits numba's thread pool for each call.

    With xy orbits (the centre on a voxel in x and y), the maps are folded once into
    orbit channels (:func:`_kernels.orbit_channels`, float64, about 8 bytes per voxel)
    and the polar step computes each pair's ring sums from them, so no block of ring sums
    is ever stored; reconstruct accumulates adjoint channels over the blocks and unfolds
    them once. Without orbits the ring step writes the block's ring sums (per xy point).
    When the layout uses its table of Pbar_lm (decompose of one map at low order), no
    channels are stored either: the table kernel folds each orbit where it is used.
    """

    xp = np

    def __init__(self, layout: _BlockLayout, n_volumes: int, threads: int | None = None) -> None:
        # numba is imported only when this backend runs
        from zernike3d.maths import _kernels

        self._kernels = _kernels
        self.layout = layout
        self.grid = g = layout.grid
        self.n_volumes = n_volumes
        self.threads = threads
        self._box = layout.basis.geometry.box
        self._chunks = layout.shell_chunks
        self._orbits = g.orbit_ring.size > 0
        self._ring_orbits = layout.ring_orbits
        self._channels = np.zeros((0, 0, n_volumes, 2, 8))
        self._out: np.ndarray | None = None

    def radial(self, l: int, first: int = 0, stop: int | None = None) -> np.ndarray:
        return self.layout.basis.radial(l, first, stop)

    def load_maps(self, maps: np.ndarray) -> None:
        self._flat = maps.reshape(maps.shape[0], self._box, self._box * self._box)
        if self._orbits and len(self.layout.fold_groups) == 1 and not self.layout.uses_legendre_table:  # folded once for every block
            self._channels = self._fold(0, self.grid.fold_plus.size)

    def shell_sums(self, m0: int, m1: int, s0: int, s1: int) -> np.ndarray:
        shells = _work_array("shells", (s1 - s0, self.layout.shell_width(m0, m1)))
        groups = self.layout.fold_groups
        with self._threads():
            if not self._orbits:
                self._polar(self._ring_sums(m0, m1), self._channels, 0, shells, m0, m1, s0, s1, adjoint=False)
                return shells
            if self.layout.uses_legendre_table:  # one map, every m, one group of folds
                self._polar_from_table(shells, s0, s1)
                return shells
            for f0, f1 in groups:  # one group: the channels folded by load_maps
                channels = self._channels if len(groups) == 1 else self._fold(f0, f1)
                self._polar(self._no_rings(m0, m1), channels, f0, shells, m0, m1, s0, s1, adjoint=False)
        return shells

    def _ring_sums(self, m0, m1):
        """The ring step of one block without orbits: (n_pairs, V, 2, m1 - m0) complex."""
        g = self.grid
        rings = np.zeros((g.n_pairs, self.n_volumes, 2, m1 - m0), dtype=np.complex128)
        self._kernels.ring_sums(self._flat, g.fold_plus, g.fold_minus, g.point_index, g.point_ring, g.pair_of, self.layout.phase(m0, m1), rings)
        return rings

    def _no_rings(self, m0, m1):
        return np.zeros((0, self.n_volumes, 2, m1 - m0), dtype=np.complex128)

    def _fold(self, f0, f1):
        """The orbit channels of folds f0 .. f1 - 1 of the loaded maps."""
        g = self.grid
        channels = _work_array("channels", (f1 - f0, g.orbit_ring.size, self.n_volumes, 2, 8), zero=False)
        self._kernels.orbit_channels(self._flat, g.fold_plus, g.fold_minus, g.orbit_index, f0, channels)
        return channels

    def add_maps(self, shells: np.ndarray, m0: int, m1: int, s0: int, s1: int) -> None:
        g, groups = self.grid, self.layout.fold_groups
        if self._out is None and not (self._orbits and len(groups) == 1):
            self._out = np.zeros((self.n_volumes, self._box, self._box * self._box))
        with self._threads():
            if not self._orbits:
                assert self._out is not None  # allocated above
                rings = np.zeros((g.n_pairs, self.n_volumes, 2, m1 - m0), dtype=np.complex128)
                self._polar(rings, self._channels, 0, shells, m0, m1, s0, s1, adjoint=True)
                self._kernels.ring_sums_adjoint(rings, g.fold_plus, g.fold_minus, g.point_index, g.point_ring, g.pair_of, self.layout.phase(m0, m1), m0, self._out)
            elif len(groups) == 1:  # adjoint channels summed over the blocks, unfolded by maps()
                if not self._channels.size:
                    self._channels = _work_array("channels", (g.fold_plus.size, g.orbit_ring.size, self.n_volumes, 2, 8))
                self._polar(self._no_rings(m0, m1), self._channels, 0, shells, m0, m1, s0, s1, adjoint=True)
            else:
                assert self._out is not None  # allocated above
                for f0, f1 in groups:
                    channels = _work_array("channels", (f1 - f0, g.orbit_ring.size, self.n_volumes, 2, 8))
                    self._polar(self._no_rings(m0, m1), channels, f0, shells, m0, m1, s0, s1, adjoint=True)
                    self._kernels.orbit_channels_adjoint(channels, g.fold_plus, g.fold_minus, g.orbit_index, f0, self._out)

    def maps(self) -> np.ndarray:
        g = self.grid
        if self._out is None:
            self._out = np.zeros((self.n_volumes, self._box, self._box * self._box))
            with self._threads():
                self._kernels.orbit_channels_adjoint(self._channels, g.fold_plus, g.fold_minus, g.orbit_index, 0, self._out)
        return self._out.reshape(self.n_volumes, self._box, self._box, self._box)

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return array

    def _polar(self, rings, channels, fold_start, shells, m0, m1, s0, s1, adjoint):
        """The polar step on shells s0 .. s1 - 1 (``shells`` holds those rows)."""
        g, p = self.grid, self.layout
        phase = p.orbit_phase(m0, m1, adjoint) if self._orbits else np.zeros((0, 4, m1 - m0))
        self._kernels.shell_transform(_float_view(rings), channels, fold_start, shells, s0, g.shell_start, self._chunk_bounds(s0, s1), g.pair_cos,
                                 g.pair_sin, g.pair_fold, g.pair_ring, self._ring_orbits, phase, m0, p.order, p.a,
                                 p.b, p.diag, p.l_start(m0, m1), adjoint)

    def _polar_from_table(self, shells, s0, s1):
        """The forward polar step of one map from the layout's table of Pbar_lm."""
        g, p = self.grid, self.layout
        gather, columns = p.legendre_table_index
        self._kernels.shell_sums_from_table(self._flat[0], g.fold_plus, g.fold_minus, g.orbit_index, shells, s0, g.shell_start, self._chunk_bounds(s0, s1), g.pair_fold, g.pair_ring,
                                       self._ring_orbits, p.orbit_phase(0, p.order + 1), p.legendre_table, gather, columns)

    def _chunk_bounds(self, s0, s1):
        """Shell offsets of the polar step's units of work within shells s0 .. s1 - 1."""
        chunks = self._chunks[(self._chunks > s0) & (self._chunks < s1)]
        return np.concatenate([[s0], chunks, [s1]]).astype(np.int64)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.threads is None:
            yield
            return
        import numba

        previous = numba.get_num_threads()
        # numba.config sets its attributes at import time, which its stubs do not show
        numba.set_num_threads(max(1, min(int(self.threads), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        try:
            yield
        finally:
            numba.set_num_threads(previous)


def _float_view(complex_array):
    """A C-contiguous complex array as float64 with a last axis [real, imag]."""
    return complex_array.view(np.float64).reshape(*complex_array.shape, 2)


class GroupSums:
    """The 0/1 matrix G (n_groups x n_members) with G[group[j], j] = 1 (group[j] = -1:
    member j is in no group), applied to arrays whose first axis runs over members or
    groups: :meth:`sum` is G @ x (the rows of x summed by group, in member order) and
    :meth:`spread` is G.T @ y (each member gets its group's row; 0 for none).

    ``sparse`` None: NumPy only (``np.add.reduceat`` over the members sorted by group, a
    gather back; ``np.take``, 4x faster here than fancy indexing), so the numpy backend
    imports no SciPy; else CSR products of ``sparse``
    (``cupyx.scipy.sparse`` with ``xp`` = cupy, the GPU's; ``scipy.sparse`` runs that same
    CSR code on the CPU in the tests). Both sum each group's members in member order.
    """

    def __init__(self, group: np.ndarray, n_groups: int, xp=np, sparse=None):
        group = np.asarray(group, dtype=np.int64)
        self.shape = (n_groups, group.size)
        member = np.flatnonzero(group >= 0)
        order = member[np.argsort(group[member], kind="stable")]
        indptr = np.searchsorted(group[order], np.arange(n_groups + 1))
        self._sparse = sparse
        if sparse is None:
            self._order = order
            self._groups = np.flatnonzero(np.diff(indptr))  # the groups with members
            self._starts = indptr[self._groups]
            self._gather = np.where(group >= 0, group, n_groups)  # n_groups: a zero row
            return
        ones, index = xp.ones(member.size), np.int32  # CSR indices as scipy.sparse made them (cuSPARSE's int32)
        self._matrix = sparse.csr_matrix((ones, xp.asarray(order, dtype=index), xp.asarray(indptr, dtype=index)),
                                         shape=self.shape)
        member_indptr = np.concatenate([[0], np.cumsum(group >= 0)])
        self._transpose = sparse.csr_matrix((ones, xp.asarray(group[member], dtype=index),
                                             xp.asarray(member_indptr, dtype=index)), shape=self.shape[::-1])

    def sum(self, x: np.ndarray) -> np.ndarray:
        """G @ x: (n_groups, ...) from x (n_members, ...)."""
        if self._sparse is not None:
            return self._matrix @ x
        out = np.zeros((self.shape[0], *x.shape[1:]), dtype=x.dtype)
        if self._starts.size:
            out[self._groups] = np.add.reduceat(np.take(x, self._order, axis=0), self._starts, axis=0)
        return out

    def spread(self, y: np.ndarray) -> np.ndarray:
        """G.T @ y: (n_members, ...) from y (n_groups, ...)."""
        if self._sparse is not None:
            return self._transpose @ y
        return np.take(np.concatenate([y, np.zeros((1, *y.shape[1:]), dtype=y.dtype)]), self._gather, axis=0)


class ArrayBackend:
    """The transforms as array operations on a dense (fold, ring) layout.

    cells: fold * n_rings + ring (cells outside the ball have no shell and weight 0).
    ``rings`` (:class:`GroupSums`, n_rings x n_points) sums xy points into rings;
    ``shells`` (n_shells x n_cells) sums cells into shells; their transposes spread back.
    ``sparse``: the CSR module of ``xp`` for those sums (None: NumPy's own, see
    :class:`GroupSums`).
    """

    def __init__(self, layout: _BlockLayout, n_volumes: int, xp: Any, sparse: Any = None, radial_resident: bool = True) -> None:
        g = layout.grid
        self.xp, self.layout, self.n_volumes = xp, layout, n_volumes
        self.box = layout.basis.geometry.box
        self.n_folds, self.n_rings = g.pair_of.shape
        n_cells = self.n_folds * self.n_rings
        cells = g.pair_fold * self.n_rings + g.pair_ring
        shell_of_cell = np.full(n_cells, -1)
        shell_of_cell[cells] = np.repeat(np.arange(g.n_shells), np.diff(g.shell_start))
        self.rings = GroupSums(g.point_ring, self.n_rings, xp, sparse)
        self.shells = GroupSums(shell_of_cell, g.n_shells, xp, sparse)
        cos = np.ones(n_cells)
        sin = np.zeros(n_cells)
        cos[cells], sin[cells] = g.pair_cos, g.pair_sin
        self.cos, self.sin = xp.asarray(cos), xp.asarray(sin)
        # a missing +dz or -dz plane reads from / writes to an extra zero plane at index box
        self.plus = xp.asarray(np.where(g.fold_plus >= 0, g.fold_plus, self.box))
        self.minus = xp.asarray(np.where(g.fold_minus >= 0, g.fold_minus, self.box))
        self.point_index = xp.asarray(g.point_index)
        self.phi = xp.asarray(g.point_phi)
        self.a, self.b, self.diag = layout.a, layout.b, layout.diag
        self._radial = {l: xp.asarray(layout.basis.radial(l)) for l in range(layout.order + 1)} if radial_resident else None
        self._out: Any = None  # an array of the backend's library (NumPy or CuPy)

    def radial(self, l: int, first: int = 0, stop: int | None = None) -> Any:
        if self._radial is not None:
            return self._radial[l][:, first:stop]
        return self.xp.asarray(self.layout.basis.radial(l, first, stop))

    def to_numpy(self, array: Any) -> np.ndarray:
        return array.get() if hasattr(array, "get") else array

    def load_maps(self, maps: np.ndarray) -> None:
        xp = self.xp
        flat = xp.asarray(maps, dtype=xp.float64).reshape(self.n_volumes, self.box, -1)
        padded = xp.concatenate([flat, xp.zeros((self.n_volumes, 1, flat.shape[2]))], axis=1)
        plus = padded[:, self.plus][:, :, self.point_index]
        minus = padded[:, self.minus][:, :, self.point_index]
        folded = xp.stack([plus + minus, plus - minus], axis=1)  # (V, 2, F, points)
        self._points = xp.ascontiguousarray(folded.reshape(-1, folded.shape[-1]).T)  # (points, V*2*F)

    def _legendre_columns(self, m0, m1):
        """Yield (j, m, l, parity, Pbar_lm over cells) for the block, l = m..order."""
        xp, order = self.xp, self.layout.order
        pmm = xp.full(self.cos.shape, 1.0 / np.sqrt(4.0 * np.pi))
        for m in range(1, m0 + 1):
            pmm = pmm * (self.diag[m] * self.sin)
        for j, m in enumerate(range(m0, min(m1, order + 1))):
            if j > 0:
                pmm = pmm * (self.diag[m] * self.sin)
            p2, p1 = xp.zeros_like(pmm), pmm
            for l in range(m, order + 1):
                if l > m:
                    p2, p1 = p1, self.a[l, m] * (self.cos * p1 - self.b[l, m] * p2)
                yield j, m, l, (l + m) & 1, p1

    def shell_sums(self, m0: int, m1: int, s0: int, s1: int) -> Any:
        """Shell sums of every shell (s0, s1 = 0, n_shells: its plans have no shell blocks)."""
        xp = self.xp
        shells = xp.zeros((self.shells.shape[0], self.layout.shell_width(m0, m1)))
        rings = []
        for m in range(m0, m1):
            real = self.rings.sum(self._points * xp.cos(m * self.phi)[:, None])
            imag = -self.rings.sum(self._points * xp.sin(m * self.phi)[:, None])
            ring = (real + 1j * imag).reshape(self.n_rings, self.n_volumes, 2, self.n_folds)
            rings.append(xp.ascontiguousarray(ring.transpose(3, 0, 1, 2)).reshape(-1, self.n_volumes, 2))
        for j, m, l, parity, plm in self._legendre_columns(m0, m1):
            weighted = rings[j][:, :, parity] * plm[:, None]
            parts = xp.concatenate([weighted.real, weighted.imag], axis=1)  # (cells, [real, imag] x V)
            shells[:, xp.asarray(self.layout.shell_columns(l, m, m0, m1))] = self.shells.sum(parts)
        return shells

    def add_maps(self, shells: Any, m0: int, m1: int, s0: int, s1: int) -> None:
        xp = self.xp
        rings = [xp.zeros((self.shells.shape[1], self.n_volumes, 2), dtype=xp.complex128) for _ in range(m0, m1)]
        for j, m, l, parity, plm in self._legendre_columns(m0, m1):
            parts = self.shells.spread(xp.ascontiguousarray(shells[:, xp.asarray(self.layout.shell_columns(l, m, m0, m1))]))
            rings[j][:, :, parity] += plm[:, None] * (parts[:, : self.n_volumes] + 1j * parts[:, self.n_volumes :])
        values = xp.zeros(self._point_shape(), dtype=xp.float64)
        for j, m in enumerate(range(m0, m1)):
            ring = xp.ascontiguousarray(rings[j].reshape(self.n_folds, self.n_rings, self.n_volumes, 2).transpose(1, 2, 3, 0)).reshape(self.n_rings, -1)
            weight = 1.0 if m == 0 else 2.0
            values += weight * (
                self.rings.spread(xp.ascontiguousarray(ring.real)) * xp.cos(m * self.phi)[:, None]
                - self.rings.spread(xp.ascontiguousarray(ring.imag)) * xp.sin(m * self.phi)[:, None]
            )
        folded = values.T.reshape(self.n_volumes, 2, self.n_folds, -1)
        if self._out is None:
            self._out = xp.zeros((self.n_volumes, self.box + 1, self.box * self.box))
        out = self._out
        plane_index = self.point_index[None, :]
        out[:, self.plus[:, None], plane_index] += folded[:, 0] + folded[:, 1]
        out[:, self.minus[:, None], plane_index] += folded[:, 0] - folded[:, 1]

    def _point_shape(self):
        return (self.point_index.size, self.n_volumes * 2 * self.n_folds)

    def maps(self) -> np.ndarray:
        out = self._out[:, : self.box].reshape(self.n_volumes, self.box, self.box, self.box)
        return self.to_numpy(out)
