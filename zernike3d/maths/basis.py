"""The basis of one geometry and order: the grid tables and the radial table.

Nothing here is a basis function per voxel. A :class:`Basis` holds the voxel groupings of
:class:`zernike3d.maths.geometry.GridTables` and, when it is worth keeping, the table of
radial polynomials R_nl at every shell radius (n_nl x n_shells float64, rows l-major: for
l = 0, 1, ..., order the rows n = l, l + 2, ... <= order, so that the rows of one l are
one slice, as the transforms use them and as the basis store keeps them). The angular part
(exp(-i m phi) per xy point, Pbar_lm per (z, ring) pair) is recomputed by the transforms,
which is cheaper than reading it back.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from zernike3d.maths.radial import radial_polynomials_for_l

if TYPE_CHECKING:
    from zernike3d.maths.geometry import BallGeometry, GridTables

#: bump when the tables change meaning, so that cached stores are rebuilt
TABLE_FORMAT = 2  # 2: a centre within 1e-6 voxel of the grid snaps to it (fewer shells)
#: keep the radial table in memory when it is at most this large (bytes)
RADIAL_TABLE_LIMIT = 512 * 2**20
#: radial tables up to this size are kept between calls for the same geometry and order
#: (many small maps in a row then pay for the table once)
RADIAL_TABLE_CACHED = 32 * 2**20


class Basis:
    """Grid tables + (optionally) the radial table for ``geometry`` up to ``order``."""

    def __init__(self, geometry: BallGeometry, order: int, grid: GridTables, radial_table: np.ndarray | None = None) -> None:
        self.geometry = geometry
        self.order = int(order)
        self.grid = grid
        self.radial_table = radial_table
        self.row_start = radial_row_starts(order)

    @classmethod
    def build(cls, geometry: BallGeometry, order: int, radial_table: bool | None = None) -> Basis:
        """radial_table: True/False, or None to keep it when below RADIAL_TABLE_LIMIT."""
        grid = geometry.grid
        if radial_table is None:
            radial_table = radial_table_bytes(order, grid.n_shells) <= RADIAL_TABLE_LIMIT
        if not radial_table:
            return cls(geometry, order, grid)
        if radial_table_bytes(order, grid.n_shells) <= RADIAL_TABLE_CACHED:
            return cls(geometry, order, grid, _cached_radial_table(geometry, order))
        return cls(geometry, order, grid, radial_table_l_major(order, grid.shell_radius))

    @staticmethod
    def key_for(geometry: BallGeometry, order: int) -> str:
        """The cache key of (geometry, order), from their values alone."""
        return f"{geometry.key()}-n{int(order)}-t{TABLE_FORMAT}"

    @property
    def key(self) -> str:
        return self.key_for(self.geometry, self.order)

    @property
    def nbytes(self) -> int:
        table = 0 if self.radial_table is None else self.radial_table.nbytes
        return self.grid.nbytes + table

    def radial(self, l: int, first: int = 0, stop: int | None = None) -> np.ndarray:
        """R_nl at the radii of shells first .. stop - 1 (default all) for n = l, l+2, ...,
        <= order: (n_count, shells)."""
        if self.radial_table is not None:
            return self.radial_table[self.row_start[l] : self.row_start[l + 1], first:stop]
        return radial_polynomials_for_l(self.order, l, self.grid.shell_radius[first:stop])

    def arrays(self) -> dict[str, np.ndarray]:
        """The grid tables and, if kept, the radial table, by name."""
        arrays = dict(self.grid.arrays())
        if self.radial_table is not None:
            arrays["radial_table"] = self.radial_table
        return arrays


def radial_row_starts(order: int) -> np.ndarray:
    """Offsets of each l's rows in an l-major radial table (length order + 2)."""
    return np.concatenate([[0], np.cumsum([(order - l) // 2 + 1 for l in range(order + 1)])]).astype(np.int64)


def radial_table_l_major(order: int, r: np.ndarray) -> np.ndarray:
    """R_nl(r) of every (n, l), rows l-major (see the module docstring): (n_nl, len(r))."""
    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    start = radial_row_starts(order)
    table = np.empty((start[-1], r.size))  # filled in place, one l at a time: no second copy
    for l in range(order + 1):
        table[start[l] : start[l + 1]] = radial_polynomials_for_l(order, l, r)
    return table


@lru_cache(maxsize=4)
def _cached_radial_table(geometry, order):
    table = radial_table_l_major(order, geometry.grid.shell_radius)
    table.flags.writeable = False  # shared between calls
    return table


def radial_table_bytes(order: int, n_shells: int) -> int:
    return int(radial_row_starts(order)[-1]) * n_shells * 8
