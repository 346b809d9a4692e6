"""WIGGLE 3DVA bundles (wiggle_packager.py), read as a dataset.

A bundle is an .npz: ``consensus_map`` (N, N, N) [z, y, x]; ``components`` (K, N, N, N)
(or (N, N, N) for K = 1); ``particles`` the cryoSPARC particles table (structured array
with components_mode_{k}/value fields) or plain latents (P, K), which get uids 0..P-1
(with a warning). The bundle stores no voxel size: the one given (--apix), else an
``apix`` entry, else blob/psize_A x blob/shape / N of the particles. Origin 0. Read with
:mod:`zernike3d.io.npz` (no pickles, declared sizes checked before loading).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.cryosparc import particles_from_table
from zernike3d.io.dataset import Dataset, input_record, provenance_step


def read_wiggle(path: str | Path, apix: float | None) -> Dataset:
    """The :class:`~zernike3d.io.dataset.Dataset` of a WIGGLE 3DVA bundle (see the module
    docstring for what is accepted); ``apix``: the voxel size in Å given by the user, or None."""
    arrays = _read_npz(path, ("consensus_map", "components", "particles"), ("apix",))
    base = arrays["consensus_map"]
    if base.ndim != 3 or len(set(base.shape)) != 1:
        raise InputError(path, f"consensus_map must be a cubic (N, N, N) map, got {base.shape}")
    components = arrays["components"]
    if components.ndim == 3:
        components = components[None]
    if components.ndim != 4 or components.shape[1:] != base.shape:
        raise InputError(path, f"components must be (K, {base.shape[0]}, {base.shape[0]}, "
                         f"{base.shape[0]}) like consensus_map, got {arrays['components'].shape}")
    table = arrays["particles"]
    if table.dtype.names:
        particles = particles_from_table(f"{path} (particles)", table.dtype.names, table.__getitem__)
        uid, latents = particles.uid, particles.latents
    else:
        latents = table.reshape(-1, 1) if table.ndim == 1 else table
        if latents.ndim != 2 or latents.shape[0] == 0 or not np.issubdtype(latents.dtype, np.number):
            raise InputError(path, f"particles must be a cryoSPARC table or numeric latents "
                             f"(P, K), got {table.dtype} {table.shape}")
        if not np.isfinite(latents).all():
            raise InputError(path, "particles contain NaN or infinite latents")
        particles, uid = None, np.arange(len(latents))
        warnings.warn(f"{path}: particles are plain latents without uids; numbering them "
                      f"0..{len(latents) - 1}", stacklevel=2)
    if latents.shape[1] != len(components):
        raise InputError(path, f"{latents.shape[1]} latent dimensions but {len(components)} "
                         "component maps")
    maps = np.concatenate([base[None], components]).astype(np.float32)
    bad = maps.size - int(np.count_nonzero(np.isfinite(maps)))
    if bad:
        raise InputError(path, f"{bad} map voxels are NaN or infinite")
    voxel_size, voxel_source = _wiggle_voxel_size(path, apix, arrays.get("apix"), particles, base.shape[0])
    step = provenance_step("import", {"source": "wiggle", "apix": apix, "voxel_size": voxel_size,
                                      "voxel_size_from": voxel_source}, [input_record(path)])
    return Dataset(maps, latents, uid, voxel_size, (0.0, 0.0, 0.0), [step])


def _wiggle_voxel_size(path, apix, stored, particles, box):
    if apix:
        return apix, "--apix"
    if stored is not None and stored.size == 1 and float(stored) > 0:
        return float(stored), "bundle apix"
    if particles is not None and particles.psize_A and particles.blob_box:
        voxel_size = particles.psize_A * particles.blob_box / box
        warnings.warn(f"{path}: no voxel size in the bundle; using the particles' "
                      f"{particles.psize_A:.4g} Å x {particles.blob_box} px / {box} px = "
                      f"{voxel_size:.4g} Å (pass --apix to set it)", stacklevel=3)
        return voxel_size, "particles blob/psize_A x blob/shape / box"
    raise InputError(path, "the bundle has no voxel size; give it with --apix")


def _read_npz(path, required, optional):
    """The named arrays of an .npz (no pickles); InputError naming what is missing."""
    from zernike3d.io.npz import open_npz

    with open_npz(path, "a readable .npz bundle") as npz:
        missing = [key for key in required if key not in npz]
        if missing:
            raise InputError(path, f"not a WIGGLE 3DVA bundle: lacks {', '.join(missing)} "
                             f"(has {', '.join(sorted(npz.keys))}; expected {', '.join(required)})")
        return {key: npz.read(key) for key in (*required, *optional) if key in npz}
