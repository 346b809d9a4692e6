"""`zernike3d preprocess` and its maths: crop, Fourier binning, soft masks, .cmm markers."""

import argparse
import hashlib
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from zernike3d.errors import InputError
from zernike3d.io.cmm import read_markers, read_single_marker
from zernike3d.io.dataset import Dataset
from zernike3d.maths.preprocessing import (
    center_of_mass, crop_box, fourier_bin, soft_sphere_mask, soften_mask,
)
from zernike3d.stages import preprocess
from zernike3d.synthetic import gaussian_blobs


def run_preprocess(*argv):
    parser = argparse.ArgumentParser()
    preprocess.add_arguments(parser)
    return preprocess.run(parser.parse_args([str(a) for a in argv]))


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def dataset_path(tmp_path):
    """Base map: a Gaussian off the box centre; two random components; origin non-zero."""
    rng = np.random.default_rng(3)
    base = gaussian_blobs(40, 1.5, [(33.0, 27.0, 36.0)], [4.0], [2.0])
    components = rng.normal(size=(2, 40, 40, 40)).astype(np.float32)
    dataset = Dataset(np.concatenate([base[None], components]), rng.normal(size=(7, 2)),
                      np.arange(7), 1.5, (10.0, -20.0, 30.0), [])
    path = tmp_path / "dataset.npz"
    dataset.save(path)
    return path


def write_mrc(path, data, voxel_size):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(data, dtype=np.float32))
        mrc.voxel_size = voxel_size


# --- maths -----------------------------------------------------------------------------

def test_fourier_bin_of_a_band_limited_gaussian_is_the_coarse_sampling():
    centre, sigma = (30.3, 33.0, 28.6), 4.0  # Å, off-grid; spectrum ~3e-9 at the new Nyquist
    fine = gaussian_blobs(64, 1.0, [centre], [sigma], [1.0])
    coarse = gaussian_blobs(32, 2.0, [centre], [sigma], [1.0])
    binned = fourier_bin(fine, 2)
    assert binned.shape == (32, 32, 32) and binned.dtype == np.float32
    np.testing.assert_allclose(binned, coarse, atol=1e-6)
    assert binned.mean() == pytest.approx(fine.mean(), rel=1e-6)


def test_fourier_bin_odd_output_box_and_stacks():
    fine = gaussian_blobs(60, 1.0, [(31.0, 29.0, 30.5)], [5.0], [1.0])
    stack = np.stack([fine, 2 * fine])
    binned = fourier_bin(stack, 3)  # 20 voxels of 3 Å
    coarse = gaussian_blobs(20, 3.0, [(31.0, 29.0, 30.5)], [5.0], [1.0])
    np.testing.assert_allclose(binned[0], coarse, atol=1e-5)
    np.testing.assert_allclose(binned[1], 2 * binned[0], rtol=1e-6)


