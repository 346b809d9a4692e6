"""`zernike3d import` and the dataset bundle, on real MRC and cryoSPARC .cs files."""

import argparse
import hashlib
import shutil
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from cryosparc.dataset import CSDAT_FORMAT
from cryosparc.dataset import Dataset as CsDataset
from numpy.lib.recfunctions import repack_fields

from zernike3d.errors import InputError
from zernike3d.io.cryosparc import read_particles
from zernike3d.io.dataset import Dataset
from zernike3d.stages import import_data
from zernike3d.synthetic import write_3dva_job

DATA = Path("/work/shared/data")
REAL_CS = DATA / "cryosparc_P12_J24_001_particles.cs"
EXPORTED_CS = DATA / "cryosparc_J2_particles_exported.cs"
HAND = DATA / "hand-vol.mrc"


def run_import(*argv):
    parser = argparse.ArgumentParser()
    import_data.add_arguments(parser)
    return import_data.run(parser.parse_args([str(a) for a in argv]))


@pytest.fixture
def job(tmp_path):
    """A synthetic 3DVA job directory (real .cs rows + 3 components): (dir, map, comps, cs)."""
    map_path, components, cs = write_3dva_job(tmp_path / "J1", particles_cs=REAL_CS)
    return tmp_path / "J1", map_path, components, cs


def mrc_data(path):
    with mrcfile.open(path) as mrc:
        return mrc.data.copy(), float(mrc.voxel_size.x)


def write_mrc(path, data, voxel_size=1.0):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(data, dtype=np.float32))
        mrc.voxel_size = voxel_size


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_reproduces(dataset, map_path, components, cs):
    expected = [mrc_data(p)[0] for p in [map_path, *components]]
    np.testing.assert_array_equal(dataset.maps, np.stack(expected))
    table = np.load(cs)
    np.testing.assert_array_equal(dataset.uid, table["uid"])
    for k in range(len(components)):
        np.testing.assert_array_equal(dataset.latents[:, k], table[f"components_mode_{k}/value"])
    assert dataset.voxel_size == pytest.approx(mrc_data(map_path)[1], rel=1e-6)
    assert dataset.names == ["base"] + [f"component_{k}" for k in range(len(components))]


def assert_nothing_written(directory):
    assert list(Path(directory).glob("*.npz")) == []
    assert list(Path(directory).glob(".*tmp*")) == []


def test_job_dir_import_reproduces_maps_latents_uids(job, tmp_path):
    directory, map_path, components, cs = job
    out = tmp_path / "dataset.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # voxel size agrees with blob/psize_A: no warning
        assert run_import("--job-dir", directory, "--out", out) == 0
    dataset = Dataset.load(out)
    assert_reproduces(dataset, map_path, components, cs)
    assert dataset.latents.dtype == np.float32 and dataset.uid.dtype == np.uint64
    assert dataset.latents.shape == (2019, 3)


def test_explicit_files_give_the_same_dataset(job, tmp_path):
    directory, map_path, components, cs = job
    run_import("--job-dir", directory, "--out", tmp_path / "a.npz")
    run_import("--map", map_path, "--components", *components, "--particles", cs,
               "--out", tmp_path / "b.npz")
    a, b = Dataset.load(tmp_path / "a.npz"), Dataset.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.latents, b.latents)
    np.testing.assert_array_equal(a.uid, b.uid)
    assert b.provenance[0]["parameters"]["source"] == "files"


def test_provenance_records_inputs_with_checksums(job, tmp_path):
    directory, map_path, components, cs = job
    run_import("--job-dir", directory, "--out", tmp_path / "d.npz")
    (step,) = Dataset.load(tmp_path / "d.npz").provenance
    assert step["stage"] == "import"
    assert step["parameters"]["voxel_size_from"] == "map header"
    expected = {str(p.resolve()): sha256(p) for p in [map_path, *components, cs]}
    assert {r["path"]: r["sha256"] for r in step["inputs"]} == expected


def test_compressed_cs_format_reads_the_same(job, tmp_path):
    directory, map_path, components, cs = job
    compressed = tmp_path / "compressed.cs"
    CsDataset.load(cs).save(compressed, format=CSDAT_FORMAT)
    assert compressed.read_bytes()[:6] != cs.read_bytes()[:6]
    a, b = read_particles(cs), read_particles(compressed)
    np.testing.assert_array_equal(a.latents, b.latents)
    np.testing.assert_array_equal(a.uid, b.uid)


