"""Latent-space points (zernike3d.analysis.latents) and `zernike3d reconstruct --dataset`."""

import csv
import re
from dataclasses import replace

import numpy as np
import pytest
from small_job import write_small_job

from zernike3d.cli import main
from zernike3d.errors import InputError
from zernike3d.io.dataset import Dataset
from zernike3d.io.mrc import read_map
from zernike3d.analysis.latents import (
    LatentPoint,
    cluster_points,
    latent_points,
    moments_at,
    particle_points,
    series_points,
)
from zernike3d.maths.transform import reconstruct


@pytest.fixture
def job():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(500, 3)).astype(np.float32)
    uid = rng.integers(2**63, 2**64 - 1, size=500, dtype=np.uint64)  # cryoSPARC-like
    return latents, uid


def test_particle_by_index_and_uid(job):
    latents, uid = job
    a, b = particle_points(["7", f"uid:{uid[42]}"], latents, uid)
    assert (a.name, a.kind) == ("particle_index_7", "particle")
    np.testing.assert_array_equal(a.z, latents[7])
    assert b.name == f"particle_uid_{uid[42]}"
    np.testing.assert_array_equal(b.z, latents[42])
    assert b.z.dtype == np.float64


@pytest.mark.parametrize(
    "selector, message",
    [("uid:12345", "no particle has uid 12345"), ("500", "out of range 0..499"),
     ("-1", "out of range"), ("abc", "expected a particle index"), ("uid:x", "expected a uid"), ("uid:-3", "no particle"), (f"uid:{2**64}", "no particle")],
)
def test_particle_errors(job, selector, message):
    latents, uid = job
    with pytest.raises(InputError, match=message):
        particle_points([selector], latents, uid)


def test_explicit_latents():
    (p,) = latent_points(["0.5,-1,2e-1"], 3)
    assert p.name == "latent_00" and p.kind == "latent"
    np.testing.assert_array_equal(p.z, [0.5, -1.0, 0.2])
    with pytest.raises(InputError, match="has 2 values; the job has 3 components"):
        latent_points(["1,2"], 3)
    with pytest.raises(InputError, match="comma-separated"):
        latent_points(["1,,2"], 3)


def test_series_endpoints_are_the_percentiles(job):
    latents, _ = job
    points = series_points(latents, frames=5, percentiles=(10, 90))
    assert len(points) == 3 * 5
    assert [p.name for p in points[:5]] == [f"series_c0_f{i:02d}" for i in range(5)]
    for k in range(3):
        run = np.array([p.z for p in points[5 * k : 5 * k + 5]])
        assert np.all(np.delete(run, k, axis=1) == 0)
        np.testing.assert_allclose(run[[0, -1], k], np.percentile(latents[:, k], [10, 90]))
        np.testing.assert_allclose(np.diff(run[:, k]), np.diff(run[:, k])[0])
    with pytest.raises(InputError, match="low < high"):
        series_points(latents, 5, (90, 10))


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(3)
    truth = np.array([[5.0, 0.0], [-5.0, 5.0], [0.0, -6.0]])
    sizes = [300, 200, 100]
    latents = np.vstack([c + 0.3 * rng.normal(size=(n, 2)) for c, n in zip(truth, sizes)])
    points = cluster_points(latents, 3)
    assert [p.name for p in points] == ["kmeans_00", "kmeans_01", "kmeans_02"]
    # Numbered from the most populated cluster down.
    np.testing.assert_allclose([p.z for p in points], truth, atol=0.1)
    assert [p.name for p in cluster_points(latents, 3)] == [p.name for p in points]
    with pytest.raises(InputError, match="clusters"):
        cluster_points(latents, 0)


def test_moments_at_is_base_plus_weighted_components():
    rng = np.random.default_rng(4)
    moments = rng.normal(size=(3, 10)) + 1j * rng.normal(size=(3, 10))
    z = np.array([0.7, -2.0])
    (combined,) = moments_at(moments, [LatentPoint("p", "latent", z)])
    np.testing.assert_allclose(combined, moments[0] + z[0] * moments[1] + z[1] * moments[2])


def cli(*argv):
    return main([str(a) for a in argv])


@pytest.mark.parametrize("maps_per_batch", [None, 3], ids=["one-batch", "batches-of-3"])
def test_reconstruct_at_latents_is_linear_in_the_components(tmp_path, monkeypatch, maps_per_batch):
    if maps_per_batch:
        from zernike3d.stages import reconstruct as reconstruct_stage

        monkeypatch.setattr(reconstruct_stage, "MAPS_BUDGET", maps_per_batch * 8 * 24**3)
    paths, dataset, moments = write_small_job(tmp_path)
    out = tmp_path / "maps"
    uid = dataset.uid[5]
    argv = ["reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", out,
            "--particle", 3, f"uid:{uid}", "--latent", "0.5,-1", "--latent=-0.5,1", "--series", 3, "--kmeans", 2]
    assert cli(*argv) == 0

    with open(out / "index.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [
        "base.mrc", "particle_index_3.mrc", f"particle_uid_{uid}.mrc", "latent_00.mrc", "latent_01.mrc",
        *(f"series_c{k}_f{i:02d}.mrc" for k in range(2) for i in range(3)), "kmeans_00.mrc", "kmeans_01.mrc",
    ]
    assert {r["kind"] for r in rows} == {"base", "particle", "latent", "series", "cluster"}
    assert sorted(p.name for p in out.glob("*.mrc")) == sorted(r["file"] for r in rows)

    volumes = reconstruct(moments.moments, moments.geometry, moments.order)  # base, component_0, component_1
    for row in rows:
        z = np.array([float(row["z_0"]), float(row["z_1"])])
        expected = volumes[0] + z[0] * volumes[1] + z[1] * volumes[2]
        result = read_map(out / row["file"])
        np.testing.assert_allclose(result.data, expected, atol=1e-6 * np.abs(expected).max())
        assert result.voxel_size == pytest.approx(moments.voxel_size)
        np.testing.assert_allclose(result.origin, moments.origin)
    np.testing.assert_array_equal([float(rows[1]["z_0"]), float(rows[1]["z_1"])], dataset.latents[3])


