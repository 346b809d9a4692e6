"""Latents and uids of a cryoSPARC 3D Variability job's particles (``.cs`` files).

A ``.cs`` file is a table of particles, one column per field (``uid``, ``blob/psize_A``,
``alignments3D/pose``, ...). It is read with cryosparc-tools' ``Dataset.load``, which
understands both the NumPy format (``np.save`` of a structured array) and the newer
compressed format. A 3D Variability job adds, for each component k, the fields
``components_mode_{k}/component`` (uint32, the value k) and ``components_mode_{k}/value``
(float32, the particle's latent coordinate along component k, unitless).
"""

import dataclasses
import re
from pathlib import Path

import numpy as np
from cryosparc.dataset import Dataset as CsDataset
from cryosparc.dataset import DatasetLoadError

from zernike3d.errors import InputError

_COMPONENT_FIELD = re.compile(r"^components_mode_(\d+)/")
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
    def n_components(self):
        return self.latents.shape[1]


def read_particles(path):
    """Read a 3DVA ``particles.cs``; :class:`InputError` naming ``path`` if it is not one.

    Only the fields used are loaded (uid, ``components_mode_*/value``, ``blob/psize_A``,
    ``blob/shape``), all numeric. A compressed (CSDAT) file's framing is checked first
    (:func:`check_csdat_framing`): cryosparc-tools crashes the process (segmentation
    fault) on a truncated one when it frees the half-decoded string columns, so those
    are never decoded. A table without a ``uid`` field is refused: cryosparc-tools would
    make up new random uids on every load.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "particles file not found")
    try:
        header = CsDataset.inspect(path)
    except DatasetLoadError as err:
        cause = str(err.__cause__ or err).splitlines()[0][:120]
        raise InputError(path, f"not a readable cryoSPARC .cs file, or a truncated one ({cause})") from None
    fields = [field[0] for field in header["dtype"]]
    if "uid" not in fields:
        raise InputError(path, "particles table has no uid field (cryoSPARC would invent random uids on "
                         "every load, so results could not be traced back to particles)")
    with open(path, "rb") as f:
        if f.read(len(CSDAT_MAGIC)) == CSDAT_MAGIC:
            check_csdat_framing(path, header)
    wanted = [f for f in fields if f in ("blob/psize_A", "blob/shape") or _COMPONENT_FIELD.match(f) and f.endswith("/value")]
    kinds = {field[0]: _field_dtype(field).base.kind for field in header["dtype"]}
    if any(kinds[f] not in "iuf" for f in ["uid", *wanted]):
        raise InputError(path, f"non-numeric fields: {', '.join(f for f in ['uid', *wanted] if kinds[f] not in 'iuf')}")
    try:
        table = CsDataset.load(path, fields=wanted)
    except DatasetLoadError as err:
        raise InputError(path, f"not a readable cryoSPARC .cs file ({err.__cause__ or err})") from None
    return particles_from_table(path, fields, table.__getitem__)


def check_csdat_framing(path, header):
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


def particles_from_table(source, fields, column):
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
    latents = np.stack(
        [np.asarray(column(f"components_mode_{k}/value"), dtype=np.float32)
         for k in range(len(indices))],
        axis=1,
    )
    bad = ~np.isfinite(latents)
    if bad.any():
        cols = ", ".join(f"components_mode_{k}/value" for k in np.flatnonzero(bad.any(axis=0)))
        raise InputError(source, f"{int(bad.any(axis=1).sum())} particles have NaN or "
                         f"infinite latents ({cols})")
    psize = float(column("blob/psize_A")[0]) if "blob/psize_A" in fields else None
    box = int(np.ravel(column("blob/shape")[0])[0]) if "blob/shape" in fields else None
    return VariabilityParticles(uid, latents, psize, box)
