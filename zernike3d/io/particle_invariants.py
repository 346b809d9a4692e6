"""Per-particle invariants of a 3D Variability job: computed in chunks, stored as zarr.

A particle with latents z (K values) has invariants F_nl(z) = sqrt(z~^T G_nl z~),
z~ = (1, z), with the forms G of :func:`zernike3d.maths.invariants.particle_invariant_forms`.
:func:`write_particle_invariants` streams the particles one chunk at a time, so memory
stays bounded whatever the number of particles P, through a numba kernel (CPU) or, with
``backend="cupy"``, one matrix product per chunk on the GPU (F^2 = [z~_a z~_b] @ G packed;
``backend="numpy"`` runs that same array code on the CPU). On the CPU the numba kernel is
about 3x faster than the matrix product, and writing the store dominates either way
(figures: benchmarks/bench_particle_invariants.py).

The store is a zarr (format 3) group, a directory:

==================  ======================  ============================================
node                dtype, shape            meaning
==================  ======================  ============================================
``invariants``      float32 (P, n_nl)       F_nl(z) per particle (row) and (n, l)
                                            (column); chunked by particles; units of the
                                            map density, like the maps' invariants
``uid``             uint64 (P,)             cryoSPARC particle uid of each row
``nl``              int32 (n_nl, 2)         (n, l) of each column, ordered by n then l
attributes          ``format``              ``"zernike3d-particle-invariants"``
                    ``format_version``      1
                    ``order``               highest n
                    ``names``               the volumes of the forms: base, component_0..
                    ``particles``           P, the rows written
                    ``zernike3d_output``    ``{"stage": "invariants --particles-out"}``
==================  ======================  ============================================

Each chunk of ``invariants`` is blosc-compressed, then followed by its CRC32C (zarr's
``crc32c`` codec), and every chunk is written, even one of zeros. Read it back with
:func:`read_particle_invariants`, which checks that every chunk is there (zarr would
read a missing chunk as zeros, its fill value) and that the rows are those recorded;
the ``invariants`` array is read lazily (slice it, or use
:meth:`ParticleInvariants.sample`), and every read is checked: a chunk that is damaged
(its checksum, a truncated file) or holds a value that is not finite is an
:class:`~zernike3d.errors.InputError` naming the store. Its root attributes also name
the stage that wrote it (``zernike3d_output``, :mod:`zernike3d.io.atomic`): files saved
into it keep it from being replaced, and no output is written inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np
import zarr
from numba import prange
from zarr.codecs import BloscCodec, Crc32cCodec

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, zarr_kind
from zernike3d.progress import progress as report_progress

if TYPE_CHECKING:
    from pathlib import Path

    from numpy.typing import DTypeLike

FORMAT = "zernike3d-particle-invariants"
FORMAT_VERSION = 1
#: what write_particle_invariants may replace: an earlier store of this format
OUTPUT = zarr_kind(f"a zernike3d particle invariants store (format {FORMAT!r})",
                   lambda attrs: attrs.get("format") == FORMAT, arrays=("uid", "nl", "invariants"),
                   stage="invariants --particles-out")
#: particles per zarr chunk (and per computed block)
DEFAULT_CHUNK = 4096
#: byte-shuffled lz4: fast enough not to slow the write, some gain on float32; then a
#: CRC32C of each compressed chunk, checked by zarr on every read
COMPRESSOR = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())
#: every chunk is written, so that a missing one is seen as missing (not as zeros)
ARRAY_CONFIG = {"write_empty_chunks": True}


class CheckedRows:
    """The ``invariants`` zarr array of a store, read through checks: slicing it
    returns a numpy array, or raises :class:`~zernike3d.errors.InputError` naming the
    store when a chunk read is damaged or a value is not finite. ``shape``, ``chunks``,
    ``dtype`` and ``ndim`` are the array's."""

    def __init__(self, array: zarr.Array, path):
        self._array, self.path = array, str(path)
        self.shape, self.chunks, self.dtype, self.ndim = array.shape, array.chunks, array.dtype, array.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        try:
            values = np.asarray(self._array[key])
        except Exception as err:  # a checksum mismatch, a truncated or foreign chunk
            problem = f"{type(err).__name__}: {err}".splitlines()[0]
            raise InputError(self.path, f"a chunk of invariants is damaged ({problem}); "
                                        "write the store again with `zernike3d invariants`") from None
        if not np.isfinite(values).all():
            raise InputError(self.path, "invariants hold values that are not finite (NaN or infinity); "
                                        "write the store again with `zernike3d invariants`")
        return values


