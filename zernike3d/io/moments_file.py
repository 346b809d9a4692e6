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
==================  ================  ==================================================

Conventions of the moments themselves (Z_nlm normalisation, voxel weight) are in
docs/conventions.md. Readers ignore keys they do not know; a change to the meaning of
a key bumps ``format_version``.
"""

import zipfile

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, npz_kind
from zernike3d.maths.indexing import nlm_table

FORMAT = "zernike3d-moments"
FORMAT_VERSION = 1
#: what save_moments may replace: an earlier moments file
OUTPUT = npz_kind(FORMAT, f"a zernike3d moments file (format {FORMAT!r})")
KEYS = ("moments", "nlm", "order", "box", "voxel_size", "radius", "center", "origin", "names")


def save_moments(path, *, moments, order, box, voxel_size, radius, center, origin, names):
    """Write a moments file atomically (any suffix; ``.npz`` is the convention)."""
    moments = np.asarray(moments, dtype=np.complex128)
    arrays = {
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
    _check(path, arrays)
    with atomic_path(path, OUTPUT) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no suffix
        np.savez(f, **arrays)


def load_moments(path):
    """Read and check a moments file; returns a dict of the :data:`KEYS` but ``nlm``
    (which follows from ``order``) as Python/NumPy values. Raises InputError naming the file if it is missing, of
    another format or version, or inconsistent."""
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "file not found")
    except OSError as err:
        raise InputError(path, f"cannot read the file ({err.strerror or err})")
    except ValueError:
        raise InputError(path, "not a zernike3d moments file (not a NumPy .npz archive)")
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise InputError(path, "not a zernike3d moments file (a single .npy array, not an .npz archive)")
    try:
        with npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(path, f"damaged .npz file: {err}")

    found = str(arrays.get("format", "no 'format' key"))
    if found != FORMAT:
        raise InputError(path, f"not a zernike3d moments file (format: {found})")
    version = int(arrays.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise InputError(
            path, f"moments format version {version} is not supported (this zernike3d reads {FORMAT_VERSION})"
        )
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise InputError(path, f"moments file lacks {', '.join(missing)}")
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
    }


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
    if int(arrays["box"]) < 1 or not float(arrays["voxel_size"]) > 0 or not float(arrays["radius"]) > 0:
        raise InputError(path, "box, voxel size and radius must be positive")
