"""The index.csv of `zernike3d reconstruct --particles ... --out-dir DIR`.

One row per map written into DIR: ``file`` (the MRC's name, relative to DIR), ``kind``
(base, series, cluster, particle, latent, ...: what the map shows) and ``z_0`` ..
``z_{K-1}``, the latent point of the map (base + Σ_k z_k component_k; the base map is
z = 0). ``mapspace_*`` rows are the dataset's own maps combined at the same point (not
Zernike expansions).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError


@dataclass(frozen=True)
class IndexedMap:
    """One row of an index.csv: ``path`` of the map (the index's folder joined),
    ``kind``, and ``z`` (K,) float64, its latent point, or None where the index has no
    z columns."""

    path: Path
    kind: str
    z: np.ndarray | None

    @property
    def mapspace(self) -> bool:
        """Is this the dataset's own maps combined (mapspace_*), not an expansion?"""
        return self.path.name.startswith("mapspace_")


def read_maps_index(path: str | Path) -> list[IndexedMap]:
    """The maps listed in an index.csv, in its order. Raises :class:`InputError` for a
    file that cannot be read, has no rows or lacks the columns file and kind, or whose
    z values are not numbers."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise InputError(path, f"cannot be read: {err.strerror}") from None
    except (UnicodeDecodeError, csv.Error):
        rows = []
    if not rows or not {"file", "kind"} <= set(rows[0]):
        raise InputError(path, "is not an index.csv of `zernike3d reconstruct` (columns file, kind, ...)")
    columns = sorted((c for c in rows[0] if re.fullmatch(r"z_\d+", c)), key=lambda c: int(c[2:]))
    entries = []
    for row in rows:
        try:
            z = np.array([float(row[c]) for c in columns]) if columns else None
        except (TypeError, ValueError):
            raise InputError(path, f"row {row['file']}: its latents {[row[c] for c in columns]} are not numbers") from None
        entries.append(IndexedMap(path.parent / row["file"], row["kind"], z))
    return entries
