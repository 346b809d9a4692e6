"""A dataset's results folder, as the workflow writes it (results/<name>/), read whole.

The folder holds the dataset bundle (preprocessed.npz, or dataset.npz without
preprocessing; :mod:`zernike3d.io.dataset`), moments.npz (:mod:`zernike3d.io.moments_file`)
and particle_invariants.zarr (:mod:`zernike3d.io.particle_invariants`); its name is the
dataset's name. ``compare``, ``align`` (given two folders) and ``match`` read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from zernike3d.errors import InputError

if TYPE_CHECKING:
    from zernike3d.io.dataset import Dataset
    from zernike3d.io.particle_invariants import ParticleInvariants
    from zernike3d.moments import Moments

#: the bundles a results folder may hold, the first found read
BUNDLES = ("preprocessed.npz", "dataset.npz")


@dataclass(frozen=True)
class Results:
    """One dataset's results folder: its name, moments, maps (1+K, N, N, N) [z, y, x] of
    the bundle (those the moments were decomposed from), latents (P, K), uid (P,) uint64
    and per-particle invariant store."""

    name: str
    moments: Moments
    maps: np.ndarray
    latents: np.ndarray
    uid: np.ndarray
    store: ParticleInvariants


@dataclass(frozen=True)
class JobFiles:
    """A results folder's dataset (its ``bundle`` path) and the moments decomposed from
    its maps (``moments_path``), checked to belong together."""

    dataset: Dataset
    bundle: Path
    moments: Moments
    moments_path: Path


def read_job_files(folder: str | Path) -> JobFiles:
    """The :class:`JobFiles` of ``folder``; :class:`InputError` naming what is missing or
    what does not belong together (:func:`zernike3d.analysis.latents.check_job`)."""
    from zernike3d.analysis.latents import check_job
    from zernike3d.io.dataset import Dataset
    from zernike3d.moments import Moments

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a results folder (no such directory)")
    bundle = next((folder / f for f in BUNDLES if (folder / f).is_file()), None)
    if bundle is None:
        raise InputError(folder, f"has neither {' nor '.join(BUNDLES)}: not a results folder of the workflow")
    moments_path = folder / "moments.npz"
    if not moments_path.is_file():
        raise InputError(folder, "has no moments.npz: decompose the dataset first (the workflow's decompose rule)")
    dataset = Dataset.load(bundle)
    moments = Moments.load(moments_path)
    check_job(moments, moments_path, dataset, bundle)
    return JobFiles(dataset, bundle, moments, moments_path)


def read_results(folder: str | Path) -> Results:
    """The :class:`Results` of a 3D Variability job's ``folder`` (:func:`read_job_files`
    and its per-particle invariants); :class:`InputError` naming what is missing or what
    does not belong together."""
    from zernike3d.io.particle_invariants import read_particle_invariants

    folder = Path(folder)
    if folder.is_dir() and not (folder / "particle_invariants.zarr").exists():
        raise InputError(folder, "has no particle_invariants.zarr (compare needs 3D Variability jobs with per-particle "
                         "invariants; align single maps with `zernike3d align`)")
    files = read_job_files(folder)
    dataset = files.dataset
    if dataset.n_components == 0:
        raise InputError(files.bundle, "is a single map; compare needs 3D Variability jobs")
    store = read_particle_invariants(folder / "particle_invariants.zarr")
    if not np.array_equal(store.uid, dataset.uid):
        raise InputError(folder / "particle_invariants.zarr", f"its particles (uid) are not those of {files.bundle}")
    return Results(folder.resolve().name, files.moments, dataset.maps, dataset.latents, dataset.uid, store)
