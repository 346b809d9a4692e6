"""The zarr basis cache: ``DIR/<basis.key>.zarr``, one store per geometry and order.

Layout (zarr format 3; chunks uncompressed, each followed by its CRC32C checksum, zarr's
``crc32c`` codec, which zarr checks on every read):

==========================  =======================  ======================================
array                       dtype, shape             meaning
==========================  =======================  ======================================
``grid/<name>``             as in ``GridTables``     every table of
                                                     :class:`zernike3d.maths.geometry.GridTables`,
                                                     chunked along axis 0 (<= 8 MiB a chunk)
``radial``                  float64,                 R_nl at every shell radius, rows l-major:
                            (n_nl, n_shells)         for l = 0, 1, ..., order the rows
                                                     n = l, l + 2, ... <= order, so the rows a
                                                     transform needs for one l are one slice.
                                                     order // 2 + 1 rows a chunk, so one l's
                                                     rows lie in at most two chunks.
==========================  =======================  ======================================

Chunks are not compressed: the tables are float64 values that hardly compress, so
decompression would only add time to every read. Whether `decompose` reads the radial
table or recomputes it is the planner's choice
(:func:`zernike3d.scheduling.planner.radial_table_source`); ``benchmarks/bench_basis_cache.py``
measures both.

No angular table is stored: the transforms recompute Pbar_lm(cos theta) per pair, which
the planner measures to be cheaper than reading it back (see :mod:`zernike3d.scheduling.planner`).

Group attributes: ``store_format``, ``key`` (the ``Basis.key``, computed from the
geometry's parameters and the order, never from the tables), ``geometry``
(``BallGeometry.to_dict()``), ``order``, ``table_format``, ``arrays`` ({name: {dtype,
shape}}) and ``versions`` (zernike3d, numpy, zarr that wrote it).

Guarantees. A store is built under a temporary name and renamed when complete
(:func:`zernike3d.io.atomic.atomic_path`), so the final name holds a complete store or
nothing. Opening verifies the key, geometry, order, formats, dtypes and shapes, and every
chunk read is checked against its CRC32C; any mismatch is logged in one line and the store
is rebuilt, never trusted. A reader that already holds the grid tables (the planner built
them) reads only the radial table. Builds hold an
exclusive ``fcntl.flock`` on ``DIR/<key>.zarr.lock``: a second job asking for the same
store waits, then reuses the first job's store. The temporaries of a killed build are
removed by the next build (:func:`zernike3d.io.atomic.remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.metadata
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from zernike3d.io.atomic import atomic_path, zarr_kind
from zernike3d.maths.basis import RADIAL_TABLE_LIMIT, TABLE_FORMAT, Basis, radial_table_bytes
from zernike3d.maths.geometry import BallGeometry, GridTables
from zernike3d.maths.indexing import nl_table

#: bump when the layout above changes, so that older stores are rebuilt
STORE_FORMAT = 2
#: target size of one chunk of a grid table (bytes)
CHUNK_BYTES = 8 * 2**20
#: no compression; a CRC32C after each chunk, checked by zarr on every read
CHUNK_CODECS = (Crc32cCodec(),)
#: how :func:`load_basis` holds the radial table
RADIAL_MODES = ("memory", "stream", "recompute")
#: what write_store may replace: an earlier (stale or damaged) basis store
STORE_OUTPUT = zarr_kind("a zernike3d basis store", lambda attrs: "store_format" in attrs and "key" in attrs,
                         arrays=("grid", "radial"), stage="basis")

log = logging.getLogger(__name__)


class StaleStore(Exception):
    """A store that must not be trusted; ``str(err)`` says why."""


@dataclasses.dataclass(frozen=True)
class StoreResult:
    """Where the store is, and whether this call built it (and why)."""

    path: Path
    built: bool
    reason: str | None = None


def store_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.zarr"


def basis_key(geometry: BallGeometry, order: int) -> str:
    """``Basis.key`` of (geometry, order), from their values alone (no table is built)."""
    return Basis.key_for(geometry, order)


def ensure_store(cache_dir: str | Path, geometry: BallGeometry, order: int) -> StoreResult:
    """A verified store for (geometry, order) in ``cache_dir``; built here if needed.

    Safe to call from several processes at once: one builds, the others wait on the lock
    and reuse its store.
    """
    path = store_path(cache_dir, basis_key(geometry, order))
    if _problem(path, geometry, order) is None:
        return StoreResult(path, built=False)
    with _build_lock(path):
        reason = _problem(path, geometry, order)
        if reason is None:
            return StoreResult(path, built=False)
        if reason != "missing":
            log.warning("basis store %s: %s; rebuilding", path, reason)
        write_store(path, Basis.build(geometry, order, radial_table=False))
        return StoreResult(path, built=True, reason=reason)


def write_store(path: str | Path, basis: Basis) -> None:
    """Write ``basis`` (grid tables + radial table) to ``path`` atomically."""
    with atomic_path(path, STORE_OUTPUT) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        records = {}
        for name, values in basis.grid.arrays().items():
            records[f"grid/{name}"] = _write_array(group, f"grid/{name}", values)
        records["radial"] = _write_radial(group, basis)
        group.attrs.update(_attributes(basis, records))


def open_store(path: str | Path, geometry: BallGeometry, order: int, radial: str = "memory",
               grid: GridTables | None = None) -> Basis:
    """The :class:`Basis` in the store at ``path``, checked while it is read.

    Raises :class:`StaleStore` (saying why) if the attributes do not match or a chunk
    fails its checksum. radial: 'memory' (read the table into RAM), 'stream' (read one l
    at a time from the store while transforming; the table is read once first, to check
    it) or 'recompute' (ignore the stored table). grid: the geometry's
    :class:`GridTables` when the caller already has them (they are then not read).
    """
    if radial not in RADIAL_MODES:
        raise ValueError(f"radial must be one of {RADIAL_MODES}, got {radial!r}")
    group = _open_checked(Path(path), geometry, order)
    records = group.attrs["arrays"]
    if grid is None:
        grid = GridTables(**{name: _read_checked(group, f"grid/{name}", records)
                             for name in GridTables.__dataclass_fields__})
    if radial == "recompute":
        return Basis(geometry, order, grid)
    stored = _read_checked(group, "radial", records)
    if radial == "stream":
        return StreamedBasis(geometry, order, grid, group["radial"])
    return Basis(geometry, order, grid, stored)


def load_basis(path_or_json: str | Path, geometry: BallGeometry | None = None, order: int | None = None,
               radial: str | None = None, grid: GridTables | None = None) -> Basis:
    """A :class:`Basis` from a store, a ``basis.json`` or a cache directory.

    geometry, order: what the caller needs (default: those recorded in the json/store).
    A missing, stale or mismatched store is rebuilt in its cache directory. radial, grid:
    see :func:`open_store`; radial None keeps the table in memory up to
    ``zernike3d.maths.basis.RADIAL_TABLE_LIMIT`` bytes and streams it above.
    """
    path = Path(path_or_json)
    if path.suffix == ".json":
        record = read_basis_record(path)
        path = record["store"]
        geometry = geometry or record["geometry"]
        order = record["order"] if order is None else order
    elif path.suffix == ".zarr" and (geometry is None or order is None):
        attrs = zarr.open_group(path, mode="r").attrs
        geometry = geometry or BallGeometry(**_geometry_args(attrs["geometry"]))
        order = attrs["order"] if order is None else order
    cache_dir = path.parent if path.suffix == ".zarr" else path
    if geometry is None or order is None:
        raise ValueError(f"{path}: a cache directory needs the geometry and the order of the basis")
    if radial is None:
        fits = radial_table_bytes(order, geometry.grid.n_shells) <= RADIAL_TABLE_LIMIT
        radial = "memory" if fits else "stream"
    path = store_path(cache_dir, basis_key(geometry, order))
    for _attempt in range(3):
        try:
            return open_store(path, geometry, order, radial, grid)
        except StaleStore as err:
            if str(err) != "missing":
                log.warning("basis store %s: %s; rebuilding", path, err)
            ensure_store(cache_dir, geometry, order)
    raise StaleStore(f"{path}: still invalid after rebuilding")


def read_basis_record(path: str | Path) -> dict[str, Any]:
    """The ``basis.json`` at ``path`` as ``{"store": Path, "geometry": BallGeometry,
    "order": int}``; :class:`~zernike3d.errors.InputError` naming ``path`` if it is not
    readable JSON of the form :func:`basis_record` writes."""
    from zernike3d.errors import InputError
    from zernike3d.maths.geometry import GeometryError

    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the file ({getattr(err, 'strerror', None) or err})") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not a basis.json written by `zernike3d basis` (not JSON: {err})") from None
    if not isinstance(record, dict):
        raise InputError(path, f"not a basis.json written by `zernike3d basis` (a JSON {type(record).__name__})")
    missing = [key for key in ("store", "geometry", "order") if key not in record]
    if missing:
        raise InputError(path, f"basis.json lacks {', '.join(missing)} (write it with `zernike3d basis`)")
    store, geometry, order = record["store"], record["geometry"], record["order"]
    if not isinstance(store, str) or not store:
        raise InputError(path, f"store must be a path, got {store!r}")
    if not isinstance(order, int) or isinstance(order, bool) or order < 0:
        raise InputError(path, f"order must be an integer >= 0, got {order!r}")
    fields = ("box", "voxel_size", "radius", "center")
    if not isinstance(geometry, dict) or sorted(geometry) != sorted(fields):
        raise InputError(path, f"geometry must be an object with {', '.join(fields)}, got {geometry!r}")
    numbers = [geometry[key] for key in fields[:3]] + (geometry["center"] if isinstance(geometry["center"], list) else [None])
    if not isinstance(geometry["box"], int) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in numbers) or len(numbers) != 6:
        raise InputError(path, f"geometry needs an integer box, numbers voxel_size and radius and a "
                         f"center [x, y, z], got {geometry!r}")
    try:
        geometry = BallGeometry(**_geometry_args(geometry))
    except GeometryError as err:
        raise InputError(path, f"geometry {err.field}: {err}") from None
    return {"store": Path(store), "geometry": geometry, "order": order}


def basis_record(result: StoreResult, geometry: BallGeometry, order: int) -> dict[str, Any]:
    """The ``basis.json`` content: key, absolute store path, geometry, order."""
    return {
        "key": basis_key(geometry, order),
        "store": str(Path(result.path).resolve()),
        "geometry": geometry.to_dict(),
        "order": int(order),
        "table_format": TABLE_FORMAT,
        "store_format": STORE_FORMAT,
    }


class StreamedBasis(Basis):
    """A :class:`Basis` whose radial rows are read from the store, one l at a time."""

    def __init__(self, geometry: BallGeometry, order: int, grid: GridTables, radial: zarr.Array) -> None:
        super().__init__(geometry, order, grid, radial_table=None)
        self._radial = radial

    def radial(self, l: int, first: int = 0, stop: int | None = None) -> np.ndarray:
        return self._radial[self.row_start[l] : self.row_start[l + 1], first:stop]


def _problem(path, geometry, order):
    """Why the store at ``path`` cannot be used (a short phrase), or None if it can."""
    try:
        group = _open_checked(path, geometry, order)
        for name in group.attrs["arrays"]:
            _read_checked(group, name, group.attrs["arrays"])
    except StaleStore as err:
        return str(err)
    return None


def _open_checked(path, geometry, order):
    """The store's group after checking its attributes; :class:`StaleStore` if wrong."""
    if not path.is_dir():
        raise StaleStore("missing")
    try:
        group = zarr.open_group(path, mode="r")
        attrs = group.attrs.asdict()
    except Exception as err:  # unreadable or absent metadata
        raise StaleStore(_unreadable(err)) from None
    expected = {
        "store_format": STORE_FORMAT,
        "table_format": TABLE_FORMAT,
        "key": basis_key(geometry, order),
        "order": int(order),
        "geometry": json.loads(json.dumps(geometry.to_dict())),
    }
    for name, value in expected.items():
        if attrs.get(name) != value:
            raise StaleStore(f"attribute {name} is {attrs.get(name)!r}, expected {value!r}")
    records = attrs.get("arrays")
    names = {f"grid/{name}" for name in GridTables.__dataclass_fields__} | {"radial"}
    if not isinstance(records, dict) or set(records) != names:
        raise StaleStore(f"attribute arrays does not list {', '.join(sorted(names))}")
    return group


