"""Where the unit ball sits in the box, and the grid tables the transforms run on.

Conventions (see also docs/conventions.md):

* Maps are indexed ``data[z, y, x]`` as in MRC files: x is the last axis. Coordinates
  are right-handed; phi = atan2(y, x) and cos(theta) = z / r.
* Positions in Å are measured from the centre of voxel [0, 0, 0]: voxel (k, j, i)
  (z, y, x indices) sits at (x, y, z) = (i, j, k) * voxel_size. The MRC header origin is
  not added.
* The ball is centred by default on voxel index ``box // 2`` along every axis: the
  rotation centre of cryoSPARC and RELION (for an even box this is not the geometric
  centre (box - 1) / 2). Its radius R is in Å; the default is half the box edge.
  Voxels farther than R from the centre are outside the expansion and ignored.
* A point at distance d (Å) from the centre has unit-ball radius d / R, and one voxel
  has volume dV = (voxel_size / R)^3 in unit-ball units.

Grid tables. The transforms never hold a basis function per voxel. They use three
groupings of the voxels inside the ball:

* rings: xy positions with the same rho^2 = dx^2 + dy^2 (the same in every z plane);
* folds: z planes taken in pairs +dz / -dz (Y_lm changes only by (-1)^(l+m) between
  them), each fold has a ``plus`` and a ``minus`` plane index, -1 where absent;
* pairs (fold, ring) inside the ball, grouped in shells of equal r^2 = dz^2 + rho^2;
* xy orbits, when the centre's x and y fall on voxel centres (the default): the up to 8
  points (+-a, +-b), (+-b, +-a) around the centre, a >= b >= 0, that the sign flips of x
  and y and the swap x <-> y map onto each other. exp(-i m phi) at any of them is that of
  (a, b) up to conjugation and a factor (-1)^m or (+-i)^m, so the ring step needs one
  phase per orbit (see :func:`zernike3d.maths._kernels._add_orbit_ring_sums`). Points beyond
  the box edge (an even box has one more voxel below the centre than above) count as 0.

For the default centre, distances are integers in voxel units and the groups are few
(a 64^3 box has ~900 shells inside the inscribed ball); for an arbitrary centre they are
still exact, only larger.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

INSIDE_TOLERANCE = 1e-9
#: the ball's radius when none is given: half the box edge (of the stages' --radius and
#: the workflow's ``radius``)
DEFAULT_RADIUS = "inscribed"
#: a centre this close (in voxels) to a voxel centre or a half-voxel is taken as on it:
#: Å -> voxel division leaves rounding (283.2 Å / 2.95 Å = 96.00000000000001), and a
#: centre a hair off the grid loses the xy orbits and the integer shells (a 192^3 box at
#: order 50: 91,770 shells instead of ~5,000, 9 GB and 30x the time for the same moments)
SNAP_VOXELS = 1e-6


class GeometryError(ValueError):
    """A geometry the transforms cannot use; ``field`` names the offending field
    (``"box"``, ``"voxel_size"``, ``"radius"`` or ``"center"``)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(problem)