def test_single_map(tmp_path):
    run_import("--map", HAND, "--out", tmp_path / "hand.npz")
    dataset = Dataset.load(tmp_path / "hand.npz")
    data, voxel = mrc_data(HAND)
    np.testing.assert_array_equal(dataset.maps, data[None])
    assert dataset.latents.shape == (0, 0) and dataset.uid.shape == (0,)
    assert dataset.voxel_size == voxel and dataset.names == ["base"]


def test_apix_overrides_header(tmp_path):
    run_import("--map", HAND, "--apix", "1.35", "--out", tmp_path / "hand.npz")
    dataset = Dataset.load(tmp_path / "hand.npz")
    assert dataset.voxel_size == 1.35
    assert dataset.provenance[0]["parameters"]["voxel_size_from"] == "--apix"


def test_exported_cs_without_3dva_fields_is_a_clear_error(job, tmp_path):
    _, map_path, components, _ = job
    with pytest.raises(InputError, match="not a 3D Variability particles file") as err:
        run_import("--map", map_path, "--components", *components,
                   "--particles", EXPORTED_CS, "--out", tmp_path / "x.npz")
    assert str(EXPORTED_CS) in str(err.value)
    assert_nothing_written(tmp_path)


def test_not_a_cs_file(job, tmp_path):
    _, map_path, components, _ = job
    with pytest.raises(InputError, match="not a readable cryoSPARC .cs file") as err:
        run_import("--map", map_path, "--components", *components, "--particles", HAND,
                   "--out", tmp_path / "x.npz")
    assert str(HAND) in str(err.value)


def test_gap_in_component_maps_names_the_missing_file(job, tmp_path):
    directory, _, components, _ = job
    components[1].unlink()
    with pytest.raises(InputError, match="missing J1_component_1.mrc"):
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")
    assert_nothing_written(tmp_path)


def test_missing_particles_in_job_dir(job, tmp_path):
    directory, _, _, cs = job
    cs.unlink()
    with pytest.raises(InputError, match="missing J1_particles.cs"):
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")


def test_fewer_component_maps_than_latent_dimensions(job, tmp_path):
    directory, map_path, components, cs = job
    with pytest.raises(InputError, match="3 latent dimensions .* but 2 component maps"):
        run_import("--map", map_path, "--components", *components[:2], "--particles", cs,
                   "--out", tmp_path / "x.npz")
    components[2].unlink()  # the job directory itself without its last component
    with pytest.raises(InputError, match="3 latent dimensions .* but 2 component maps"):
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")
    assert_nothing_written(tmp_path)


def test_several_jobs_in_one_directory_is_ambiguous(job, tmp_path):
    directory, map_path, _, _ = job
    shutil.copy(map_path, directory / "J7_map.mrc")
    with pytest.raises(InputError, match=r"several jobs \(J1, J7\)"):
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")


def test_downloaded_job_files_are_found_and_a_second_copy_is_refused(job, tmp_path):
    directory, map_path, components, cs = job
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    for path in (map_path, *components, cs):  # as cryoSPARC names a download: cryosparc_P<p>_ in front
        shutil.copy(path, downloaded / f"cryosparc_P3_{path.name}")
    assert run_import("--job-dir", downloaded, "--out", tmp_path / "a.npz") == 0
    run_import("--job-dir", directory, "--out", tmp_path / "b.npz")
    a, b = Dataset.load(tmp_path / "a.npz"), Dataset.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.latents, b.latents)
    shutil.copy(map_path, downloaded / map_path.name)
    with pytest.raises(InputError, match="two files for the map: J1_map.mrc and cryosparc_P3_J1_map.mrc"):
        run_import("--job-dir", downloaded, "--out", tmp_path / "c.npz")


def test_empty_job_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no 3D Variability outputs"):
        run_import("--job-dir", tmp_path / "empty", "--out", tmp_path / "x.npz")