def _read_checked(group, name, records):
    """``group[name]`` read whole; :class:`StaleStore` if its dtype or shape differ from
    ``records[name]`` or a chunk is missing or fails its CRC32C."""
    record = records[name]
    try:
        array = group[name]
        if [array.dtype.str, list(array.shape)] != [record["dtype"], record["shape"]]:
            raise StaleStore(f"array {name} is {array.dtype} {array.shape}, expected "
                             f"{record['dtype']} {tuple(record['shape'])}")
        if array.nchunks_initialized != array.nchunks:
            raise StaleStore(f"array {name} lacks {array.nchunks - array.nchunks_initialized} of its chunks")
        return array[...]
    except StaleStore:
        raise
    except Exception as err:  # a damaged chunk fails its checksum or does not decode
        if "checksum" in str(err):
            raise StaleStore(f"checksum of {name} does not match") from None
        raise StaleStore(f"array {name} {_unreadable(err)}") from None


def _unreadable(err):
    return f"unreadable ({type(err).__name__}: {err})".splitlines()[0]


def _attributes(basis, records):
    return {
        "store_format": STORE_FORMAT,
        "table_format": TABLE_FORMAT,
        "key": basis.key,
        "geometry": basis.geometry.to_dict(),
        "order": basis.order,
        "arrays": records,
        "versions": {
            "zernike3d": _version("zernike3d"),
            "numpy": np.__version__,
            "zarr": zarr.__version__,
        },
    }


