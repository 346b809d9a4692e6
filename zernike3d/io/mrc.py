"""Read and write cryo-EM maps in MRC format (through ``mrcfile``).

Maps are held as ``data[z, y, x]`` (x the last axis, as MRC files store them when
their axis map is the usual ``mapc, mapr, maps = 1, 2, 3``; other axis maps are
transposed to this order). The voxel size is in Å. The origin is (x, y, z) in Å of voxel
(0, 0, 0): the MRC header's ``origin`` field or, when that is all zero, the start indices
(``nxstart``, ``nystart``, ``nzstart``, in the file's column, row, section order) times the
voxel size, as ChimeraX places a map (EMDB maps often carry their offset that way). It
places the map in a viewer and is written back as the ``origin`` field (start indices 0);
it plays no part in where the Zernike ball sits (see docs/conventions.md).

``read_map`` accepts only what the transforms can use: a 3D cubic box of finite
values with a known, isotropic voxel size. Anything else raises
:class:`~zernike3d.errors.InputError` naming the file and the problem.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

import zernike3d
from zernike3d.errors import InputError
from zernike3d.io.atomic import OutputKind, atomic_path

#: every map we write carries a header label starting with this; only such a map is
#: ever replaced by a later write (see zernike3d/io/atomic.py)
LABEL = "zernike3d"


@dataclass(frozen=True)
class MapFile:
    """A map: ``data`` float32 (N, N, N) indexed [z, y, x]; ``voxel_size`` Å;
    ``origin`` (x, y, z) Å from the MRC header."""

    data: np.ndarray
    voxel_size: float
    origin: tuple


def read_map(path: str | Path, voxel_size: float | None = None) -> MapFile:
    """Read and validate an MRC map.

    voxel_size: Å, overrides the header (needed when the header says 0).
    Raises InputError for a missing or unreadable file, a file that is not MRC, data
    that is not 3D, empty or not a cubic box, complex data, NaN or infinite voxels or
    origin, a voxel size that is not finite and positive, and a zero or anisotropic
    header voxel size without an override. Warnings of mrcfile (e.g. a file longer than
    its header says) are passed on, naming the file, only for a map that is accepted:
    a refused one gets its one-line error alone.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mapfile = _read_checked(Path(path), voxel_size)
    for warning in caught:
        warnings.warn(f"{path}: {warning.message}", warning.category, stacklevel=2)
    return mapfile