def test_component_box_differs_from_map(job, tmp_path):
    directory, _, components, _ = job
    write_mrc(components[2], np.zeros((16, 16, 16)), voxel_size=2.95)
    with pytest.raises(InputError, match="box 16 differs from the map's 32") as err:
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")
    assert "J1_component_2.mrc" in str(err.value)
    assert_nothing_written(tmp_path)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nan_in_a_map(job, tmp_path):
    directory, _, components, _ = job
    data, voxel = mrc_data(components[0])
    data[3, 4, 5] = np.nan
    write_mrc(components[0], data, voxel)
    with pytest.raises(InputError, match="NaN") as err:
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")
    assert "J1_component_0.mrc" in str(err.value)
    assert_nothing_written(tmp_path)


def _rewrite_cs(cs, change):
    table = np.load(cs)
    table = change(table)
    with open(cs, "wb") as f:
        np.save(f, table)


def test_zero_particles(job, tmp_path):
    directory, _, _, cs = job
    _rewrite_cs(cs, lambda t: t[:0])
    with pytest.raises(InputError, match="0 particles"):
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")


def test_nan_latents(job, tmp_path):
    directory, _, _, cs = job

    def poison(table):
        table["components_mode_1/value"][[5, 9]] = np.nan
        return table

    _rewrite_cs(cs, poison)
    with pytest.raises(InputError, match=r"2 particles have NaN .*components_mode_1/value"):
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")


def test_missing_component_index_in_cs(job, tmp_path):
    directory, _, _, cs = job
    _rewrite_cs(cs, lambda t: repack_fields(
        t[[n for n in t.dtype.names if not n.startswith("components_mode_1/")]]))
    with pytest.raises(InputError, match="missing components_mode_1/value"):
        run_import("--job-dir", directory, "--out", tmp_path / "x.npz")


def test_voxel_size_mismatch_warns_with_both_numbers(tmp_path):
    map_path, components, cs = write_3dva_job(tmp_path / "job", voxel_size=1.0, particles_cs=REAL_CS)
    with pytest.warns(UserWarning) as record:
        run_import("--job-dir", tmp_path / "job", "--out", tmp_path / "d.npz")
    (message,) = [str(w.message) for w in record]
    assert "voxel size 1 Å (map header)" in message
    assert "pixel size 2.95 Å (blob/psize_A" in message
    assert "2.95 Å x 180 px / 32 px = 16.59 Å" in message
    assert Dataset.load(tmp_path / "d.npz").voxel_size == 1.0


