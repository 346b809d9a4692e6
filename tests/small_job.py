"""A small synthetic 3D Variability job on disk, shared by the per-particle tests:
a dataset bundle (chiral phantom + 2 blob components, 200 particles) and its moments."""

from types import SimpleNamespace

import numpy as np

from zernike3d.io.dataset import Dataset
from zernike3d.maths.geometry import BallGeometry
from zernike3d.moments import Moments
from zernike3d.synthetic import chiral_phantom, gaussian_blobs

BOX, VOXEL_SIZE, ORDER, PARTICLES = 24, 2.0, 8, 200
ORIGIN = (10.0, -4.0, 6.0)  # Å, so that tests see it carried to the outputs


def write_small_job(directory):
    """Write ``dataset.npz`` and ``moments.npz`` (order 8, names base, component_0,
    component_1) into ``directory``; returns their paths and the objects."""
    rng = np.random.default_rng(7)
    centre = (BOX // 2) * VOXEL_SIZE
    blob = [centre + 6.0, centre, centre - 4.0]
    moved = [centre + 7.5, centre, centre - 4.0]
    components = [
        gaussian_blobs(BOX, VOXEL_SIZE, [moved, blob], [3.0, 3.0], [1.0, -1.0]),
        gaussian_blobs(BOX, VOXEL_SIZE, [blob, blob], [3.3, 3.0], [1.0, -1.0]),
    ]
    maps = np.stack([chiral_phantom(BOX, VOXEL_SIZE), *components])
    latents = rng.normal(size=(PARTICLES, 2)) * [1.0, 0.5]
    uid = rng.integers(2**63, 2**64 - 1, size=PARTICLES, dtype=np.uint64)
    dataset = Dataset(maps, latents, uid, VOXEL_SIZE, ORIGIN, provenance=[])
    moments = Moments.from_maps(
        dataset.maps, BallGeometry.for_box(BOX, VOXEL_SIZE), ORDER, names=dataset.names, origin=ORIGIN
    )
    paths = SimpleNamespace(dataset=directory / "dataset.npz", moments=directory / "moments.npz")
    dataset.save(paths.dataset)
    moments.save(paths.moments)
    return paths, dataset, moments