@pytest.mark.parametrize(
    "options, source, problem",
    [(["--particle", "uid:123"], "--particle", "no particle has uid 123"),
     (["--particle", "200"], "--particle", r"particle index 200 out of range 0\.\.199"),
     (["--latent", "1,2,3"], "--latent", "'1,2,3' has 3 values; the job has 2 components"),
     (["--series", "4", "--percentiles", "5"], "--percentiles", "expected low,high")],
)
def test_reconstruct_at_latents_refuses_bad_choices(capsys, tmp_path, options, source, problem):
    paths, _, _ = write_small_job(tmp_path)
    out = tmp_path / "maps"
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", out, *options) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.search(f"{source}: {problem}", line), line
    assert not out.exists()


def test_reconstruct_at_latents_refuses_moments_of_another_job(capsys, tmp_path):
    paths, _, moments = write_small_job(tmp_path)
    other = tmp_path / "other.npz"
    replace(moments, moments=moments.moments[:2], names=["base", "component_0"]).save(other)
    assert cli("reconstruct", other, "--dataset", paths.dataset, "--out-dir", tmp_path / "maps", "--series", 2) == 2
    assert f"{other}: has 1 components but {paths.dataset} has latents for 2" in capsys.readouterr().err


def test_reconstruct_of_a_single_map_dataset_writes_the_base(capsys, tmp_path):
    paths, dataset, moments = write_small_job(tmp_path)
    single = tmp_path / "single.npz"
    Dataset.single_map(dataset.maps[0], dataset.voxel_size, dataset.origin, []).save(single)
    base = tmp_path / "base.npz"
    moments.volume("base").save(base)
    out = tmp_path / "maps"
    assert cli("reconstruct", base, "--dataset", single, "--out-dir", out) == 0
    assert sorted(p.name for p in out.iterdir()) == [".zernike3d-output", "base.mrc", "index.csv"]
    assert (out / "index.csv").read_text() == "file,kind\nbase.mrc,base\n"
    assert cli("reconstruct", base, "--dataset", single, "--out-dir", tmp_path / "x", "--particle", 0) == 2
    assert f"{single}: has no particles (a single map)" in capsys.readouterr().err


def test_reconstruct_at_points_takes_the_volumes_from_an_earlier_runs_maps(capsys, tmp_path):
    """`reconstruct --points ... --maps-index` (the workflow's cluster_maps) combines the
    job's volumes solved from an earlier run's maps: the maps of a rebuild to float32
    rounding, same grid and origin, nothing reconstructed; maps at another order or
    another asked grid are not taken (one line says why) and the maps are rebuilt."""
    from zernike3d.stages import reconstruct as reconstruct_stage

    paths, _, _ = write_small_job(tmp_path)
    maps = tmp_path / "maps"
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", maps, "--series", 3) == 0
    centres = tmp_path / "centres.csv"
    centres.write_text("name,kind,z_0,z_1\ncluster_00,cluster,0.8,-0.3\ncluster_01,cluster,-1.2,0.6\n")
    rebuilt = tmp_path / "rebuilt"
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--points", centres, "--out-dir", rebuilt) == 0
    capsys.readouterr()

    def no_transform(*args, **kwargs):
        raise AssertionError("the volumes were reconstructed")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reconstruct_stage.Moments, "reconstruct", no_transform)
        reused = tmp_path / "reused"
        assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--points", centres,
                   "--maps-index", maps / "index.csv", "--out-dir", reused) == 0
    assert f"the job's 3 volumes taken from the maps of {maps / 'index.csv'} (not rebuilt)" in capsys.readouterr().out
    assert (reused / "index.csv").read_text() == (rebuilt / "index.csv").read_text()
    for name in ("base", "cluster_00", "cluster_01"):
        expected, result = read_map(rebuilt / f"{name}.mrc"), read_map(reused / f"{name}.mrc")
        np.testing.assert_allclose(result.data, expected.data, atol=1e-5 * np.abs(expected.data).max())
        assert result.voxel_size == expected.voxel_size
        np.testing.assert_array_equal(result.origin, expected.origin)

    lower = tmp_path / "lower"  # the order-6 maps are not the expansions at the stored order 8
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", lower, "--series", 3,
               "--order", 6) == 0
    capsys.readouterr()
    again = tmp_path / "again"
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--points", centres,
               "--maps-index", lower / "index.csv", "--out-dir", again) == 0
    assert "reconstructing the job's volumes: the maps of" in capsys.readouterr().out
    np.testing.assert_array_equal(read_map(again / "cluster_00.mrc").data, read_map(rebuilt / "cluster_00.mrc").data)
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--points", centres, "--box", 20,
               "--maps-index", maps / "index.csv", "--out-dir", tmp_path / "boxed") == 0
    assert "(--box or --voxel-size asks for another grid than theirs)" in capsys.readouterr().out