def test_fourier_bin_preserves_the_mean_of_any_map_and_factor_one_is_identity():
    rng = np.random.default_rng(0)
    data = rng.normal(1.0, 1.0, size=(24, 24, 24)).astype(np.float32)
    for factor in (2, 3, 4):
        assert fourier_bin(data, factor).mean() == pytest.approx(data.mean(), rel=1e-5)
    np.testing.assert_allclose(fourier_bin(data, 1), data, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible"):
        fourier_bin(data, 5)


def test_crop_box_puts_the_centre_voxel_at_box_half():
    data = np.arange(20**3, dtype=np.float32).reshape(20, 20, 20)
    out, start, padded = crop_box(data, (5, 12, 9), 8)
    assert out[4, 4, 4] == data[5, 12, 9]
    assert start == (1, 8, 5) and not padded
    np.testing.assert_array_equal(out, data[1:9, 8:16, 5:13])
    odd, _, _ = crop_box(data, (5, 12, 9), 7)
    assert odd[3, 3, 3] == data[5, 12, 9]


def test_crop_box_pads_with_zeros_outside():
    data = np.ones((10, 10, 10), dtype=np.float32)
    out, start, padded = crop_box(data, (1, 5, 9), 6)
    assert padded and start == (-2, 2, 6)
    assert out[:2].sum() == 0 and out[:, :, 4:].sum() == 0
    assert out[2:, :, :4].min() == 1
    far, _, padded = crop_box(data, (50, 50, 50), 4)
    assert padded and not far.any()


def test_center_of_mass_ignores_negative_density():
    blob = gaussian_blobs(32, 2.0, [(20.0, 30.0, 40.0)], [3.0], [1.0])
    noise = blob - 0.2 * gaussian_blobs(32, 2.0, [(50.0, 50.0, 10.0)], [3.0], [1.0])
    assert center_of_mass(noise, 2.0) == pytest.approx((20.0, 30.0, 40.0), abs=1e-3)
    with pytest.raises(ValueError, match="no positive density"):
        center_of_mass(-blob, 2.0)


def test_soft_sphere_mask_values():
    radius, edge, v = 8.0, 4.0, 0.5
    mask = soft_sphere_mask(64, v, radius, edge)
    axis = np.arange(64) * v - 32 * v
    r = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    assert (mask[r <= radius] == 1).all()
    assert (mask[r >= radius + edge] == 0).all()
    ring = (r > radius) & (r < radius + edge)
    np.testing.assert_allclose(mask[ring], 0.5 * (1 + np.cos(np.pi * (r[ring] - radius) / edge)),
                               atol=1e-6)
    assert mask[32, 32, 32 + 20] == pytest.approx(0.5)  # r = 10 Å, half way through the edge


def test_soften_mask_adds_a_cosine_edge_outside():
    binary = np.zeros((32, 32, 32), dtype=np.float32)
    binary[12:20, 12:20, 12:20] = 1
    soft = soften_mask(binary, 2.0, 6.0)
    assert (soft[binary == 1] == 1).all()
    assert soft[16, 16, 20] == pytest.approx(0.5 * (1 + np.cos(np.pi * 2 / 6)))  # 1 voxel = 2 Å out
    assert soft[16, 16, 23] == 0  # 4 voxels = 8 Å > 6 Å
    assert soft[16, 16, 21] == pytest.approx(0.5 * (1 + np.cos(np.pi * 4 / 6)))


def test_cmm_markers(tmp_path):
    cmm = tmp_path / "m.cmm"
    cmm.write_text('<marker_set name="s">\n'
                   '<marker id="1" x="1.5" y="-2" z="30" r="1" g="1" b="0" radius="1"/>\n'
                   '<marker id="2" x="4" y="5" z="6" radius="1"/>\n</marker_set>\n')
    np.testing.assert_array_equal(read_markers(cmm), [[1.5, -2.0, 30.0], [4.0, 5.0, 6.0]])
    with pytest.raises(InputError, match="exactly one marker, found 2"):
        read_single_marker(cmm)
    (tmp_path / "bad.cmm").write_text("<marker_set><marker id='1' x='a'/></marker_set>")
    with pytest.raises(InputError, match="lacks numeric x, y, z"):
        read_markers(tmp_path / "bad.cmm")
    (tmp_path / "junk.cmm").write_text("not xml <")
    with pytest.raises(InputError, match="not a Chimera marker"):
        read_markers(tmp_path / "junk.cmm")


# --- stage -----------------------------------------------------------------------------

def test_crop_around_a_point_keeps_that_voxel_at_the_new_centre(dataset_path, tmp_path):
    before = Dataset.load(dataset_path)
    point_voxel_zyx = (25, 17, 11)
    point = ",".join(str(i * 1.5) for i in point_voxel_zyx[::-1])  # x,y,z in Å
    run_preprocess(dataset_path, "--crop", 16, "--center", point, "--out", tmp_path / "c.npz")
    after = Dataset.load(tmp_path / "c.npz")
    assert after.maps.shape == (3, 16, 16, 16)
    np.testing.assert_array_equal(after.maps[:, 8, 8, 8], before.maps[(slice(None),) + point_voxel_zyx])
    start_xyz = np.array(point_voxel_zyx[::-1]) - 8
    assert after.origin == pytest.approx(tuple(np.array(before.origin) + start_xyz * 1.5))
    np.testing.assert_array_equal(after.latents, before.latents)


def test_crop_without_center_uses_the_box_centre(dataset_path, tmp_path):
    before = Dataset.load(dataset_path)
    run_preprocess(dataset_path, "--crop", 24, "--out", tmp_path / "c.npz")
    after = Dataset.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(after.maps, before.maps[:, 8:32, 8:32, 8:32])


def test_center_of_mass_crop_uses_the_base_map_for_every_map(dataset_path, tmp_path):
    before = Dataset.load(dataset_path)
    run_preprocess(dataset_path, "--crop", 20, "--center", "com", "--out", tmp_path / "c.npz")
    after = Dataset.load(tmp_path / "c.npz")
    # the base Gaussian sits at (33, 27, 36) Å = voxel (x, y, z) (22, 18, 24)
    np.testing.assert_array_equal(after.maps, before.maps[:, 14:34, 8:28, 12:32])
    assert center_of_mass(after.maps[0], 1.5) == pytest.approx((15.0, 15.0, 15.0), abs=0.75)


def test_center_from_a_cmm_marker_subtracts_the_origin(dataset_path, tmp_path):
    origin = Dataset.load(dataset_path).origin
    x, y, z = 16.5, 25.5, 37.5  # voxel (x, y, z) = (11, 17, 25)
    cmm = tmp_path / "centre.cmm"
    cmm.write_text(f'<marker_set name="c"><marker id="1" x="{x + origin[0]}" '
                   f'y="{y + origin[1]}" z="{z + origin[2]}" radius="1"/></marker_set>')
    run_preprocess(dataset_path, "--crop", 16, "--center", cmm, "--out", tmp_path / "a.npz")
    run_preprocess(dataset_path, "--crop", 16, "--center", f"{x},{y},{z}", "--out", tmp_path / "b.npz")
    a, b = Dataset.load(tmp_path / "a.npz"), Dataset.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.maps, b.maps)
    assert a.provenance[-1]["inputs"][1]["sha256"] == sha256(cmm)


