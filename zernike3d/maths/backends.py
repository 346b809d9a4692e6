"""Where the ring and polar steps of the transforms run.

Two implementations of the same three operations, chosen by name:

* ``numba`` (default): the multi-threaded CPU kernels of :mod:`zernike3d.maths._kernels`;
  the ring step runs over xy orbits when the grid has them (centre on a voxel in x and
  y), else over every xy point.
* ``numpy`` / ``cupy``: the same sums written as array operations only (elementwise
  products, sparse matrix products with ring and shell membership matrices, dense
  matrix products), for any NumPy-compatible array module. With ``cupy`` everything runs
  on the GPU; with ``numpy`` the very same code runs on the CPU, which is how the tests
  check the GPU code path on machines without a GPU.

Each backend offers ``xp`` (its array module), ``load_maps(maps)``,
``shell_sums(m0, m1, s0, s1)`` -> (s1 - s0, layout.shell_width) real, the block of m values
m0 .. m1 - 1 and shells s0 .. s1 - 1 (layout: ``transform._BlockLayout.columns``),
``add_maps(shells, m0, m1, s0, s1)`` (the adjoint, accumulating into the output maps),
``maps()`` -> NumPy (V, box, box, box), and ``radial(l, s0, s1)`` -> the radial rows of
one l at those shells on the backend's device (kept resident when ``radial_resident``).
"""

import contextlib
import threading

import numba
import numpy as np

from zernike3d.maths import _kernels

BACKENDS = ("numba", "numpy", "cupy")
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


def make_backend(name, layout, n_volumes, threads=None, gpu_id=None, radial_resident=True):
    if name == "numba":
        return NumbaBackend(layout, n_volumes, threads)
    if name == "numpy":
        import scipy.sparse

        return ArrayBackend(layout, n_volumes, np, scipy.sparse, radial_resident)
    if name == "cupy":
        cupy, sparse = import_cupy(gpu_id)
        return ArrayBackend(layout, n_volumes, cupy, sparse, radial_resident)
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")


