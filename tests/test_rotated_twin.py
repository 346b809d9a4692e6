"""Two 3D Variability jobs that differ only by a rotation of the molecule give the same
per-particle invariants, particle by particle, through the real stages (import ->
decompose -> invariants) on real files.

The twin's base and component maps are the original ones rotated about the box centre
(voxel box//2, the rotation centre of cryoSPARC); its particles file is the same.
"""

import shutil

import numpy as np
import pytest
from scipy.ndimage import affine_transform
from scipy.spatial.transform import Rotation

from zernike3d.cli import main
from zernike3d.io.mrc import read_map, write_map
from zernike3d.io.particle_invariants import read_particle_invariants
from zernike3d.synthetic import write_3dva_job

BOX, ORDER = 24, 10


def rotate_on_grid(volume):
    """90° about z, exactly, about voxel box//2 of an even box.

    np.rot90 turns about (box-1)/2 and reverses output axis 1; a one-voxel roll along
    that axis moves the turning point to box//2.
    """
    return np.roll(np.rot90(volume, 1, axes=(1, 2)), 1, axis=1)


def rotate_off_grid(volume):
    """A general rotation about voxel box//2, by cubic interpolation."""
    matrix = Rotation.from_euler("zyx", [33, -48, 71], degrees=True).as_matrix()
    centre = np.full(3, BOX // 2, dtype=float)
    return affine_transform(volume, matrix, offset=centre - matrix @ centre, order=3).astype(np.float32)


def particle_invariants_of_job(job_dir, work):
    work.mkdir()
    dataset, moments, store = work / "dataset.npz", work / "moments.npz", work / "P.zarr"
    assert main(["import", "--job-dir", str(job_dir), "--out", str(dataset)]) == 0
    assert main(["decompose", str(dataset), "--order", str(ORDER), "--out", str(moments)]) == 0
    assert main(["invariants", str(moments), "--out", str(work / "F.csv"), "--dataset", str(dataset),
                 "--particles-out", str(store)]) == 0
    return read_particle_invariants(store)


@pytest.fixture(scope="module")
def original(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("original")
    write_3dva_job(root / "job", box=BOX, particles_cs=shared_data / "cryosparc_P12_J24_001_particles.cs")
    return root / "job", particle_invariants_of_job(root / "job", root / "work")


def twin_of(job_dir, rotate, root):
    twin = root / "job"
    shutil.copytree(job_dir, twin)
    for path in twin.glob("*.mrc"):
        m = read_map(path)
        path.unlink()  # the job's maps are inputs (unlabelled): no write replaces them
        write_map(path, rotate(m.data), m.voxel_size, m.origin, output=False)
    return twin


def test_the_grid_rotation_turns_about_voxel_box_half():
    delta = np.zeros((BOX,) * 3)
    delta[BOX // 2, BOX // 2, BOX // 2] = 1
    assert rotate_on_grid(delta)[BOX // 2, BOX // 2, BOX // 2] == 1
    probe = np.zeros((BOX,) * 3)
    probe[BOX // 2, BOX // 2, BOX // 2 + 3] = 1  # 3 voxels along +x ...
    assert rotate_on_grid(probe)[BOX // 2, BOX // 2 - 3, BOX // 2] == 1  # ... lands 3 voxels along -y


def test_exactly_rotated_twin_has_the_same_particle_invariants(original, tmp_path):
    job_dir, expected = original
    twin = particle_invariants_of_job(twin_of(job_dir, rotate_on_grid, tmp_path), tmp_path / "work")
    np.testing.assert_array_equal(twin.uid, expected.uid)
    a, b = expected.invariants[:], twin.invariants[:]
    assert a.shape == (2019, len(expected.nl))
    assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))


def test_smoothly_rotated_twin_agrees_particle_by_particle(original, tmp_path):
    job_dir, expected = original
    twin = particle_invariants_of_job(twin_of(job_dir, rotate_off_grid, tmp_path), tmp_path / "work")
    a, b = expected.invariants[:], twin.invariants[:]
    significant = a > 0.05 * a.max(axis=1, keepdims=True)
    relative = np.abs(a - b)[significant] / a[significant]
    assert np.median(relative) < 0.01 and np.max(relative) < 0.05
    # and the invariants do tell particles apart: the twin is not trivially equal to anything
    shuffled = b[np.random.default_rng(0).permutation(len(b))]
    assert np.median(np.abs(a - shuffled)[significant] / a[significant]) > 5 * np.median(relative)