@dataclass(frozen=True)
class ParticleInvariants:
    """A particle invariants store opened for reading.

    ``invariants`` is the lazy, checked array (P, n_nl) float32 (:class:`CheckedRows`);
    ``uid`` (P,) uint64,
    ``nl`` (n_nl, 2) int32, ``order`` and ``names`` as written.
    """

    invariants: CheckedRows
    uid: np.ndarray
    nl: np.ndarray
    order: int
    names: list

    def sample(self, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """At most ``count`` particles drawn without replacement (fixed ``seed``), in
        store order: (rows (S,) int64, invariants (S, n_nl) float32). Reads one chunk at
        a time, so memory is bounded by the sample and one chunk."""
        total = self.invariants.shape[0]
        rows = np.sort(np.random.default_rng(seed).choice(total, min(count, total), replace=False))
        step = self.invariants.chunks[0]
        blocks = []
        for start in range(0, total, step):
            wanted = rows[(rows >= start) & (rows < start + step)]
            if wanted.size:
                blocks.append(self.invariants[start : start + step][wanted - start])
        values = np.concatenate(blocks) if blocks else np.zeros((0, len(self.nl)), np.float32)
        return rows, values


def particle_invariants_of(forms: np.ndarray, latents: np.ndarray, dtype: DTypeLike = np.float64,
                           backend: str = "numba") -> np.ndarray:
    """F_nl(z) of every row of ``latents`` (P, K) in memory: (P, n_nl) of ``dtype``.

    The same values as :func:`zernike3d.maths.invariants.particle_invariants`, by the
    code the writer streams through (``backend``: numba, numpy or cupy).
    """
    norms = _norms_function(backend, _packed_forms(forms))
    out = np.empty((latents.shape[0], forms.shape[0]), dtype=dtype)
    norms(np.ascontiguousarray(latents, dtype=np.float64), out)
    return out


def write_particle_invariants(path: str | Path, forms: np.ndarray, latents: np.ndarray, uid: np.ndarray, nl: np.ndarray, *,
                              order: int, names: Sequence[str], chunk: int = DEFAULT_CHUNK, backend: str = "numba",
                              progress: bool = False) -> None:
    """Compute and store the invariants of every particle, ``chunk`` particles at a time.

    forms (n_nl, 1+K, 1+K) from ``particle_invariant_forms``; latents (P, K); uid (P,);
    nl (n_nl, 2); ``order`` and ``names`` (1+K) describe the forms; ``backend``: numba
    (CPU), cupy (GPU) or numpy; ``progress``: a progress bar when it takes over 2 s.
    Written atomically.
    """
    n_nl, size, _ = forms.shape
    if latents.ndim != 2 or latents.shape[1] != size - 1 or uid.shape != (len(latents),):
        raise ValueError(
            f"latents {latents.shape} and uid {uid.shape} do not fit forms of {size - 1} components"
        )
    norms = _norms_function(backend, _packed_forms(forms))
    block = np.empty((chunk, n_nl), dtype=np.float32)
    with atomic_path(path, OUTPUT) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        group.attrs.update(
            format=FORMAT, format_version=FORMAT_VERSION, order=int(order), names=list(names)
        )
        for name, values in (("uid", np.asarray(uid, dtype=np.uint64)), ("nl", np.asarray(nl, dtype=np.int32))):
            group.create_array(name, shape=values.shape, dtype=values.dtype, config=ARRAY_CONFIG)[...] = values
        store = group.create_array(
            "invariants",
            shape=(len(latents), n_nl),
            chunks=(chunk, n_nl),
            dtype="float32",
            compressors=COMPRESSOR,
            config=ARRAY_CONFIG,
        )
        chunks = range(0, len(latents), chunk)
        starts = report_progress(chunks, "particle invariants", "chunk") if progress else chunks
        for start in starts:
            z = np.ascontiguousarray(latents[start : start + chunk], dtype=np.float64)
            norms(z, block[: len(z)])
            store[start : start + len(z)] = block[: len(z)]


def read_particle_invariants(path: str | Path) -> ParticleInvariants:
    """Open a store written by :func:`write_particle_invariants`, checking its format."""
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, ValueError) as err:
        raise InputError(path, f"not a zarr particle invariants store: {err}") from None
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise InputError(path, f"not a particle invariants store (format is {attrs.get('format')!r}, expected {FORMAT!r})")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise InputError(path, f"format_version {attrs.get('format_version')}; this zernike3d reads {FORMAT_VERSION}")
    missing = [name for name in ("invariants", "uid", "nl") if name not in group]
    if missing:
        raise InputError(path, f"store lacks {', '.join(missing)}")
    try:
        invariants, uid, nl = group["invariants"], group["uid"][:], group["nl"][:]
    except Exception as err:  # a damaged uid or nl chunk
        raise InputError(path, f"uid or nl is damaged ({type(err).__name__}: {err})".splitlines()[0]) from None
    if invariants.ndim != 2 or invariants.shape != (len(uid), len(nl)) or nl.shape[1:] != (2,):
        raise InputError(
            path, f"inconsistent shapes: invariants {invariants.shape}, uid {uid.shape}, nl {nl.shape}"
        )
    if "particles" in attrs and attrs["particles"] != len(uid):
        raise InputError(path, f"holds {len(uid)} particles, but {attrs['particles']} were written")
    for name, array in (("uid", group["uid"]), ("nl", group["nl"]), ("invariants", invariants)):
        if array.nchunks_initialized != array.nchunks:
            raise InputError(path, f"{array.nchunks - array.nchunks_initialized} of the {array.nchunks} chunks "
                                   f"of {name} are missing; write the store again with `zernike3d invariants`")
    return ParticleInvariants(CheckedRows(invariants, path), uid, nl, int(attrs["order"]), list(attrs["names"]))