def test_crop_outside_the_box_pads_and_warns(dataset_path, tmp_path):
    with pytest.warns(UserWarning, match="zero-padded"):
        run_preprocess(dataset_path, "--crop", 48, "--out", tmp_path / "c.npz")
    after = Dataset.load(tmp_path / "c.npz")
    assert after.box == 48 and not after.maps[:, :4].any()
    assert after.provenance[-1]["parameters"]["padded"] is True


def test_bin_stage_scales_voxel_size_and_keeps_origin(dataset_path, tmp_path):
    before = Dataset.load(dataset_path)
    run_preprocess(dataset_path, "--bin", 2, "--out", tmp_path / "b.npz")
    after = Dataset.load(tmp_path / "b.npz")
    assert after.box == 20 and after.voxel_size == 3.0 and after.origin == before.origin
    np.testing.assert_allclose(after.maps, fourier_bin(before.maps, 2))
    np.testing.assert_allclose(after.maps[0].mean(), before.maps[0].mean(), rtol=1e-5)


def test_binning_to_an_odd_box_warns_that_the_centre_moves(dataset_path, tmp_path):
    before = Dataset.load(dataset_path)
    with pytest.warns(UserWarning, match=f"binning box 36 by 4 gives box 9, whose centre voxel lies {2 * before.voxel_size:g} Å "
                      "from the input's .* crop to 32 or 40 first"):
        run_preprocess(dataset_path, "--crop", 36, "--bin", 4, "--out", tmp_path / "b.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an even binned box keeps its centre: no warning
        run_preprocess(dataset_path, "--bin", 2, "--out", tmp_path / "c.npz")


def test_bin_needs_a_divisible_box(dataset_path, tmp_path):
    with pytest.raises(InputError, match="box 40 is not divisible by 3; crop to 39 or 42"):
        run_preprocess(dataset_path, "--bin", 3, "--out", tmp_path / "b.npz")
    with pytest.raises(InputError, match="box 34 is not divisible by 4"):
        run_preprocess(dataset_path, "--crop", 34, "--bin", 4, "--out", tmp_path / "b.npz")
    for factor in (8, 40, 80):  # 5, 1 and 0 voxels left: no map
        with pytest.raises(InputError, match=f"box 40 binned by {factor} leaves {40 // factor} voxels; a map needs at least 8"):
            run_preprocess(dataset_path, "--bin", factor, "--out", tmp_path / "b.npz")
    assert not (tmp_path / "b.npz").exists()


def test_sphere_mask_multiplies_every_map_by_the_same_mask(dataset_path, tmp_path):
    before = Dataset.load(dataset_path)
    run_preprocess(dataset_path, "--mask", "sphere", "--mask-radius", 20, "--mask-edge", 6,
                   "--out", tmp_path / "m.npz")
    after = Dataset.load(tmp_path / "m.npz")
    mask = soft_sphere_mask(40, 1.5, 20.0, 6.0)
    np.testing.assert_array_equal(after.maps, before.maps * mask)
    assert after.provenance[-1]["parameters"] == {"kind": "sphere", "radius_A": 20.0, "edge_A": 6.0,
                                                  "center_voxel_zyx": [20, 20, 20]}


def test_sphere_mask_defaults(dataset_path, tmp_path):
    run_preprocess(dataset_path, "--mask", "sphere", "--out", tmp_path / "m.npz")
    parameters = Dataset.load(tmp_path / "m.npz").provenance[-1]["parameters"]
    assert parameters["edge_A"] == 4.5  # 3 voxels of 1.5 Å
    assert parameters["radius_A"] == 40 * 1.5 / 2 - 4.5


def test_mask_file(dataset_path, tmp_path):
    before = Dataset.load(dataset_path)
    user_mask = soft_sphere_mask(20, 3.0, 15.0, 6.0)
    write_mrc(tmp_path / "mask.mrc", user_mask, 3.0)
    run_preprocess(dataset_path, "--bin", 2, "--mask", tmp_path / "mask.mrc", "--out", tmp_path / "m.npz")
    after = Dataset.load(tmp_path / "m.npz")
    np.testing.assert_allclose(after.maps, fourier_bin(before.maps, 2) * user_mask)
    assert after.provenance[-1]["inputs"][1]["sha256"] == sha256(tmp_path / "mask.mrc")


def test_mask_file_errors(dataset_path, tmp_path):
    write_mrc(tmp_path / "small.mrc", np.ones((20, 20, 20)), 1.5)
    with pytest.raises(InputError, match="mask box 20 differs from the data's box after crop and bin, 40"):
        run_preprocess(dataset_path, "--mask", tmp_path / "small.mrc", "--out", tmp_path / "m.npz")
    write_mrc(tmp_path / "notmask.mrc", np.full((40, 40, 40), 3.0), 1.5)
    with pytest.raises(InputError, match=r"values must lie in \[0, 1\]"):
        run_preprocess(dataset_path, "--mask", tmp_path / "notmask.mrc", "--out", tmp_path / "m.npz")
    with pytest.raises(InputError, match="sphere only"):
        run_preprocess(dataset_path, "--mask", tmp_path / "small.mrc", "--mask-radius", 3,
                       "--out", tmp_path / "m.npz")
    with pytest.raises(InputError, match="need --mask"):
        run_preprocess(dataset_path, "--mask-edge", 3, "--out", tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_provenance_records_each_step_with_checksums(dataset_path, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_preprocess(dataset_path, "--crop", 32, "--center", "com", "--bin", 2,
                       "--mask", "sphere", "--out", tmp_path / "p.npz")
    after = Dataset.load(tmp_path / "p.npz")
    steps = after.provenance
    assert [(s["stage"], s.get("operation")) for s in steps] == [
        ("preprocess", "crop"), ("preprocess", "bin"), ("preprocess", "mask")]
    for step in steps:
        assert step["inputs"][0] == {"path": str(dataset_path.resolve()), "sha256": sha256(dataset_path)}
    assert steps[0]["parameters"]["center"] == "com"
    assert steps[1]["parameters"] == {"factor": 2, "box_in": 32, "box_out": 16}
    assert after.voxel_size == 3.0 and after.box == 16


def test_no_operation_copies_the_dataset(dataset_path, tmp_path):
    run_preprocess(dataset_path, "--out", tmp_path / "same.npz")
    before, after = Dataset.load(dataset_path), Dataset.load(tmp_path / "same.npz")
    np.testing.assert_array_equal(after.maps, before.maps)
    assert after.provenance == before.provenance


@pytest.mark.parametrize("argv, message", [
    (["--crop", "0"], "--crop"),
    (["--bin", "0"], "--bin"),
    (["--center", "1,2"], "expected x,y,z"),
    (["--mask", "cube"], "expected 'sphere' or an .mrc"),
    (["--mask", "sphere", "--mask-edge", "-1"], "--mask-edge"),
    (["--mask", "sphere", "--mask-radius", "-5"], "radius must be positive"),
    (["--crop", "8", "--center", "absent.cmm"], "marker file not found"),
])
def test_option_errors(dataset_path, tmp_path, argv, message):
    with pytest.raises(InputError, match=message):
        run_preprocess(dataset_path, *argv, "--out", tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
