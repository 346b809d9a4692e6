"""The zarr basis cache: ``DIR/<basis.key>.zarr``, one store per geometry and order.

Layout (zarr format 3, default zstd compression):

==========================  =======================  ======================================
array                       dtype, shape             meaning
==========================  =======================  ======================================
``grid/<name>``             as in ``GridTables``     every table of
                                                     :class:`zernike3d.maths.geometry.GridTables`,
                                                     chunked along axis 0 (<= 8 MiB a chunk)
``radial_by_l``             float64,                 R_nl at every shell radius, l-major:
                            (order+1, kmax+1,        ``[l, k, shell]`` = R_{l+2k, l}; zero
                            n_shells)                where l + 2k > order. One chunk per l,
                                                     so the rows a transform needs for one l
                                                     are one read (kmax = order // 2).
==========================  =======================  ======================================

No angular table is stored: the transforms recompute Pbar_lm(cos theta) per pair, which
the planner measures to be cheaper than reading it back (see :mod:`zernike3d.planning`).

Group attributes: ``store_format``, ``key`` (the ``Basis.key``), ``geometry``
(``BallGeometry.to_dict()``), ``order``, ``table_format``, ``arrays`` ({name: {dtype,
shape, sha256}}), ``sha256`` (of the sorted ``name:dtype:shape:sha256`` lines, i.e. of all
array bytes in C order) and ``versions`` (zernike3d, numpy, zarr that wrote it).

Guarantees. A store is built under a temporary name and renamed when complete
(:func:`zernike3d.io.atomic.atomic_path`), so the final name holds a complete store or
nothing. Opening verifies the key, geometry, order, formats and every checksum; any
mismatch is logged in one line and the store is rebuilt, never trusted. Builds hold an
exclusive ``fcntl.flock`` on ``DIR/<key>.zarr.lock``: a second job asking for the same
store waits, then reuses the first job's store. The temporaries of a killed build are
removed by the next build (:func:`zernike3d.io.atomic.remove_stale_temporaries`).
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import logging
from pathlib import Path

import numpy as np
import zarr

from zernike3d.io.atomic import atomic_path, zarr_kind
from zernike3d.maths.basis import RADIAL_TABLE_LIMIT, TABLE_FORMAT, Basis, radial_table_bytes
from zernike3d.maths.geometry import BallGeometry, GridTables
from zernike3d.maths.indexing import nl_table

#: bump when the layout above changes, so that older stores are rebuilt
STORE_FORMAT = 1
#: target size of one chunk of a grid table (bytes)
GRID_CHUNK_BYTES = 8 * 2**20
#: how :func:`load_basis` holds the radial table
RADIAL_MODES = ("memory", "stream", "recompute")
#: what write_store may replace: an earlier (stale or damaged) basis store
STORE_OUTPUT = zarr_kind("a zernike3d basis store", lambda attrs: "store_format" in attrs and "key" in attrs,
                         arrays=("grid", "radial_by_l"))

log = logging.getLogger(__name__)


class StaleStore(Exception):
    """A store that must not be trusted; ``str(err)`` says why."""


@dataclasses.dataclass(frozen=True)
class StoreResult:
    """Where the store is, and whether this call built it (and why)."""

    path: Path
    built: bool
    reason: str | None = None


def store_path(cache_dir, key):
    return Path(cache_dir) / f"{key}.zarr"


def basis_key(geometry, order):
    """``Basis.key`` of (geometry, order), without computing the radial table."""
    return Basis(geometry, order, geometry.grid).key


def ensure_store(cache_dir, geometry, order):
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


def write_store(path, basis):
    """Write ``basis`` (grid tables + radial table) to ``path`` atomically."""
    with atomic_path(path, STORE_OUTPUT) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        records = {}
        for name, values in basis.grid.arrays().items():
            records[f"grid/{name}"] = _write_array(group, f"grid/{name}", values)
        records["radial_by_l"] = _write_radial(group, basis)
        group.attrs.update(_attributes(basis, records))


def open_store(path, geometry, order, radial="memory"):
    """The :class:`Basis` in the store at ``path``, checked while it is read.

    Raises :class:`StaleStore` (saying why) if the attributes or any checksum do not
    match. radial: 'memory' (read the table into RAM), 'stream' (read one l at a time
    from the store while transforming; the table is still read once, to check it) or
    'recompute' (ignore the stored table).
    """
    if radial not in RADIAL_MODES:
        raise ValueError(f"radial must be one of {RADIAL_MODES}, got {radial!r}")
    group = _open_checked(Path(path), geometry, order)
    records = group.attrs["arrays"]
    grid = GridTables(**{
        name: np.concatenate(list(_checked_slabs(group, f"grid/{name}", records)))
        for name in GridTables.__dataclass_fields__
    })
    radial_by_l = group["radial_by_l"]
    slabs = _checked_slabs(group, "radial_by_l", records)
    if radial == "memory":
        return Basis(geometry, order, grid, _radial_table(slabs, order))
    for _ in slabs:
        pass
    if radial == "stream":
        return StreamedBasis(geometry, order, grid, radial_by_l)
    return Basis(geometry, order, grid)


def load_basis(path_or_json, geometry=None, order=None, radial=None):
    """A :class:`Basis` from a store, a ``basis.json`` or a cache directory.

    geometry, order: what the caller needs (default: those recorded in the json/store).
    A missing, stale or mismatched store is rebuilt in its cache directory. radial: see
    :func:`open_store`; None keeps the table in memory up to
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
    if radial is None:
        fits = radial_table_bytes(order, geometry.grid.n_shells) <= RADIAL_TABLE_LIMIT
        radial = "memory" if fits else "stream"
    path = store_path(cache_dir, basis_key(geometry, order))
    for attempt in range(3):
        try:
            return open_store(path, geometry, order, radial)
        except StaleStore as err:
            if str(err) != "missing":
                log.warning("basis store %s: %s; rebuilding", path, err)
            ensure_store(cache_dir, geometry, order)
    raise StaleStore(f"{path}: still invalid after rebuilding")