def read_central_section(path: str | Path) -> np.ndarray:
    """The central xy section ``data[N // 2]`` (float32 (N, N), [y, x]) of a cubic map,
    reading only that section from disk (a memory map): a figure of one slice need not
    read 31 whole maps. A map stored in another axis order, or one whose section holds
    NaN or infinite voxels, goes through :func:`read_map` (the whole map), which reads or
    refuses it with its usual one line."""
    path = Path(path)
    try:
        with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
            header, data = mrc.header, mrc.data
            plain = (int(header.mapc), int(header.mapr), int(header.maps)) == (1, 2, 3)
            if plain and data is not None and data.ndim == 3 and len(set(data.shape)) == 1 and data.size \
                    and not np.iscomplexobj(data):
                section = np.array(data[data.shape[0] // 2], dtype=np.float32)
                if np.isfinite(section).all():
                    return section
    except (ValueError, OSError):
        pass  # read_map says what is wrong
    data = read_map(path).data
    return data[data.shape[0] // 2]


def _read_checked(path, voxel_size):
    """:func:`read_map` without the handling of warnings."""
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a file")
    try:
        with mrcfile.open(path, mode="r", permissive=False) as mrc:
            header = mrc.header
            data = np.asarray(mrc.data)
            header_voxel = _header_floats(mrc.voxel_size.tolist())
            origin = _header_floats(header.origin.tolist())
            axis_map = (int(header.maps), int(header.mapr), int(header.mapc))
            starts = (int(header.nzstart), int(header.nystart), int(header.nxstart))  # sections, rows, columns
            image_stack = int(header.ispg) == 0 and int(header.mz) == 1 and int(header.nz) > 1
    except ValueError as err:
        raise InputError(path, f"not an MRC file, or a damaged one ({err})")
    except OSError as err:
        raise InputError(path, f"cannot read the file ({err.strerror or err})")

    if data.ndim != 3:
        raise InputError(path, f"not a 3D map (data shape {data.shape})")
    if data.size == 0:
        raise InputError(path, f"the header gives 0 voxels along an axis (data shape {data.shape})")
    if len(set(data.shape)) != 1:
        z, y, x = data.shape
        raise InputError(path, f"box is not cubic (x, y, z = {x}, {y}, {z} voxels)")
    if np.iscomplexobj(data):
        raise InputError(path, f"complex data ({data.dtype}) is not a density map")
    if sorted(axis_map) != [1, 2, 3]:
        raise InputError(path, f"invalid axis map (maps, mapr, mapc) = {axis_map}")
    # data axes are (sections, rows, columns); reorder them to (z, y, x)
    data = data.transpose([axis_map.index(axis) for axis in (3, 2, 1)])
    data = np.ascontiguousarray(data, dtype=np.float32)

    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(path, f"{bad} of {data.size} voxels are NaN or infinite")

    if voxel_size is None:
        if not np.isfinite(header_voxel).all():
            raise InputError(path, f"voxel size in the header is not finite (x, y, z = {header_voxel} Å); "
                             "give it explicitly (--voxel-size)")
        if max(header_voxel) <= 0:
            raise InputError(path, "voxel size in the header is 0; give it explicitly (--voxel-size)")
        if not np.allclose(header_voxel, header_voxel[0], rtol=1e-4):
            if image_stack:
                raise InputError(path, f"a stack of {data.shape[0]} images (space group 0, one image per "
                                 "section), not a 3D map")
            raise InputError(path, f"voxel size differs between axes (x, y, z = {header_voxel} Å)")
        voxel_size = header_voxel[0]
    voxel_size = float(voxel_size)
    if not (np.isfinite(voxel_size) and voxel_size > 0):
        raise InputError(path, f"voxel size must be a finite positive number of Å, got {voxel_size}")
    if not np.isfinite(origin).all():
        raise InputError(path, f"origin in the header is not finite (x, y, z = {origin} Å)")
    if not any(origin):  # (x, y, z) start of the axis each of sections, rows, columns runs along
        start = dict(zip(axis_map, starts))
        origin = tuple(float(start[axis] * voxel_size) for axis in (1, 2, 3))
    return MapFile(data=data, voxel_size=voxel_size, origin=origin)


def _header_floats(values):
    """float32 header values to 6 significant digits: 1.3, not 1.2999999523 or the
    1.3000001 that mrcfile's cell / box division gives."""
    return tuple(float(f"{v:.6g}") for v in values)


def written_by_zernike3d(path: str | Path) -> bool:
    """True if the MRC header of ``path`` (read alone) has a label starting with :data:`LABEL`."""
    return any(label.startswith(LABEL) for label in read_labels(path))


def read_labels(path: str | Path) -> list[str]:
    """The text labels of the MRC header of ``path`` (the header alone is read)."""
    with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
        count = min(int(mrc.header.nlabl), len(mrc.header.label))
        return [bytes(label).decode("ascii", "replace").rstrip(" \x00") for label in mrc.header.label[:count]]


@dataclass(frozen=True)
class MapHeader:
    """What the header of an MRC map says, the data unread: ``shape`` (sections, rows,
    columns), ``voxel_size`` (x, y, z) Å, ``labels``."""

    shape: tuple
    voxel_size: tuple
    labels: list


def read_header(path: str | Path) -> MapHeader:
    """The :class:`MapHeader` of the MRC map ``path``; :class:`InputError` where it cannot
    be read as one."""
    path = Path(path)
    try:
        with mrcfile.open(path, mode="r", header_only=True, permissive=False) as mrc:
            header = mrc.header
            shape = (int(header.nz), int(header.ny), int(header.nx))
            voxel_size = _header_floats(mrc.voxel_size.tolist())
    except ValueError as err:
        raise InputError(path, f"not an MRC file, or a damaged one ({err})") from None
    except OSError as err:
        raise InputError(path, f"cannot read the file ({err.strerror or err})") from None
    return MapHeader(shape, voxel_size, read_labels(path))


MAP_OUTPUT = OutputKind("an MRC map written by zernike3d (no 'zernike3d' header label)", written_by_zernike3d)


def write_map(path: str | Path, data: np.ndarray, voxel_size: float, origin: Sequence[float] = (0.0, 0.0, 0.0),
              output: bool = True, labels: Sequence[str] = ()) -> None:
    """Write ``data[z, y, x]`` as a float32 MRC map, atomically, labelled
    ``zernike3d <version>`` in the header, then ``labels`` (each at most 80 ASCII
    characters: what the map is, for a later stage to check); an existing file at
    ``path`` is replaced only if it is such a map.

    voxel_size: Å (isotropic); origin: (x, y, z) Å, stored in the header's origin field.
    A map with a voxel that is not finite in float32 is refused (:class:`InputError`).
    ``output=False`` writes a map meant as an input (the synthetic job of `zernike3d
    example --job-dir`, the phantom of `zernike3d example`) without the label: a copy of
    it is then the user's map, which no later write replaces.
    """
    with np.errstate(over="ignore"):  # overflow is refused below, in one line
        data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"a map must be 3D, got shape {data.shape}")
    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
    if bad:  # never a map that no program can display
        raise InputError(path, f"{bad} voxels would not be finite in float32 (NaN, or beyond ±3.4e38); "
                               "nothing written (are the latents or values asked for far too large?)")
    with atomic_path(path, MAP_OUTPUT) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            if output:
                mrc.add_label(f"{LABEL} {zernike3d.__version__}")  # read when written
                for label in labels:
                    mrc.add_label(label)
            mrc.voxel_size = float(voxel_size)
            mrc.header.origin = tuple(float(v) for v in origin)