def import_cupy(gpu_id=None):
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

    def __init__(self, layout, n_volumes, threads=None):
        self.layout = layout
        self.grid = g = layout.grid
        self.n_volumes = n_volumes
        self.threads = threads
        self._box = layout.basis.geometry.box
        self._chunks = layout.shell_chunks
        self._orbits = g.orbit_ring.size > 0
        self._ring_orbits = layout.ring_orbits
        self._channels = np.zeros((0, 0, n_volumes, 2, 8))
        self._out = None

    def radial(self, l, first=0, stop=None):
        return self.layout.basis.radial(l, first, stop)

    def load_maps(self, maps):
        self._flat = maps.reshape(maps.shape[0], self._box, self._box * self._box)
        if self._orbits and len(self.layout.fold_groups) == 1 and not self.layout.uses_legendre_table:  # folded once for every block
            self._channels = self._fold(0, self.grid.fold_plus.size)

    def shell_sums(self, m0, m1, s0, s1):
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
        _kernels.ring_sums(self._flat, g.fold_plus, g.fold_minus, g.point_index, g.point_ring, g.pair_of, self.layout.phase(m0, m1), rings)
        return rings

    def _no_rings(self, m0, m1):
        return np.zeros((0, self.n_volumes, 2, m1 - m0), dtype=np.complex128)

    def _fold(self, f0, f1):
        """The orbit channels of folds f0 .. f1 - 1 of the loaded maps."""
        g = self.grid
        channels = _work_array("channels", (f1 - f0, g.orbit_ring.size, self.n_volumes, 2, 8), zero=False)
        _kernels.orbit_channels(self._flat, g.fold_plus, g.fold_minus, g.orbit_index, f0, channels)
        return channels

    def add_maps(self, shells, m0, m1, s0, s1):
        g, groups = self.grid, self.layout.fold_groups
        if self._out is None and not (self._orbits and len(groups) == 1):
            self._out = np.zeros((self.n_volumes, self._box, self._box * self._box))
        with self._threads():
            if not self._orbits:
                rings = np.zeros((g.n_pairs, self.n_volumes, 2, m1 - m0), dtype=np.complex128)
                self._polar(rings, self._channels, 0, shells, m0, m1, s0, s1, adjoint=True)
                _kernels.ring_sums_adjoint(rings, g.fold_plus, g.fold_minus, g.point_index, g.point_ring, g.pair_of, self.layout.phase(m0, m1), m0, self._out)
            elif len(groups) == 1:  # adjoint channels summed over the blocks, unfolded by maps()
                if not self._channels.size:
                    self._channels = _work_array("channels", (g.fold_plus.size, g.orbit_ring.size, self.n_volumes, 2, 8))
                self._polar(self._no_rings(m0, m1), self._channels, 0, shells, m0, m1, s0, s1, adjoint=True)
            else:
                for f0, f1 in groups:
                    channels = _work_array("channels", (f1 - f0, g.orbit_ring.size, self.n_volumes, 2, 8))
                    self._polar(self._no_rings(m0, m1), channels, f0, shells, m0, m1, s0, s1, adjoint=True)
                    _kernels.orbit_channels_adjoint(channels, g.fold_plus, g.fold_minus, g.orbit_index, f0, self._out)

    def maps(self):
        g = self.grid
        if self._out is None:
            self._out = np.zeros((self.n_volumes, self._box, self._box * self._box))
            with self._threads():
                _kernels.orbit_channels_adjoint(self._channels, g.fold_plus, g.fold_minus, g.orbit_index, 0, self._out)
        return self._out.reshape(self.n_volumes, self._box, self._box, self._box)

    def to_numpy(self, array):
        return array

    def _polar(self, rings, channels, fold_start, shells, m0, m1, s0, s1, adjoint):
        """The polar step on shells s0 .. s1 - 1 (``shells`` holds those rows)."""
        g, p = self.grid, self.layout
        phase = p.orbit_phase(m0, m1, adjoint) if self._orbits else np.zeros((0, 4, m1 - m0))
        _kernels.shell_transform(_float_view(rings), channels, fold_start, shells, s0, g.shell_start, self._chunk_bounds(s0, s1), g.pair_cos,
                                 g.pair_sin, g.pair_fold, g.pair_ring, self._ring_orbits, phase, m0, p.order, p.a,
                                 p.b, p.diag, p.l_start(m0, m1), adjoint)

    def _polar_from_table(self, shells, s0, s1):
        """The forward polar step of one map from the layout's table of Pbar_lm."""
        g, p = self.grid, self.layout
        gather, columns = p.legendre_table_index
        _kernels.shell_sums_from_table(self._flat[0], g.fold_plus, g.fold_minus, g.orbit_index, shells, s0, g.shell_start, self._chunk_bounds(s0, s1), g.pair_fold, g.pair_ring,
                                       self._ring_orbits, p.orbit_phase(0, p.order + 1), p.legendre_table, gather, columns)

    def _chunk_bounds(self, s0, s1):
        """Shell offsets of the polar step's units of work within shells s0 .. s1 - 1."""
        chunks = self._chunks[(self._chunks > s0) & (self._chunks < s1)]
        return np.concatenate([[s0], chunks, [s1]]).astype(np.int64)

    @contextlib.contextmanager
    def _threads(self):
        if self.threads is None:
            yield
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(int(self.threads), numba.config.NUMBA_NUM_THREADS)))
        try:
            yield
        finally:
            numba.set_num_threads(previous)


def _float_view(complex_array):
    """A C-contiguous complex array as float64 with a last axis [real, imag]."""
    return complex_array.view(np.float64).reshape(*complex_array.shape, 2)