def _packed_forms(forms):
    """(T, n_nl) float64: the upper triangle a <= b of each symmetric G_nl, row by row,
    off-diagonal entries doubled, so that F² = sum_t packed[t] z~_a z~_b."""
    a, b = np.triu_indices(forms.shape[1])
    return np.ascontiguousarray((forms[:, a, b] * np.where(a == b, 1.0, 2.0)).T)


def _norms_function(backend, packed):
    """A function (latents (p, K) float64, out (p, n_nl)) filling out with F_nl(z)."""
    if backend == "numba":
        return lambda z, out: _quadratic_norms(z, packed, out)
    if backend == "numpy":
        xp = np
    elif backend == "cupy":
        from zernike3d.maths.backends import import_cupy

        xp, _ = import_cupy()
    else:
        raise ValueError(f"unknown backend {backend!r}; expected numba, numpy or cupy")
    device_packed = xp.asarray(packed)
    size = int(round((np.sqrt(8 * packed.shape[0] + 1) - 1) / 2))
    a, b = (xp.asarray(i) for i in np.triu_indices(size))

    def norms(z: np.ndarray, out: np.ndarray) -> None:
        z_tilde = xp.concatenate([xp.ones((len(z), 1)), xp.asarray(z)], axis=1)
        squared = (z_tilde[:, a] * z_tilde[:, b]) @ device_packed
        values = xp.sqrt(xp.maximum(squared, 0.0))
        out[...] = values.get() if hasattr(values, "get") else values

    return norms


@numba.njit(parallel=True, cache=True)
def _quadratic_norms(latents, packed, out):
    """out[p, j] = sqrt(max(0, sum_t packed[t, j] z~_a z~_b)) over particles p in parallel;
    the inner loop over (n, l) runs along contiguous memory and vectorises."""
    size = latents.shape[1] + 1
    n_nl = packed.shape[1]
    for p in prange(latents.shape[0]):
        z = np.empty(size)
        z[0] = 1.0
        z[1:] = latents[p]
        total = np.zeros(n_nl)
        t = 0
        for a in range(size):
            for b in range(a, size):
                weight = z[a] * z[b]
                for j in range(n_nl):
                    total[j] += packed[t, j] * weight
                t += 1
        for j in range(n_nl):
            out[p, j] = np.sqrt(max(total[j], 0.0))
