"""read_map / write_map on real MRC files written and read through mrcfile."""

import re

import mrcfile
import numpy as np
import pytest

from zernike3d.errors import InputError
from zernike3d.io.mrc import read_central_section, read_map, write_map

from conftest import write_raw


def test_write_then_read_keeps_data_voxel_size_and_origin(tmp_path):
    data = np.random.default_rng(0).normal(size=(12, 12, 12)).astype(np.float32)
    write_map(tmp_path / "m.mrc", data, 1.3, origin=(10.0, -4.5, 2.25))
    result = read_map(tmp_path / "m.mrc")
    assert np.array_equal(result.data, data) and result.data.dtype == np.float32
    assert result.voxel_size == 1.3
    assert result.origin == (10.0, -4.5, 2.25)
    with mrcfile.open(tmp_path / "m.mrc") as mrc:  # what other programs see
        assert mrc.voxel_size.x == pytest.approx(1.3)
        assert mrc.header.origin.z == pytest.approx(2.25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mrc"]


def test_reads_the_real_map(hand_map):
    result = read_map(hand_map)
    assert result.data.shape == (64, 64, 64)
    assert result.voxel_size == 1.0


def test_axis_map_is_reordered_to_z_y_x(tmp_path):
    stored = np.arange(4**3, dtype=np.float32).reshape(4, 4, 4)  # file order: sections = x, columns = z
    with mrcfile.new(tmp_path / "swapped.mrc") as mrc:
        mrc.set_data(stored)
        mrc.voxel_size = 1.0
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
    assert np.array_equal(read_map(tmp_path / "swapped.mrc").data, stored.transpose(2, 1, 0))


def test_a_zero_origin_field_gives_way_to_the_start_indices_as_in_chimerax(tmp_path):
    # EMDB-style header: origin 0, the offset in nxstart/nystart/nzstart (column, row, section
    # starts), here with columns along z and sections along x
    with mrcfile.new(tmp_path / "emdb.mrc") as mrc:
        mrc.set_data(np.zeros((4, 4, 4), np.float32))
        mrc.voxel_size = 1.5
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
        mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = -8, -4, 2
    assert read_map(tmp_path / "emdb.mrc").origin == (2 * 1.5, -4 * 1.5, -8 * 1.5)  # x, y, z
    with mrcfile.open(tmp_path / "emdb.mrc", mode="r+") as mrc:  # a set origin field wins
        mrc.header.origin = (1.0, 0.0, 0.0)
    assert read_map(tmp_path / "emdb.mrc").origin == (1.0, 0.0, 0.0)


def test_an_image_stack_is_named_as_such(tmp_path):
    with mrcfile.new(tmp_path / "particles.mrcs") as mrc:
        mrc.set_data(np.zeros((8, 8, 8), np.float32))
        mrc.set_image_stack()
        mrc.voxel_size = 1.0
        mrc.header.cella.z = 8.0  # as particle stacks often have it: the stack's depth, one section per Å
    with pytest.raises(InputError, match="particles.mrcs: a stack of 8 images .* not a 3D map"):
        read_map(tmp_path / "particles.mrcs")


def test_voxel_size_override_and_zero_header(tmp_path):
    path = write_raw(tmp_path / "zero.mrc", np.zeros((4, 4, 4), np.float32), voxel_size=0.0)
    with pytest.raises(InputError, match="zero.mrc: voxel size in the header is 0"):
        read_map(path)
    assert read_map(path, voxel_size=2.5).voxel_size == 2.5


def test_bad_maps_raise_one_line_naming_file_and_problem(bad_maps):
    for path, problem in bad_maps.values():
        with pytest.raises(InputError, match=f"^{re.escape(str(path))}: {problem}") as caught:
            read_map(path)
        assert "\n" not in str(caught.value)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_map(tmp_path / "out.mrc", np.zeros((4, 4)), 1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:Data array contains NaN values")
def test_central_section_is_that_of_the_whole_map(tmp_path):
    """Read through a memory map, or through read_map where the axes are stored in
    another order; a damaged section is refused as read_map refuses it."""
    data = np.random.default_rng(0).standard_normal((9, 9, 9)).astype(np.float32)
    write_map(tmp_path / "plain.mrc", data, 1.5)
    assert np.array_equal(read_central_section(tmp_path / "plain.mrc"), data[4])
    with mrcfile.new(tmp_path / "xyz.mrc") as mrc:
        mrc.set_data(np.ascontiguousarray(data.transpose(2, 1, 0)))  # stored x, y, z
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
        mrc.voxel_size = 1.5
    assert np.array_equal(read_central_section(tmp_path / "xyz.mrc"), read_map(tmp_path / "xyz.mrc").data[4])
    data[4, 2, 3] = np.nan
    with mrcfile.new(tmp_path / "nan.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 1.5
    with pytest.raises(InputError, match="1 of 729 voxels are NaN"):
        read_central_section(tmp_path / "nan.mrc")
