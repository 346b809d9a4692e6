"""Moments: the Zernike moments of one or more maps with the geometry they were taken in.

A thin object over :mod:`zernike3d.maths` (the mathematics) and
:mod:`zernike3d.io.moments_file` (the ``.npz`` format)::

    from zernike3d.moments import Moments
    m = Moments.load("moments.npz")
    m.get(4, 2, -1)              # Omega_{4,2,-1} of volume 0
    F = m.invariants()           # (volumes, n_nl), columns in m.nl order
    print(m.stats())
    maps = m.truncate(20).reconstruct()

Only m >= 0 coefficients are stored, ordered by n, then l, then m; the others follow
from Omega_{n,l,-m} = (-1)^m conj(Omega_nlm). Conventions: docs/conventions.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from zernike3d.io.dataset import maps_fingerprint
from zernike3d.io.moments_file import load_moments, save_moments
from zernike3d.maths import indexing
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.invariants import invariants as invariants_of

if TYPE_CHECKING:
    from pathlib import Path

    from zernike3d.io.mrc import MapFile

# The transforms (numba kernels) and mrcfile are imported where they are used, so that
# reading a moments file (``zernike3d info``, invariants) starts instantly.


@dataclass(frozen=True, eq=False)
class Moments:
    """Zernike moments of V volumes.

    moments: complex128 (V, K), columns in :attr:`nlm` order; order: highest n;
    box: voxels per edge; voxel_size, radius: Å; center: ball centre (x, y, z) in Å from
    the centre of voxel [0, 0, 0]; origin: MRC header origin (x, y, z) in Å of the maps
    (so that reconstructions overlay them); names: one label per volume; maps_sha256:
    one fingerprint per volume of the map decomposed
    (:func:`zernike3d.io.dataset.maps_fingerprint`), or None when unknown (a file
    written before it was recorded, or a copy with another number of volumes).
    """

    moments: np.ndarray
    order: int
    box: int
    voxel_size: float
    radius: float
    center: tuple
    names: list
    origin: tuple = field(default=(0.0, 0.0, 0.0))
    maps_sha256: list | None = None

    def __post_init__(self):
        # a copy with other volumes (dataclasses.replace) keeps no fingerprints that
        # cannot be theirs: one per volume or none
        if self.maps_sha256 is not None and len(self.maps_sha256) != len(self.moments):
            object.__setattr__(self, "maps_sha256", None)

    @classmethod
    def from_maps(cls, maps: np.ndarray, geometry: BallGeometry, order: int, names: Sequence[str] | None = None,
                  origin: Sequence[float] = (0.0, 0.0, 0.0), maps_sha256: list[str] | None = None,
                  **transform: Any) -> Moments:
        """Decompose maps (N, N, N) or (V, N, N, N), indexed [z, y, x], up to ``order``.

        ``maps_sha256``: the maps' fingerprints when already known (a dataset bundle's),
        else computed here. ``transform``: keyword arguments of
        :func:`zernike3d.maths.transform.decompose` (basis, backend, threads, gpu_id,
        progress, max_workspace, ...).
        """
        from zernike3d.maths.transform import decompose

        moments = decompose(maps, geometry, order, **transform)
        if maps_sha256 is None:
            maps_sha256 = maps_fingerprint(maps, geometry.voxel_size)
        if names is None:
            names = [str(i) for i in range(len(moments))]
        return cls(
            moments=moments,
            order=int(order),
            box=geometry.box,
            voxel_size=geometry.voxel_size,
            radius=geometry.radius,
            center=tuple(geometry.center),
            names=list(names),
            origin=tuple(origin),
            maps_sha256=maps_sha256,
        )

    @classmethod
    def load(cls, path: str | Path) -> Moments:
        """Read a moments file (see :mod:`zernike3d.io.moments_file`)."""
        return cls(**load_moments(path))

    def save(self, path: str | Path) -> None:
        """Write a moments file, atomically."""
        save_moments(
            path,
            moments=self.moments,
            order=self.order,
            box=self.box,
            voxel_size=self.voxel_size,
            radius=self.radius,
            center=self.center,
            origin=self.origin,
            names=self.names,
            maps_sha256=self.maps_sha256,
        )

    @property
    def nlm(self) -> np.ndarray:
        """(n, l, m) of each column, (K, 3) int."""
        return indexing.nlm_table(self.order)

    @property
    def nl(self) -> np.ndarray:
        """(n, l) of each invariant, (n_nl, 2) int."""
        return indexing.nl_table(self.order)

    @property
    def geometry(self) -> BallGeometry:
        """The :class:`BallGeometry` the moments were taken in."""
        return BallGeometry(self.box, self.voxel_size, self.radius, tuple(self.center))

    def get(self, n: int, l: int, m: int, volume: int = 0) -> complex:
        """Omega_nlm of one volume; negative m via (-1)^m conj(Omega_{n,l,|m|})."""
        if not (0 <= l <= n <= self.order and (n - l) % 2 == 0 and abs(m) <= l):
            raise ValueError(
                f"no coefficient (n, l, m) = ({n}, {l}, {m}) up to order {self.order}: "
                "need 0 <= l <= n, n - l even, |m| <= l"
            )
        value = self.moments[volume, indexing.nlm_offsets(self.order)[n, l] + abs(m)]
        return (-1) ** m * np.conj(value) if m < 0 else value

    def invariants(self) -> np.ndarray:
        """F_nl = sqrt(sum over m = -l..l of |Omega_nlm|^2): (V, n_nl), columns in :attr:`nl` order."""
        return invariants_of(self.moments, self.order)

    def truncate(self, order: int) -> Moments:
        """The same moments up to a lower (or equal) order."""
        if not 0 <= order <= self.order:
            raise ValueError(f"order {order} is not between 0 and the stored order {self.order}")
        return replace(self, moments=indexing.truncate(self.moments, self.order, order), order=int(order))

    def volume_index(self, which: int | str) -> int:
        """The index of a volume given by name, or by index (an int or a string of digits
        that is not a name); ValueError naming the choices otherwise."""
        if isinstance(which, str) and which in self.names:
            return self.names.index(which)
        try:
            index = int(which)
        except ValueError:
            index = None
        if index is None or not 0 <= index < len(self.names):
            raise ValueError(
                f"no volume {which!r}: give a name ({', '.join(self.names)}) "
                f"or an index 0..{len(self.names) - 1}"
            )
        return index

    def volume(self, which: int | str) -> Moments:
        """Moments of one volume, chosen by name, or by index (an int or a string of digits
        that is not a name)."""
        index = self.volume_index(which)
        fingerprint = None if self.maps_sha256 is None else self.maps_sha256[index : index + 1]
        return replace(self, moments=self.moments[index : index + 1], names=[self.names[index]], maps_sha256=fingerprint)

    def output_geometry(self, box: int | None = None, voxel_size: float | None = None) -> BallGeometry:
        """The geometry of a reconstruction: the stored one, or, with box (voxels) or
        voxel_size (Å) changed, the same ball radius (Å) centred on voxel ``box // 2``.

        A new voxel size without a box keeps the field of view in Å: the box becomes
        ``ceil(stored box × stored voxel size / voxel_size)`` voxels (so that a finer grid
        does not cut the ball).
        """
        voxel_size = self.voxel_size if voxel_size is None else float(voxel_size)
        if box is None:
            box = self.box if voxel_size == self.voxel_size else math.ceil(self.box * self.voxel_size / voxel_size - 1e-9)
        box = int(box)
        if (box, voxel_size) == (self.box, self.voxel_size):
            return self.geometry
        return BallGeometry.for_box(box, voxel_size, radius=self.radius)

    def reconstruct(self, box: int | None = None, voxel_size: float | None = None, **transform: Any) -> list[MapFile]:
        """One :class:`~zernike3d.io.mrc.MapFile` per volume, from all stored moments.

        Geometry as :meth:`output_geometry`; the origin is shifted so that the ball stays
        where it was in space. ``transform``: keyword arguments of
        :func:`zernike3d.maths.transform.reconstruct` (backend, threads, progress, ...).
        """
        from zernike3d.io.mrc import MapFile
        from zernike3d.maths.transform import reconstruct

        geometry = self.output_geometry(box, voxel_size)
        maps = reconstruct(self.moments, geometry, self.order, **transform)
        origin = tuple(float(v) for v in np.add(self.origin, self.center) - geometry.center)
        return [MapFile(data=m.astype(np.float32), voxel_size=geometry.voxel_size, origin=origin) for m in maps]

    def parseval_norms(self) -> np.ndarray:
        """sqrt(sum over all n, l, m of |Omega|^2) per volume: the L2 norm over the unit
        ball of the map's expansion up to ``order``, (V,)."""
        return np.sqrt(np.sum(self.invariants() ** 2, axis=1))

    def stats(self) -> str:
        """A short multi-line summary."""
        norms = ", ".join(f"{name}: {norm:.6g}" for name, norm in zip(self.names, self.parseval_norms()))
        cx, cy, cz = self.center
        return "\n".join(
            [
                f"Zernike moments of {len(self.names)} volume(s)",
                f"  coefficients  {self.moments.shape[1]} per volume (m >= 0), order {self.order}",
                f"  geometry      box {self.box} voxels of {self.voxel_size:g} Å, ball radius {self.radius:g} Å,"
                f" centre ({cx:g}, {cy:g}, {cz:g}) Å",
                f"  storage       {self.moments.dtype}, {self.moments.nbytes} bytes ({self.moments.nbytes / 2**20:.2f} MiB)",
                f"  Parseval norm {norms}",
            ]
        )

    def display(self, n_max: int | None = None, nlm: tuple[int, int, int] | None = None, volume: int | str = 0) -> str:
        """Coefficients of one ``volume`` (name or index) as text: a first line naming the
        volume, then one ``(n, l, m) value`` line per coefficient up to ``n_max``
        (default: all); or the single value of ``nlm=(n, l, m)``."""
        index = self.volume_index(volume)
        if nlm is not None:
            return f"{self.get(*nlm, volume=index):.6g}"
        return self._volume_line(index, "Ω_nlm") + "\n" + _table_text(self.nlm, self.moments[index], n_max)

    def display_invariants(self, n_max: int | None = None, nl: tuple[int, int] | None = None, volume: int | str = 0) -> str:
        """Invariants of one ``volume`` (name or index) as text: a first line naming the
        volume, then one ``(n, l) value`` line each up to ``n_max``; or the single value
        of ``nl=(n, l)``."""
        index = self.volume_index(volume)
        table, values = self.nl, self.invariants()[index]
        if nl is not None:
            matches = np.flatnonzero((table == nl).all(axis=1))
            if not matches.size:
                raise ValueError(f"no invariant (n, l) = {tuple(nl)} up to order {self.order}")
            return f"{values[matches[0]]:.6g}"
        return self._volume_line(index, "F_nl") + "\n" + _table_text(table, values, n_max)

    def _volume_line(self, index, what):
        return f"{what} of volume {self.names[index]!r} ({index} of {len(self.names)} volumes, 0-based)"


def _table_text(table, values, n_max):
    """``(n, l[, m]) value`` lines for the rows of ``table`` with n <= n_max (None: all)."""
    keep = table[:, 0] <= (table[-1, 0] if n_max is None else n_max)
    return "\n".join(f"{tuple(row.tolist())} {value:.6g}" for row, value in zip(table[keep], values[keep]))
