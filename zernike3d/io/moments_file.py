"""The moments file: a plain ``.npz`` that NumPy alone can read.

``np.load(path)`` gives these arrays (V volumes, K coefficients per volume):

==================  ================  ==================================================
key                 dtype, shape      meaning
==================  ================  ==================================================
``format``          str, ()           ``"zernike3d-moments"``
``format_version``  int, ()           ``1``
``moments``         complex128 (V,K)  Omega_nlm of each volume, columns in ``nlm`` order
``nlm``             int32 (K, 3)      (n, l, m) of each column: by n, then l, then m;
                                      m >= 0 only (Omega_{n,l,-m} = (-1)^m conj Omega_nlm)
``order``           int, ()           highest n
``box``             int, ()           voxels per edge of the decomposed maps
``voxel_size``      float, ()         Å
``radius``          float, ()         ball radius R, Å
``center``          float (3,)        ball centre (x, y, z), Å from the centre of voxel
                                      [0, 0, 0]
``origin``          float (3,)        MRC header origin (x, y, z) of the maps, Å
``names``           str (V,)          one label per volume (e.g. the map's file stem)
``maps_sha256``     str (V,)          optional: fingerprint of each map decomposed
                                      (:func:`zernike3d.io.dataset.maps_fingerprint`);
                                      ``--dataset`` refuses a dataset whose maps
                                      have others. Files without it are read. A
                                      rigid motion (``align --rotated-out``) keeps
                                      it: the job's latents still apply.
==================  ================  ==================================================

Conventions of the moments themselves (Z_nlm normalisation, voxel weight) are in
docs/conventions.md. Readers ignore keys they do not know; a change to the meaning of
a key bumps ``format_version``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, npz_kind
from zernike3d.io.npz import expect_shape, open_npz
from zernike3d.maths.geometry import BallGeometry, GeometryError
from zernike3d.maths.indexing import coefficient_count, nlm_table

if TYPE_CHECKING:
    from pathlib import Path

FORMAT = "zernike3d-moments"
FORMAT_VERSION = 1
#: what save_moments may replace: an earlier moments file
OUTPUT = npz_kind(FORMAT, f"a zernike3d moments file (format {FORMAT!r})")
KEYS = ("moments", "nlm", "order", "box", "voxel_size", "radius", "center", "origin", "names")


def save_moments(path: str | Path, *, moments: np.ndarray, order: int, box: int, voxel_size: float, radius: float,
                 center: Sequence[float], origin: Sequence[float], names: Sequence[str],
                 maps_sha256: Sequence[str] | None = None) -> None:
    """Write a moments file atomically (any suffix; ``.npz`` is the convention);
    ``maps_sha256`` (see the table above) is written when given."""
    moments = np.asarray(moments, dtype=np.complex128)
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION),
        "moments": moments,
        "nlm": nlm_table(order),
        "order": np.array(int(order)),
        "box": np.array(int(box)),
        "voxel_size": np.array(float(voxel_size)),
        "radius": np.array(float(radius)),
        "center": np.asarray(center, dtype=np.float64),
        "origin": np.asarray(origin, dtype=np.float64),
        "names": np.asarray(names, dtype=str),
    }
    if maps_sha256 is not None:
        arrays["maps_sha256"] = np.asarray(maps_sha256, dtype=str)
    _check(path, arrays)
    with atomic_path(path, OUTPUT) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no suffix
        np.savez(f, **arrays)


def load_moments(path: str | Path) -> dict[str, Any]:
    """Read and check a moments file; returns a dict of the :data:`KEYS` but ``nlm``
    (which follows from ``order``) as Python/NumPy values, plus ``maps_sha256`` (None
    when the file has none). Raises InputError naming the file if it is missing, empty
    or truncated, of another format or version, or inconsistent.

    Only the keys above are read, and each one's declared size is checked against what
    the keys read before it imply (see :mod:`zernike3d.io.npz`) before it is loaded.
    """
    with open_npz(path, "a zernike3d moments file") as npz:
        if "format" not in npz:
            raise InputError(path, "not a zernike3d moments file (format: no 'format' key)")
        found = npz.scalar("format", "U")
        if found != FORMAT:
            raise InputError(path, f"not a zernike3d moments file (format: {found})")
        if "format_version" not in npz:
            raise InputError(path, "moments file lacks format_version")
        version = npz.scalar("format_version", "iu")
        if version != FORMAT_VERSION:
            raise InputError(
                path, f"moments format version {version} is not supported (this zernike3d reads {FORMAT_VERSION})"
            )
        missing = [key for key in KEYS if key not in npz]
        if missing:
            raise InputError(path, f"moments file lacks {', '.join(missing)}")
        arrays = {key: npz.scalar(key, "iu") for key in ("order", "box")}
        arrays.update({key: npz.scalar(key, "iuf") for key in ("voxel_size", "radius")})
        arrays.update({key: npz.read(key, shape=(3,), kinds="iuf") for key in ("center", "origin")})
        names_shape, _ = npz.header("names")
        expect_shape(path, "names", names_shape, (None,))
        moments_shape = npz.header("moments")[0]
        n_coefficients = _coefficients_of_order(path, arrays["order"], moments_shape)
        if moments_shape[0] != names_shape[0]:
            raise InputError(path, f"{names_shape[0]} names for {moments_shape[0]} volumes")
        arrays["names"] = npz.read("names", kinds="U")
        if npz.header("nlm")[0] != (n_coefficients, 3):
            raise InputError(path, f"nlm table does not match order {arrays['order']} (n, then l, then m >= 0)")
        arrays["nlm"] = npz.read("nlm", kinds="iu")
        arrays["moments"] = npz.read("moments", shape=(names_shape[0], n_coefficients), kinds="c")
        arrays["maps_sha256"] = None
        if "maps_sha256" in npz:
            arrays["maps_sha256"] = npz.read("maps_sha256", shape=names_shape, kinds="U", max_bytes=names_shape[0] * 4 * 64)
    _check(path, arrays)
    return {
        "moments": arrays["moments"].astype(np.complex128, copy=False),
        "order": int(arrays["order"]),
        "box": int(arrays["box"]),
        "voxel_size": float(arrays["voxel_size"]),
        "radius": float(arrays["radius"]),
        "center": tuple(float(c) for c in arrays["center"]),
        "origin": tuple(float(c) for c in arrays["origin"]),
        "names": [str(name) for name in arrays["names"]],
        "maps_sha256": None if arrays["maps_sha256"] is None else [str(f) for f in arrays["maps_sha256"]],
    }


def _coefficients_of_order(path, order, moments_shape):
    """The number of coefficients up to ``order``, once it is known to fit the declared
    shape of ``moments`` (so that a huge order is refused before any table is built)."""
    if order < 0:
        raise InputError(path, f"order must be >= 0, got {order}")
    if len(moments_shape) != 2:
        raise InputError(path, f"moments: has shape {moments_shape}, expected (volumes, coefficients)")
    # coefficient_count(n) grows like n^3 / 12, so an order far above this bound cannot match
    if order > 3 * round(moments_shape[1] ** (1 / 3)) + 3:
        raise InputError(path, f"moments has {moments_shape[1]} columns, far fewer than order {order} needs")
    return coefficient_count(order)


def _check(path, arrays):
    """Shapes and the nlm table agree with the order; raise InputError otherwise."""
    order = int(arrays["order"])
    nlm = arrays["nlm"]
    if order < 0 or not np.array_equal(nlm, nlm_table(order)):
        raise InputError(path, f"nlm table does not match order {order} (n, then l, then m >= 0)")
    moments, names = arrays["moments"], arrays["names"]
    if moments.ndim != 2 or moments.shape[1] != len(nlm) or not np.iscomplexobj(moments):
        raise InputError(
            path, f"moments must be complex (volumes, {len(nlm)}), got {moments.dtype} {moments.shape}"
        )
    if names.shape != (moments.shape[0],):
        raise InputError(path, f"{names.size} names for {moments.shape[0]} volumes")
    if np.shape(arrays["center"]) != (3,) or np.shape(arrays["origin"]) != (3,):
        raise InputError(path, "center and origin must be (x, y, z)")
    if not np.isfinite(arrays["origin"]).all():
        raise InputError(path, f"origin must be finite, got {tuple(arrays['origin'])}")
    try:
        BallGeometry(int(arrays["box"]), float(arrays["voxel_size"]), float(arrays["radius"]),
                     tuple(float(c) for c in arrays["center"]))
    except GeometryError as err:
        raise InputError(path, f"{err.field}: {err}") from None
    if not np.isfinite(moments).all():
        raise InputError(path, "moments contain NaN or infinite values")
    fingerprints = arrays.get("maps_sha256")
    if fingerprints is not None:
        if np.shape(fingerprints) != names.shape:
            raise InputError(path, f"{np.size(fingerprints)} maps_sha256 entries for {names.size} volumes")
        bad = [str(f) for f in np.ravel(fingerprints) if not _is_sha256(str(f))]
        if bad:
            raise InputError(path, f"maps_sha256 holds {bad[0]!r}, not a hex SHA-256 digest")


def _is_sha256(text):
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
