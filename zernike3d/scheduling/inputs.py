"""What the resource estimates read of a job's inputs: shapes from file headers alone.

The box, number of volumes and particles of a dataset bundle (the ``.npy`` headers inside
the uncompressed ``.npz``), of an ``.mrc`` map (its header, mrcfile), of a cryoSPARC
``.cs`` table or job folder: a few hundred bytes each, no array is loaded.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np


@dataclass(frozen=True)
class BundleShape:
    """What the estimate needs to know about the data: read cheaply, never the arrays."""

    box: int
    n_volumes: int
    n_particles: int
    voxel_size: float
    #: bytes per row of the particles table (import only; 0 when not known)
    row_bytes: int = 0


def npz_member_shapes(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape, dtype)}`` of the arrays in an ``.npz``, reading only their ``.npy``
    headers (numpy.lib.format; no array is loaded)."""
    from numpy.lib import format as npy

    shapes = {}
    with open(str(path), "rb") as raw, zipfile.ZipFile(raw) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                with archive.open(info) as member:
                    shape, _, dtype = _read_npy_header(npy, member)
                    shapes[info.filename[: -len(".npy")]] = (shape, dtype)
    return shapes


def _read_npy_header(npy: Any, stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` header at the start of
    ``stream``, which is left at the data."""
    major, _ = npy.read_magic(stream)
    read = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
    return read(stream)


def npz_scalar(path: str | os.PathLike, key: str, default: float = 1.0) -> float:
    """A scalar float member of an ``.npz`` (e.g. ``voxel_size``), reading that member
    alone; ``default`` when it is absent or not a float scalar."""
    from numpy.lib import format as npy

    with open(str(path), "rb") as raw, zipfile.ZipFile(raw) as archive:
        if f"{key}.npy" not in archive.namelist():
            return default
        with archive.open(f"{key}.npy") as member:
            shape, _, dtype = _read_npy_header(npy, member)
            if shape != () or dtype.kind != "f":
                return default
            return float(np.frombuffer(member.read(dtype.itemsize), dtype=dtype)[0])


def bundle_shape(path: str | os.PathLike) -> BundleShape:
    """Shape of the data behind ``path``: a dataset bundle ``.npz`` (import/preprocess
    output), a moments ``.npz``, an ``.mrc`` map, a cryoSPARC job directory or a
    ``.cs`` table. Raises ``FileNotFoundError(path)`` if it does not exist yet."""
    path_str = str(path)
    p = Path(path_str)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", path_str)
    if p.is_dir():
        return _job_dir_shape(p)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        shapes = npz_member_shapes(p)
        if "maps" in shapes:  # dataset bundle
            maps = shapes["maps"][0]
            latents = shapes.get("latents", ((0, 0),))[0]
            return BundleShape(int(maps[-1]), int(maps[0]), int(latents[0]) if latents else 0,
                               npz_scalar(p, "voxel_size"))
        if "moments" in shapes:  # moments file: no box; the caller should pass the bundle
            rows = shapes["moments"][0]
            return BundleShape(0, int(rows[0]) if len(rows) == 2 else 1, 0, 1.0)
        # a WIGGLE bundle or another npz: size the largest cubic array
        cubes = [s for s, _ in shapes.values() if len(s) >= 3 and s[-1] == s[-2] == s[-3]]
        box = max((s[-1] for s in cubes), default=0)
        volumes = sum(math.prod(s[:-3]) for s in cubes)
        return BundleShape(int(box), max(volumes, 1), 0, 1.0)
    if suffix in (".mrc", ".map", ".mrcs"):
        return BundleShape(mrc_box(p), 1, 0, 1.0)
    if suffix == ".cs":
        return BundleShape(0, 0, _cs_rows(p), 1.0)
    return BundleShape(0, 1, 0, 1.0)


def mrc_box(path: str | os.PathLike) -> int:
    """Largest of the map's dimensions (voxels), from its header alone (mrcfile)."""
    import mrcfile

    with mrcfile.open(str(path), header_only=True, permissive=True) as mrc:
        header = mrc.header
        return int(max(header.nx, header.ny, header.nz))


def mrc_voxel_size(path: str | os.PathLike) -> float | None:
    """The map's voxel size along x in Å, from its header alone (mrcfile); None if the
    header gives none (0)."""
    import mrcfile

    with mrcfile.open(str(path), header_only=True, permissive=True) as mrc:
        size = float(mrc.voxel_size.x)
    return size if size > 0 else None


def cs_row_count(path: str | os.PathLike) -> int | None:
    """Rows of a cryoSPARC ``.cs`` table, from its header alone: a table saved with
    ``np.save`` is memory-mapped; the compressed (CSDAT) format's JSON header states its
    ``length`` (cryosparc-tools' ``Dataset.inspect``, which decodes nothing). None if the
    file is neither."""
    try:
        return int(np.load(str(path), mmap_mode="r", allow_pickle=False).shape[0])
    except (ValueError, OSError, IndexError):
        pass
    try:
        from cryosparc.dataset import Dataset

        return int(Dataset.inspect(path)["length"])
    except Exception:  # noqa: BLE001 - cryosparc-tools raises several kinds on a file that is not a .cs
        return None


def _cs_rows(path: str | os.PathLike) -> int:
    rows = cs_row_count(path)
    # not a readable table (the import stage will say why): guess ~200 bytes a row
    return rows if rows is not None else max(1, os.path.getsize(path) // 200)


def table_row_bytes(dataset_path: str | os.PathLike, particles_cs: str | None = None) -> int:
    """Bytes per row of the particles ``.cs`` that `zernike3d cluster --subsets` reads for
    the dataset bundle ``dataset_path``: ``particles_cs``, or the table the dataset was
    imported from (its provenance), with the passthrough file beside it that is joined in
    (file size / rows: a compressed table holds more once read). 0 when none is known."""
    from zernike3d.io.cryosparc import passthrough_path
    from zernike3d.io.cryosparc_export import source_particles_cs

    if particles_cs is None:
        with np.load(str(dataset_path)) as bundle:
            steps = json.loads(str(bundle["provenance"])) if "provenance" in bundle.files else []
        particles_cs = source_particles_cs(steps)
    total = 0
    for path in (particles_cs, particles_cs and passthrough_path(particles_cs)):
        if path and os.path.isfile(path):
            total += os.path.getsize(path) // max(cs_row_count(path) or 1, 1)
    return total


def _job_dir_shape(directory: Path) -> BundleShape:
    maps = sorted(directory.glob("*.mrc"))
    box = max((mrc_box(m) for m in maps), default=0)
    particles = sorted(directory.glob("*particles*.cs"))
    n_particles = _cs_rows(particles[0]) if particles else 0
    row_bytes = (os.path.getsize(particles[0]) // max(n_particles, 1)) if particles else 0
    return BundleShape(box, max(len(maps), 1), n_particles, 1.0, row_bytes)