def read_basis_record(path):
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


def basis_record(result, geometry, order):
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

    def __init__(self, geometry, order, grid, radial_by_l):
        super().__init__(geometry, order, grid, radial_table=None)
        self._radial_by_l = radial_by_l

    def radial(self, l):
        return self._radial_by_l[l, : (self.order - l) // 2 + 1]


def _problem(path, geometry, order):
    """Why the store at ``path`` cannot be used (a short phrase), or None if it can."""
    try:
        group = _open_checked(path, geometry, order)
        for name in group.attrs["arrays"]:
            for _ in _checked_slabs(group, name, group.attrs["arrays"]):
                pass
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
    if not isinstance(records, dict) or _combined_digest(records) != attrs.get("sha256"):
        raise StaleStore("attribute sha256 does not match the array checksums")
    return group


def _checked_slabs(group, name, records):
    """Yield ``group[name]`` chunk by chunk along axis 0; :class:`StaleStore` at the end
    if its dtype, shape or sha256 differ from ``records[name]``."""
    record = records[name]
    try:
        array = group[name]
        if [array.dtype.str, list(array.shape)] != [record["dtype"], record["shape"]]:
            raise StaleStore(f"array {name} is {array.dtype} {array.shape}, expected "
                             f"{record['dtype']} {tuple(record['shape'])}")
        digest = hashlib.sha256()
        step = max(array.chunks[0], 1)
        for start in range(0, max(array.shape[0], 1), step):
            slab = np.ascontiguousarray(array[start : start + step])
            digest.update(slab.tobytes())
            yield slab
    except StaleStore:
        raise
    except Exception as err:  # a damaged chunk fails to decode
        raise StaleStore(f"array {name} {_unreadable(err)}") from None
    if digest.hexdigest() != record["sha256"]:
        raise StaleStore(f"checksum of {name} does not match")


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
        "sha256": _combined_digest(records),
        "versions": {
            "zernike3d": _version("zernike3d"),
            "numpy": np.__version__,
            "zarr": zarr.__version__,
        },
    }


def _write_array(group, name, values):
    values = np.ascontiguousarray(values)
    row_bytes = max(values[:1].nbytes, 1)
    chunks = (max(1, min(values.shape[0], GRID_CHUNK_BYTES // row_bytes)),) + values.shape[1:]
    chunks = tuple(max(c, 1) for c in chunks)
    array = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=chunks)
    array[...] = values
    return _record(values.dtype, values.shape, hashlib.sha256(values.tobytes()))


def _write_radial(group, basis):
    """``radial_by_l`` written one l (= one chunk) at a time; returns its record."""
    order, n_shells = basis.order, basis.grid.n_shells
    shape = (order + 1, order // 2 + 1, n_shells)
    array = group.create_array("radial_by_l", shape=shape, dtype="float64", chunks=(1,) + shape[1:])
    digest = hashlib.sha256()
    for l in range(order + 1):
        slab = np.zeros(shape[1:])
        rows = basis.radial(l)
        slab[: rows.shape[0]] = rows
        array[l] = slab
        digest.update(slab.tobytes())
    return _record(np.dtype("float64"), shape, digest)


def _radial_table(slabs, order):
    """The radial table in ``nl_table(order)`` row order from the ``radial_by_l`` slabs."""
    nl = nl_table(order)
    rows_by_l = [np.flatnonzero(nl[:, 1] == l) for l in range(order + 1)]
    table = None
    for l, slab in enumerate(slabs):
        if table is None:
            table = np.empty((len(nl), slab.shape[-1]))
        table[rows_by_l[l]] = slab[0, : rows_by_l[l].size]
    return table


def _record(dtype, shape, digest):
    return {"dtype": np.dtype(dtype).str, "shape": list(shape), "sha256": digest.hexdigest()}


def _combined_digest(records):
    lines = "".join(
        f"{name}:{r['dtype']}:{r['shape']}:{r['sha256']}\n" for name, r in sorted(records.items())
    )
    return hashlib.sha256(lines.encode()).hexdigest()


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