def test_fourier_cropped_voxel_size_is_consistent(tmp_path):
    write_3dva_job(tmp_path / "job", voxel_size=2.95 * 180 / 32, particles_cs=REAL_CS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_import("--job-dir", tmp_path / "job", "--out", tmp_path / "d.npz")


def test_apix_override_is_still_checked_against_particles(job, tmp_path):
    directory = job[0]
    with pytest.warns(UserWarning, match=r"voxel size 1.3 Å \(--apix\)"):
        run_import("--job-dir", directory, "--apix", "1.3", "--out", tmp_path / "d.npz")
    assert Dataset.load(tmp_path / "d.npz").voxel_size == 1.3


def test_bad_apix(tmp_path):
    with pytest.raises(InputError, match="--apix"):
        run_import("--map", HAND, "--apix", "0", "--out", tmp_path / "x.npz")


def test_components_need_particles(job, tmp_path):
    _, map_path, components, _ = job
    with pytest.raises(InputError, match="give both"):
        run_import("--map", map_path, "--components", *components, "--out", tmp_path / "x.npz")


def write_wiggle_bundle(path, map_path, components, cs, **extra):
    """As WIGGLE's wiggle_packager.py (3dva mode) writes it."""
    np.savez_compressed(
        path,
        particles=np.load(cs),
        consensus_map=mrc_data(map_path)[0],
        components=[mrc_data(c)[0] for c in components],
        **extra,
    )


def test_wiggle_bundle(job, tmp_path):
    _, map_path, components, cs = job
    bundle = tmp_path / "bundle.npz"
    write_wiggle_bundle(bundle, map_path, components, cs)
    run_import("--wiggle", bundle, "--apix", "2.95", "--out", tmp_path / "w.npz")
    dataset = Dataset.load(tmp_path / "w.npz")
    assert_reproduces(dataset, map_path, components, cs)
    assert dataset.origin == (0.0, 0.0, 0.0)
    assert dataset.provenance[0]["inputs"][0]["sha256"] == sha256(bundle)


def test_wiggle_voxel_size_from_particles_warns(job, tmp_path):
    _, map_path, components, cs = job
    bundle = tmp_path / "bundle.npz"
    write_wiggle_bundle(bundle, map_path, components, cs)
    with pytest.warns(UserWarning, match=r"2.95 Å x 180 px / 32 px = 16.59 Å"):
        run_import("--wiggle", bundle, "--out", tmp_path / "w.npz")
    assert Dataset.load(tmp_path / "w.npz").voxel_size == pytest.approx(2.95 * 180 / 32)


def test_wiggle_plain_latents_get_numbered_uids(job, tmp_path):
    _, map_path, components, _ = job
    latents = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    bundle = tmp_path / "plain.npz"
    np.savez(bundle, particles=latents, consensus_map=mrc_data(map_path)[0],
             components=np.stack([mrc_data(c)[0] for c in components]), apix=2.0)
    with pytest.warns(UserWarning, match="without uids"):
        run_import("--wiggle", bundle, "--out", tmp_path / "w.npz")
    dataset = Dataset.load(tmp_path / "w.npz")
    np.testing.assert_array_equal(dataset.latents, latents)
    np.testing.assert_array_equal(dataset.uid, np.arange(50))
    assert dataset.voxel_size == 2.0


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"consensus_map": np.zeros((8, 8, 8))}, "lacks components, particles"),
        ({"consensus_map": np.zeros((8, 8, 8)), "components": np.zeros((2, 8, 8, 8)),
          "particles": np.zeros((5, 3))}, "3 latent dimensions but 2 component maps"),
        ({"consensus_map": np.zeros((8, 8, 8)), "components": np.zeros((1, 6, 6, 6)),
          "particles": np.zeros((5, 1))}, "components must be"),
        ({"consensus_map": np.zeros((8, 8, 8)), "components": np.full((1, 8, 8, 8), np.nan),
          "particles": np.zeros((5, 1)), "apix": 1.0}, "NaN"),
        ({"consensus_map": np.zeros((8, 8, 8)), "components": np.zeros((1, 8, 8, 8)),
          "particles": np.zeros((5, 1))}, "no voxel size"),
        ({"consensus_map": np.zeros((8, 8, 8)), "particles": np.zeros((5, 2)),
          "components": np.array([np.zeros((8, 8, 8)), np.zeros((4, 4, 4))], dtype=object)},
         "Python objects"),
    ],
)
def test_wiggle_bundle_errors(tmp_path, arrays, message):
    bundle = tmp_path / "bad.npz"
    np.savez(bundle, allow_pickle=True, **arrays)
    with pytest.raises(InputError, match=message) as err:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_import("--wiggle", bundle, "--out", tmp_path / "x.npz")
    assert str(bundle) in str(err.value)
    assert not (tmp_path / "x.npz").exists()


def test_dataset_load_rejects_other_files(tmp_path):
    other = tmp_path / "moments.npz"
    np.savez(other, maps=np.zeros((1, 4, 4, 4)))
    with pytest.raises(InputError, match="not a zernike3d dataset") as err:
        Dataset.load(other)
    assert str(other) in str(err.value)
    with pytest.raises(InputError, match="not a zernike3d dataset"):
        Dataset.load(HAND)
    with pytest.raises(InputError, match="not found"):
        Dataset.load(tmp_path / "absent.npz")


def test_dataset_round_trip_and_format_keys(job, tmp_path):
    run_import("--job-dir", job[0], "--out", tmp_path / "d.npz")
    with np.load(tmp_path / "d.npz", allow_pickle=False) as npz:
        assert str(npz["format"]) == "zernike3d-dataset" and int(npz["format_version"]) == 1
        assert npz["maps"].dtype == np.float32 and npz["maps"].shape == (4, 32, 32, 32)
        assert list(npz["names"]) == ["base", "component_0", "component_1", "component_2"]
        assert npz["origin"].shape == (3,)
    dataset = Dataset.load(tmp_path / "d.npz")
    dataset.save(tmp_path / "again.npz")
    again = Dataset.load(tmp_path / "again.npz")
    np.testing.assert_array_equal(again.maps, dataset.maps)
    assert again.provenance == dataset.provenance
    assert (again.voxel_size, again.origin) == (dataset.voxel_size, dataset.origin)
