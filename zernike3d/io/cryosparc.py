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
    """Read a 3DVA ``particles.cs``; :class:`InputError` naming ``path`` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "particles file not found")
    try:
        table = CsDataset.load(path, cstrs=True)
    except DatasetLoadError as err:
        cause = err.__cause__ or err
        raise InputError(path, f"not a readable cryoSPARC .cs file ({cause})") from None
    return particles_from_table(path, table.fields(), table.__getitem__)


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