def _create(group, name, shape, dtype, rows=None):
    """An uncompressed, CRC32C-checked array chunked along axis 0: ``rows`` rows a chunk,
    or as many as fit in CHUNK_BYTES."""
    row_bytes = max(int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize, 1)
    rows = rows or max(1, CHUNK_BYTES // row_bytes)
    chunks = (max(1, min(shape[0], rows)),) + tuple(max(c, 1) for c in shape[1:])
    # every chunk written, even one of zeros: a chunk not there is then missing, not zeros
    return group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, compressors=CHUNK_CODECS,
                              config={"write_empty_chunks": True})


def _write_array(group, name, values):
    values = np.ascontiguousarray(values)
    _create(group, name, values.shape, values.dtype)[...] = values
    return _record(values.dtype, values.shape)


def _write_radial(group, basis):
    """The radial table, rows l-major (see the module docstring), written one l at a time;
    returns its record."""
    order, n_shells = basis.order, basis.grid.n_shells
    shape = (len(nl_table(order)), n_shells)
    array = _create(group, "radial", shape, "float64", rows=order // 2 + 1)
    start = 0
    for l in range(order + 1):
        rows = basis.radial(l)
        array[start : start + rows.shape[0]] = rows
        start += rows.shape[0]
    return _record(np.dtype("float64"), shape)


def _record(dtype, shape):
    return {"dtype": np.dtype(dtype).str, "shape": list(shape)}


@contextlib.contextmanager
def _build_lock(path):
    """Exclusive lock on ``<store>.lock`` (released by the kernel if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _geometry_args(record):
    return {**record, "center": tuple(record["center"])}


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
