"""Latents and uids of a cryoSPARC 3D Variability job's particles (``.cs`` files).

A ``.cs`` file is a table of particles, one column per field (``uid``, ``blob/psize_A``,
``alignments3D/pose``, ...). It is read with cryosparc-tools' ``Dataset.load``, which
understands both the NumPy format (``np.save`` of a structured array) and the newer
compressed format. A 3D Variability job adds, for each component k, the fields
``components_mode_{k}/component`` (uint32, the value k) and ``components_mode_{k}/value``
(float32, the particle's latent coordinate along component k, unitless).

cryoSPARC splits each output of a job in two files: ``J<n>_<output>.cs`` with the
fields the job made (for 3D Variability: ``uid`` and ``components_mode_*``) and
``J<n>_passthrough_<output>.cs`` with the fields it passed on unchanged from its inputs
(``blob``, ``ctf``, ``alignments3D``, ...), row for row by uid (:func:`passthrough_path`).
An output downloaded or exported from cryoSPARC holds both in one file.

A 3D Variability job's folder holds its base map ``J<n>_map.mrc``, its components
``J<n>_component_<k>.mrc`` and its particles ``J<n>_particles.cs``
(:func:`find_job_files`).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cryosparc.dataset import Dataset as CsDataset
from cryosparc.dataset import DatasetLoadError

from zernike3d.errors import InputError

_COMPONENT_FIELD = re.compile(r"^components_mode_(\d+)/")
#: J<n>_<output>.cs, J<n>_<iteration>_<output>.cs, or either downloaded
#: (cryosparc_P<p>_ in front); not a passthrough file itself
_JOB_OUTPUT = re.compile(r"^(?P<job>.*J\d+(?:_\d+)?)_(?P<output>(?!passthrough_).+)\.cs$")
#: first bytes of a compressed (CSDAT) .cs file (cryosparc.dataset.FORMAT_MAGIC_PREFIXES)
CSDAT_MAGIC = b"\x95CSDAT"


def _field_dtype(field):
    """NumPy dtype of a cryosparc-tools field ``(name, dtype)`` or ``(name, dtype, shape)``."""
    return np.dtype((field[1], tuple(field[2]))) if len(field) > 2 else np.dtype(field[1])


@dataclasses.dataclass(frozen=True)
class VariabilityParticles:
    """What the import stage needs from a 3DVA particles table.

    ``uid`` uint64 (P,); ``latents`` float32 (P, K), column k = component k;
    ``psize_A`` (Å per pixel) and ``blob_box`` (pixels) of the particle images of the
    first particle, or None when the table has no ``blob/psize_A`` / ``blob/shape``.
    """

    uid: np.ndarray
    latents: np.ndarray
    psize_A: float | None
    blob_box: int | None

    @property
    def n_components(self) -> int:
        return self.latents.shape[1]


def passthrough_name(path: str | Path) -> str | None:
    """The name a job's passthrough file beside ``path`` has (whether or not it is
    there): ``J<n>_passthrough_<output>.cs``, or None if ``path`` is not named as a job's
    output."""
    match = _JOB_OUTPUT.match(Path(path).name)
    return None if match is None else f"{match['job']}_passthrough_{match['output']}.cs"


def passthrough_path(path: str | Path) -> Path | None:
    """The passthrough file beside a job's output ``path``
    (``J<n>_passthrough_<output>.cs`` beside ``J<n>_<output>.cs``), or None if there is none."""
    name = passthrough_name(path)
    if name is None:
        return None
    sibling = Path(path).with_name(name)
    return sibling if sibling.is_file() else None


def checked_header(path: str | Path) -> Any:
    """cryosparc-tools' header of the ``.cs`` table ``path`` (``dtype``: its fields,
    ``length``: its rows), after the checks that loading it needs: a readable ``.cs`` with
    a ``uid`` field, and for a compressed (CSDAT) file every column present
    (:func:`check_csdat_framing`: cryosparc-tools crashes the process, a segmentation
    fault, on a truncated one when it frees the half-decoded string columns). A table
    without uids is refused: cryosparc-tools would make up new random uids on every
    load. :class:`InputError` naming ``path`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "particles file not found")
    try:
        header = CsDataset.inspect(path)
    except (DatasetLoadError, ValueError, OSError) as err:
        cause = str(err.__cause__ or err).splitlines()[0][:120]
        raise InputError(path, f"not a readable cryoSPARC .cs file, or a truncated one ({cause})") from None
    if "uid" not in [field[0] for field in header["dtype"]]:
        raise InputError(path, "particles table has no uid field (cryoSPARC would invent random uids on "
                         "every load, so results could not be traced back to particles)")
    if is_compressed(path):
        check_csdat_framing(path, header)
    return header


def is_compressed(path: str | Path) -> bool:
    """True for cryoSPARC's compressed (CSDAT) format, False for NumPy ``.npy`` records."""
    with open(path, "rb") as f:
        return f.read(len(CSDAT_MAGIC)) == CSDAT_MAGIC


def load_table(path: str | Path, fields: Sequence[str] | None = None) -> CsDataset:
    """The cryosparc-tools Dataset of a ``.cs`` that passed :func:`checked_header`: every
    field, or ``uid`` and ``fields``."""
    try:
        return CsDataset.load(path, fields=fields)
    except (DatasetLoadError, ValueError, OSError) as err:
        cause = str(err.__cause__ or err).splitlines()[0][:120]
        raise InputError(path, f"not a readable cryoSPARC .cs file, or a truncated one ({cause})") from None


def read_particles(path: str | Path) -> VariabilityParticles:
    """Read a 3DVA ``particles.cs``; :class:`InputError` naming ``path`` if it is not one.

    Only the fields used are loaded (uid, ``components_mode_*/value``, ``blob/psize_A``,
    ``blob/shape``), all numeric. When the table has no ``blob`` fields (a job's own
    ``J<n>_particles.cs``), the pixel size and box come from its passthrough file, if it
    is there and readable (they only serve a check of the map's voxel size).
    """
    path = Path(path)
    header = checked_header(path)
    fields = [field[0] for field in header["dtype"]]
    wanted = [f for f in fields if f in _SAMPLING_FIELDS or _COMPONENT_FIELD.match(f) and f.endswith("/value")]
    _check_numeric(path, header, ["uid", *wanted])
    table = load_table(path, wanted)
    particles = particles_from_table(path, fields, table.__getitem__)
    passthrough = passthrough_path(path)
    if particles.psize_A is None and passthrough is not None:
        particles = _sampling_from_passthrough(particles, passthrough)
    return particles


_SAMPLING_FIELDS = ("blob/psize_A", "blob/shape")


def _check_numeric(path, header, fields):
    kinds = {field[0]: _field_dtype(field).base.kind for field in header["dtype"]}
    bad = [f for f in fields if kinds[f] not in "iuf"]
    if bad:
        raise InputError(path, f"non-numeric fields: {', '.join(bad)}")


def _sampling_from_passthrough(particles, path):
    """``particles`` with the pixel size and box of its first particle's row in the
    passthrough file ``path``; unchanged, with a warning, if that cannot be read."""
    try:
        header = checked_header(path)
        fields = [field[0] for field in header["dtype"]]
        wanted = [f for f in _SAMPLING_FIELDS if f in fields]
        if not wanted:
            return particles
        _check_numeric(path, header, wanted)
        table = load_table(path, wanted)
    except InputError as err:
        warnings.warn(f"{err}: the particles' pixel size is not known", stacklevel=3)
        return particles
    rows = np.flatnonzero(np.asarray(table["uid"], dtype=np.uint64) == particles.uid[0])
    if rows.size == 0:
        return particles
    psize, box = _sampling(wanted, lambda name: table[name][rows])
    return dataclasses.replace(particles, psize_A=psize, blob_box=box)


def _sampling(fields, column):
    """(``blob/psize_A`` in Å, the box in pixels of ``blob/shape``) of the first row, each
    None when the table lacks the field."""
    psize = float(column("blob/psize_A")[0]) if "blob/psize_A" in fields else None
    box = int(np.ravel(column("blob/shape")[0])[0]) if "blob/shape" in fields else None
    return psize, box


def check_csdat_framing(path: Path, header: Any) -> None:
    """Check that a compressed (CSDAT) ``.cs`` file holds every column its header lists.

    Layout (cryosparc-tools ``Dataset.stream``): 6 magic bytes, a little-endian uint32
    header size, the JSON header, then per field (if the table has rows) a uint32 size
    and that many bytes (lz4-compressed, or the raw column of ``length`` x itemsize
    bytes), then the string heap. InputError naming ``path`` if a column runs past the
    end of the file or a raw column has the wrong size.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(len(CSDAT_MAGIC))
        offset = len(CSDAT_MAGIC) + 4 + int.from_bytes(f.read(4), "little")
        compressed = set(header["compressed_fields"])
        for field in header["dtype"] if header["length"] else []:
            f.seek(offset)
            word = f.read(4)
            column = int.from_bytes(word, "little")
            if len(word) < 4 or offset + 4 + column > size:
                raise InputError(path, f"truncated .cs file: column {field[0]} ends past the end of the file "
                                 f"({size} bytes; an interrupted copy?)")
            dtype = _field_dtype(field)
            if field[0] not in compressed and dtype.kind != "O" and column != header["length"] * dtype.itemsize:
                raise InputError(path, f"damaged .cs file: column {field[0]} holds {column} bytes, "
                                 f"expected {header['length'] * dtype.itemsize}")
            offset += 4 + column


def particles_from_table(source: str | Path, fields: Sequence[str], column: Callable[[str], np.ndarray]) -> VariabilityParticles:
    """Latents from any particles table: ``fields`` the column names, ``column(name)`` an array.

    Shared by cryoSPARC datasets and NumPy structured arrays (e.g. in a WIGGLE bundle).
    """
    indices = sorted({int(m.group(1)) for f in fields if (m := _COMPONENT_FIELD.match(f))})
    if not indices:
        raise InputError(source, "not a 3D Variability particles file: no "
                         "components_mode_*/value fields (use the particles output of a "
                         "3D Variability job)")
    missing = [f"components_mode_{k}/value" for k in range(indices[-1] + 1)
               if f"components_mode_{k}/value" not in fields]
    if missing:
        raise InputError(source, f"3D Variability fields incomplete: missing {', '.join(missing)}")
    if "uid" not in fields:
        raise InputError(source, "particles table has no uid field")
    uid = np.asarray(column("uid"), dtype=np.uint64)
    if uid.size == 0:
        raise InputError(source, "contains 0 particles")
    if uid.ndim != 1:
        raise InputError(source, f"field uid has shape {uid.shape[1:]} per particle; a uid is one number")
    values = [np.asarray(column(f"components_mode_{k}/value"), dtype=np.float32) for k in range(len(indices))]
    for k, value in enumerate(values):
        if value.shape != uid.shape:
            raise InputError(source, f"field components_mode_{k}/value has shape {value.shape[1:]} per particle; "
                                     "a latent is one number per particle and component")
    latents = np.stack(values, axis=1)
    bad = ~np.isfinite(latents)
    if bad.any():
        cols = ", ".join(f"components_mode_{k}/value" for k in np.flatnonzero(bad.any(axis=0)))
        raise InputError(source, f"{int(bad.any(axis=1).sum())} particles have NaN or "
                         f"infinite latents ({cols})")
    return VariabilityParticles(uid, latents, *_sampling(fields, column))


#: the outputs of a cryoSPARC 3D Variability job in its folder: J<n>_map.mrc,
#: J<n>_component_<k>.mrc (k = 0, 1, ...) and J<n>_particles.cs, or these files as
#: downloaded (cryosparc_P<p>_ in front)
JOB_FILE = re.compile(r"^(?:cryosparc_P\d+_)?(J\d+)_(?:(map)\.mrc|component_(\d+)\.mrc|(particles)\.cs)$")


def find_job_files(directory: str | Path) -> tuple[Path, list[Path], Path]:
    """``(map, [component_0, ...], particles)`` paths of the one 3DVA job in ``directory``
    (:data:`JOB_FILE`); :class:`InputError` naming what is missing or doubled."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "job directory not found")
    jobs: dict[str, Any] = {}
    for path in sorted(directory.iterdir()):
        match = JOB_FILE.match(path.name)
        if not match:
            continue
        job, is_map, k, is_particles = match.groups()
        files = jobs.setdefault(job, {"components": {}})
        slot, key = (files["components"], int(k)) if k is not None else (files, "map" if is_map else "particles")
        if key in slot:  # e.g. J7_map.mrc and its download cryosparc_P1_J7_map.mrc
            what = f"component {key}" if k is not None else f"the {key}"
            raise InputError(directory, f"two files for {what}: {slot[key].name} and {path.name}")
        slot[key] = path
    if not jobs:
        raise InputError(directory, "no 3D Variability outputs here (expected J<n>_map.mrc, "
                         "J<n>_component_<k>.mrc and J<n>_particles.cs)")
    if len(jobs) > 1:
        raise InputError(directory, f"outputs of several jobs ({', '.join(sorted(jobs))}); "
                         "name the files with --map, --components and --particles")
    (job, files), = jobs.items()
    components = files["components"]
    missing = [f"{job}_{key}{suffix}" for key, suffix in (("map", ".mrc"), ("particles", ".cs"))
               if key not in files]
    last = max(components, default=0)
    missing += [f"{job}_component_{k}.mrc" for k in range(last + 1) if k not in components]
    if missing:
        raise InputError(directory, f"incomplete 3D Variability job {job}: missing "
                         f"{', '.join(missing)}")
    return files["map"], [components[k] for k in sorted(components)], files["particles"]


def job_files_read(directory: str | Path) -> list[str]:
    """The files that importing the job in ``directory`` reads (:func:`find_job_files`:
    map, components, particles, and the particles' passthrough file when it is there),
    as strings: the inputs of the workflow's import job."""
    map_path, components, particles = find_job_files(directory)
    passthrough = passthrough_path(particles)
    return [str(p) for p in (map_path, *components, particles, passthrough) if p is not None]
