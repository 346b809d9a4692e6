"""Shared fixtures. Real test data lives beside the repository, in ../shared/data
(CI clones the repository next to shared/), and is never modified."""

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The read-only real data folder; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (expected ../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def hand_map(shared_data):
    """hand-vol.mrc: a 64^3 chiral phantom with noise, 1 Å voxels."""
    path = shared_data / "hand-vol.mrc"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def write_raw(path, data, voxel_size=1.0):
    """An MRC file written by mrcfile itself (not by zernike3d)."""
    with mrcfile.new(path, overwrite=True) as mrc, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile warns about NaN data
        mrc.set_data(np.asarray(data))
        mrc.voxel_size = voxel_size
    return path


@pytest.fixture
def bad_maps(tmp_path):
    """Maps read_map must refuse: {label: (path, regex of the problem it reports)}."""
    (tmp_path / "text.mrc").write_text("this is not a map\n" * 100)
    nan = np.ones((6, 6, 6), np.float32)
    nan[0, 0, :3] = np.nan
    nan[1, 1, :2] = np.inf
    return {
        "not MRC": (tmp_path / "text.mrc", "not an MRC file"),
        "missing": (tmp_path / "missing.mrc", "file not found"),
        "non-cubic": (
            write_raw(tmp_path / "flat.mrc", np.zeros((8, 8, 6), np.float32)),
            r"box is not cubic \(x, y, z = 6, 8, 8 voxels\)",
        ),
        "NaN/inf": (write_raw(tmp_path / "nan.mrc", nan), "5 of 216 voxels are NaN or infinite"),
        "2D": (write_raw(tmp_path / "image.mrc", np.zeros((8, 8), np.float32)), r"not a 3D map \(data shape \(8, 8\)\)"),
    }