@dataclass(frozen=True)
class BallGeometry:
    """The unit ball in a cubic box.

    box: voxels per edge; voxel_size: Å; radius: Å; center: (x, y, z) in Å from the
    centre of voxel [0, 0, 0].

    Construction raises :class:`GeometryError` unless box >= 1, the voxel size and the
    radius are finite and positive, the centre is finite and inside the box (within half
    a voxel of the outermost voxel centres) and at least one voxel centre lies inside
    the ball: a geometry with nothing or an infinity in it gives all-zero moments.
    """

    box: int
    voxel_size: float
    radius: float
    center: tuple

    def __post_init__(self):
        if not self.box >= 1:
            raise GeometryError("box", f"the box must have at least 1 voxel, got {self.box}")
        if not (np.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise GeometryError("voxel_size", f"must be a finite positive number of Å, got {self.voxel_size}")
        center = np.asarray(self.center, dtype=np.float64)
        if center.shape != (3,) or not np.isfinite(center).all():
            raise GeometryError("center", f"must be three finite numbers x, y, z in Å, got {self.center}")
        edge = (self.box - 0.5) * self.voxel_size
        if ((center < -0.5 * self.voxel_size) | (center > edge)).any():
            raise GeometryError(
                "center",
                f"({', '.join(f'{c:g}' for c in center)}) Å is outside the box, which spans "
                f"{-0.5 * self.voxel_size:g} to {edge:g} Å on each axis (from the centre of voxel [0, 0, 0])",
            )
        if not (np.isfinite(self.radius) and self.radius > 0):
            raise GeometryError("radius", f"must be a finite positive number of Å, got {self.radius}")
        nearest = np.clip(np.rint(center / self.voxel_size), 0, self.box - 1) * self.voxel_size
        if np.linalg.norm(nearest - center) > self.radius * (1.0 + INSIDE_TOLERANCE):
            raise GeometryError(
                "radius",
                f"{self.radius:g} Å is smaller than the distance from the centre to the nearest voxel "
                f"centre ({np.linalg.norm(nearest - center):.3g} Å): no voxel lies inside the ball",
            )

    @classmethod
    def for_box(cls, box: int, voxel_size: float, radius: float | str | None = None,
                center: Sequence[float] | None = None) -> BallGeometry:
        """Geometry with the documented defaults.

        radius: None or 'inscribed' (half the box edge), 'circumscribed' (the distance
        from the centre to the farthest voxel centre, so every voxel counts: the original
        tool's choice), or a number of Å. center: None (voxel box // 2 on every axis) or
        (x, y, z) in Å.
        """
        box = int(box)
        voxel_size = float(voxel_size)
        if box < 1:
            raise GeometryError("box", f"the box must have at least 1 voxel, got {box}")
        if not (np.isfinite(voxel_size) and voxel_size > 0):
            raise GeometryError("voxel_size", f"must be a finite positive number of Å, got {voxel_size}")
        if center is None:
            center = ((box // 2) * voxel_size,) * 3
        center = tuple(float(c) for c in center)
        if radius is None:
            radius = DEFAULT_RADIUS
        if radius == "inscribed":
            radius = box * voxel_size / 2.0
        elif radius == "circumscribed":
            far = [max(c / voxel_size, box - 1 - c / voxel_size) for c in center]
            radius = float(np.sqrt(np.sum(np.square(far)))) * voxel_size
        return cls(box, voxel_size, float(radius), center)

    @property
    def center_voxels(self) -> tuple[float, float, float]:
        """Centre in voxel index units, in array order (z, y, x); a coordinate within
        :data:`SNAP_VOXELS` of a multiple of half a voxel is that multiple."""
        x, y, z = self.center
        return (_snapped(z / self.voxel_size), _snapped(y / self.voxel_size), _snapped(x / self.voxel_size))

    @property
    def radius_voxels(self) -> float:
        return self.radius / self.voxel_size

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in unit-ball units, (voxel_size / radius)^3."""
        return (self.voxel_size / self.radius) ** 3

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.box,
            "voxel_size": self.voxel_size,
            "radius": self.radius,
            "center": list(self.center),
        }

    def key(self) -> str:
        """A short stable hash of the geometry, for caches."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def inside(self) -> np.ndarray:
        """Boolean (box, box, box) array: voxels that the expansion uses."""
        cz, cy, cx = self.center_voxels
        k = np.arange(self.box, dtype=np.float64)
        r2 = (k[:, None, None] - cz) ** 2 + (k[None, :, None] - cy) ** 2 + (k[None, None, :] - cx) ** 2
        return r2 <= self.radius_voxels**2 * (1.0 + INSIDE_TOLERANCE)

    def outside_fraction(self, maps: np.ndarray) -> np.ndarray:
        """Fraction of each map's absolute density outside the ball, shape (V,)."""
        maps = np.asarray(maps).reshape(-1, self.box, self.box, self.box)
        inside = self.inside()
        total = np.abs(maps).sum(axis=(1, 2, 3), dtype=np.float64)
        outside = np.abs(maps[:, ~inside]).sum(axis=1, dtype=np.float64)
        return np.divide(outside, total, out=np.zeros_like(total), where=total > 0)

    @property
    def grid(self) -> GridTables:
        """The :class:`GridTables` of this geometry, computed once per distinct geometry
        (equal geometries, e.g. of the planner and of the transform, share them)."""
        return _grid_tables(self)


@dataclass(frozen=True)
class GridTables:
    """Voxel groupings of a geometry (see the module docstring). All indices are int64.

    points: xy positions inside the ball's equatorial disc.
      point_index  flat index y * box + x into a z plane
      point_phi    azimuth atan2(dy, dx)
      point_ring   ring of the point
    folds: fold_plus, fold_minus (plane indices or -1), fold_dz (|dz| in voxels)
    pairs (sorted by shell): pair_fold, pair_ring, pair_cos, pair_sin (of theta)
      pair_of[fold, ring]: pair index or -1 (outside the ball)
    shells: shell_start (CSR offsets into the pairs, length n_shells + 1),
      shell_radius (unit-ball radius of the shell)
    orbits (empty unless the centre's x and y are on voxel centres), sorted by ring:
      orbit_index  (n_orbits, 8) flat indices of (a, b), (-a, b), (a, -b), (-a, -b),
                   (b, a), (-b, a), (b, -a), (-b, -a) from the centre, -1 beyond the box
      orbit_ring   ring of the orbit
      orbit_phi    azimuth atan2(b, a) of its first point, in [0, pi/4]
      orbit_weight 1 / (number of the 8 that coincide with the first): 1, 1/2 on the
                   axes and diagonals, 1/8 at the centre, so that the 8 images count
                   each distinct point once
    """

    point_index: np.ndarray
    point_phi: np.ndarray
    point_ring: np.ndarray
    fold_plus: np.ndarray
    fold_minus: np.ndarray
    fold_dz: np.ndarray
    pair_fold: np.ndarray
    pair_ring: np.ndarray
    pair_cos: np.ndarray
    pair_sin: np.ndarray
    pair_of: np.ndarray
    shell_start: np.ndarray
    shell_radius: np.ndarray
    orbit_index: np.ndarray
    orbit_ring: np.ndarray
    orbit_phi: np.ndarray
    orbit_weight: np.ndarray

    @property
    def n_points(self) -> int:
        return self.point_index.size

    @property
    def n_pairs(self) -> int:
        return self.pair_fold.size

    @property
    def n_shells(self) -> int:
        return self.shell_radius.size

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.__dataclass_fields__)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def build(cls, geometry: BallGeometry) -> GridTables:
        n = geometry.box
        cz, cy, cx = geometry.center_voxels
        limit = geometry.radius_voxels**2 * (1.0 + INSIDE_TOLERANCE)

        offsets = np.arange(n, dtype=np.float64)
        dy = (offsets - cy)[:, None]
        dx = (offsets - cx)[None, :]
        rho2 = (dy * dy + dx * dx).ravel()
        point_index = np.flatnonzero(rho2 <= limit)
        point_phi = np.arctan2(np.broadcast_to(dy, (n, n)).ravel(), np.broadcast_to(dx, (n, n)).ravel())[point_index]
        ring_rho2, point_ring = np.unique(rho2[point_index], return_inverse=True)
        orbits = _xy_orbits(n, cx, cy, point_index, ring_rho2)

        dz = offsets - cz
        fold_dz, fold_of_plane = np.unique(np.abs(dz), return_inverse=True)
        fold_plus = np.full(fold_dz.size, -1, dtype=np.int64)
        fold_minus = np.full(fold_dz.size, -1, dtype=np.int64)
        for plane in range(n):
            if dz[plane] >= 0:
                fold_plus[fold_of_plane[plane]] = plane
            else:
                fold_minus[fold_of_plane[plane]] = plane

        r2 = fold_dz[:, None] ** 2 + ring_rho2[None, :]
        fold_idx, ring_idx = np.nonzero(r2 <= limit)
        pair_r2 = r2[fold_idx, ring_idx]
        shell_r2, pair_shell = np.unique(pair_r2, return_inverse=True)
        order = np.argsort(pair_shell, kind="stable")
        fold_idx, ring_idx, pair_r2, pair_shell = fold_idx[order], ring_idx[order], pair_r2[order], pair_shell[order]
        pair_of = np.full(r2.shape, -1, dtype=np.int64)
        pair_of[fold_idx, ring_idx] = np.arange(fold_idx.size)

        r = np.sqrt(pair_r2)
        safe = np.where(r > 0, r, 1.0)
        pair_cos = np.where(r > 0, fold_dz[fold_idx] / safe, 1.0)
        pair_sin = np.where(r > 0, np.sqrt(ring_rho2[ring_idx]) / safe, 0.0)
        shell_start = np.searchsorted(pair_shell, np.arange(shell_r2.size + 1))
        return cls(
            point_index=point_index.astype(np.int64),
            point_phi=point_phi,
            point_ring=point_ring.astype(np.int64),
            fold_plus=fold_plus,
            fold_minus=fold_minus,
            fold_dz=fold_dz,
            pair_fold=fold_idx.astype(np.int64),
            pair_ring=ring_idx.astype(np.int64),
            pair_cos=pair_cos,
            pair_sin=pair_sin,
            pair_of=pair_of,
            shell_start=shell_start.astype(np.int64),
            shell_radius=np.sqrt(shell_r2) / geometry.radius_voxels,
            **orbits,
        )


def _snapped(voxels: float) -> float:
    """``voxels`` rounded to the nearest half voxel when within :data:`SNAP_VOXELS` of it."""
    half = round(2.0 * voxels) / 2.0
    return half if abs(voxels - half) <= SNAP_VOXELS else voxels


def _xy_orbits(box, cx, cy, point_index, ring_rho2):
    """The orbit tables of :class:`GridTables` (empty unless cx and cy are integers)."""
    if cx != np.rint(cx) or cy != np.rint(cy):
        return {"orbit_index": np.zeros((0, 8), np.int64), "orbit_ring": np.zeros(0, np.int64),
                "orbit_phi": np.zeros(0), "orbit_weight": np.zeros(0)}
    cx, cy = int(cx), int(cy)
    dy, dx = np.divmod(point_index, box)
    dx, dy = np.abs(dx - cx), np.abs(dy - cy)
    a, b = np.unique(np.stack([np.maximum(dx, dy), np.minimum(dx, dy)]), axis=1)
    images_x = np.stack([a, -a, a, -a, b, -b, b, -b], axis=1)
    images_y = np.stack([b, b, -b, -b, a, a, -a, -a], axis=1)
    x, y = cx + images_x, cy + images_y
    inside = (x >= 0) & (x < box) & (y >= 0) & (y < box)
    orbit_size = np.where(a == 0, 1, np.where((b == 0) | (a == b), 4, 8))
    ring = np.searchsorted(ring_rho2, (a * a + b * b).astype(np.float64))
    by_ring = np.argsort(ring, kind="stable")  # the ring step then writes each fold's rings in order
    return {
        "orbit_index": np.where(inside, y * box + x, -1)[by_ring].astype(np.int64),
        "orbit_ring": ring[by_ring].astype(np.int64),
        "orbit_phi": np.arctan2(b, a)[by_ring].astype(np.float64),
        "orbit_weight": orbit_size[by_ring] / 8.0,
    }


@lru_cache(maxsize=4)
def _grid_tables(geometry):
    return GridTables.build(geometry)


def grid_build_bytes(geometry: BallGeometry) -> int:
    """A lower bound of the peak memory (bytes) of :meth:`GridTables.build` for
    ``geometry``, found without building anything (so that an impossible box is refused
    before it is tried).

    The build holds (fold, ring) tables: ``min(box//2 + 1, R + 1)`` folds by the rings,
    the distinct dx² + dy² <= R² (R in voxels, at most box/2 counted), about
    0.764 R² / sqrt(ln R²) by the Landau-Ramanujan estimate of the sums of two squares,
    which undercounts them by about 6% for boxes of 400-1200. The peak is 77-107 bytes
    per (fold, ring) for boxes 200-1200 (``python benchmarks/bench_grid_memory.py``: the
    measured peak is 1.26-2.98 times this bound); 64 are counted, plus 32 bytes per voxel
    of one plane. It grows as box³: box 1000 needs about 2 GiB.
    """
    box = geometry.box
    radius = min(geometry.radius_voxels, box / 2.0)
    radius2 = max(radius * radius, 2.0)
    rings = 0.7642 * radius2 / np.sqrt(np.log(radius2))
    folds = min(box // 2 + 1, int(radius) + 1)
    return int(64 * folds * rings + 32 * box * box)