class ArrayBackend:
    """The transforms as array operations on a dense (fold, ring) layout.

    cells: fold * n_rings + ring (cells outside the ball have no shell and weight 0).
    ring_matrix (n_rings x n_points) sums xy points into rings; shell_matrix
    (n_shells x n_cells) sums cells into shells; their transposes spread back.
    """

    def __init__(self, layout, n_volumes, xp, sparse, radial_resident=True):
        import scipy.sparse

        g = layout.grid
        self.xp, self.layout, self.n_volumes = xp, layout, n_volumes
        self.box = layout.basis.geometry.box
        self.n_folds, self.n_rings = g.pair_of.shape
        n_cells = self.n_folds * self.n_rings
        shell_of_pair = np.repeat(np.arange(g.n_shells), np.diff(g.shell_start))
        cells = g.pair_fold * self.n_rings + g.pair_ring
        ones = np.ones(g.n_points)
        ring_matrix = scipy.sparse.csr_matrix((ones, (g.point_ring, np.arange(g.n_points))), shape=(self.n_rings, g.n_points))
        shell_matrix = scipy.sparse.csr_matrix((np.ones(g.n_pairs), (shell_of_pair, cells)), shape=(g.n_shells, n_cells))

        def to_device(matrix):
            matrix = matrix.tocsr()
            return sparse.csr_matrix((xp.asarray(matrix.data), xp.asarray(matrix.indices), xp.asarray(matrix.indptr)), shape=matrix.shape)

        self.ring_matrix, self.ring_matrix_t = to_device(ring_matrix), to_device(ring_matrix.T)
        self.shell_matrix, self.shell_matrix_t = to_device(shell_matrix), to_device(shell_matrix.T)
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
        self._out = None

    def radial(self, l, first=0, stop=None):
        if self._radial is not None:
            return self._radial[l][:, first:stop]
        return self.xp.asarray(self.layout.basis.radial(l, first, stop))

    def to_numpy(self, array):
        return array.get() if hasattr(array, "get") else array

    def load_maps(self, maps):
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

    def shell_sums(self, m0, m1, s0, s1):
        """Shell sums of every shell (s0, s1 = 0, n_shells: its layouts have no shell blocks)."""
        xp = self.xp
        shells = xp.zeros((self.shell_matrix.shape[0], self.layout.shell_width(m0, m1)))
        rings = []
        for m in range(m0, m1):
            real = self.ring_matrix @ (self._points * xp.cos(m * self.phi)[:, None])
            imag = -(self.ring_matrix @ (self._points * xp.sin(m * self.phi)[:, None]))
            ring = (real + 1j * imag).reshape(self.n_rings, self.n_volumes, 2, self.n_folds)
            rings.append(xp.ascontiguousarray(ring.transpose(3, 0, 1, 2)).reshape(-1, self.n_volumes, 2))
        for j, m, l, parity, plm in self._legendre_columns(m0, m1):
            weighted = rings[j][:, :, parity] * plm[:, None]
            parts = xp.concatenate([weighted.real, weighted.imag], axis=1)  # (cells, [real, imag] x V)
            shells[:, xp.asarray(self.layout.shell_columns(l, m, m0, m1))] = self.shell_matrix @ parts
        return shells

    def add_maps(self, shells, m0, m1, s0, s1):
        xp = self.xp
        rings = [xp.zeros((self.shell_matrix.shape[1], self.n_volumes, 2), dtype=xp.complex128) for _ in range(m0, m1)]
        for j, m, l, parity, plm in self._legendre_columns(m0, m1):
            parts = self.shell_matrix_t @ xp.ascontiguousarray(shells[:, xp.asarray(self.layout.shell_columns(l, m, m0, m1))])
            rings[j][:, :, parity] += plm[:, None] * (parts[:, : self.n_volumes] + 1j * parts[:, self.n_volumes :])
        values = xp.zeros(self._point_shape(), dtype=xp.float64)
        for j, m in enumerate(range(m0, m1)):
            ring = xp.ascontiguousarray(rings[j].reshape(self.n_folds, self.n_rings, self.n_volumes, 2).transpose(1, 2, 3, 0)).reshape(self.n_rings, -1)
            weight = 1.0 if m == 0 else 2.0
            values += weight * (
                (self.ring_matrix_t @ xp.ascontiguousarray(ring.real)) * xp.cos(m * self.phi)[:, None]
                - (self.ring_matrix_t @ xp.ascontiguousarray(ring.imag)) * xp.sin(m * self.phi)[:, None]
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

    def maps(self):
        out = self._out[:, : self.box].reshape(self.n_volumes, self.box, self.box, self.box)
        return self.to_numpy(out)
