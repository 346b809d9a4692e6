"""Maps at many latent points for about the cost of one reconstruction, map-space series
beside the Zernike ones, --points files, and the ChimeraX scripts of each series."""

import csv
import re

import numpy as np
import pytest

from chimerax_session import FakeSession, run_script
from small_job import write_small_job
from zernike3d.cli import main
from zernike3d.io.chimerax import contour_level, series_groups
from zernike3d.io.mrc import read_map
from zernike3d.analysis.latents import LatentPoint, maps_at_points, moments_at


def cli(*argv):
    return main([str(a) for a in argv])


@pytest.fixture
def job(tmp_path):
    return write_small_job(tmp_path)


def read_index(folder):
    with open(folder / "index.csv") as f:
        return list(csv.DictReader(f))


def test_many_points_cost_one_reconstruction_of_the_job(job):
    _, _, moments = job
    rng = np.random.default_rng(3)
    points = [LatentPoint(f"p{i}", "latent", z) for i, z in enumerate(rng.normal(size=(31, 2)))]
    transformed = []

    def transform(volumes):
        transformed.append(len(volumes.names))
        return volumes.reconstruct()

    maps = list(maps_at_points(moments, points, transform, batch=2))
    assert transformed == [2, 1]  # base, component_0 | component_1: 3 volumes for 31 points
    direct = moments.__class__(**{**moments.__dict__, "moments": moments_at(moments.moments, points[:3]),
                                  "names": ["a", "b", "c"]}).reconstruct()
    for (_point, result), expected in zip(maps, direct):
        np.testing.assert_allclose(result.data, expected.data, atol=1e-5 * np.abs(expected.data).max())
        assert result.voxel_size == expected.voxel_size and result.origin == expected.origin

    transformed.clear()
    few = list(maps_at_points(moments, points[:2], transform, batch=8))  # fewer points than volumes
    assert transformed == [2] and [p.name for p, _ in few] == ["p0", "p1"]


def test_mapspace_series_and_chimerax_scripts(job, tmp_path, capsys, monkeypatch):
    paths, dataset, moments = job
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))  # no ChimeraX: --movie says so in one line
    out = tmp_path / "maps"
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", out,
               "--series", 4, "--kmeans", 2, "--mapspace", "--movie") == 0
    printed = capsys.readouterr().out
    assert printed.count("ChimeraX (chimerax) is not on PATH") == 6  # 2 series + kmeans, twice (mapspace)

    rows = read_index(out)
    zernike = [r for r in rows if not r["file"].startswith("mapspace_")]
    mapspace = [r for r in rows if r["file"].startswith("mapspace_")]
    assert [r["file"] for r in mapspace] == [f"mapspace_{r['file']}" for r in zernike]
    for row in mapspace:  # the dataset's own maps combined: full resolution, unfiltered
        z = np.array([float(row["z_0"]), float(row["z_1"])])
        expected = dataset.maps[0] + z[0] * dataset.maps[1] + z[1] * dataset.maps[2]
        result = read_map(out / row["file"])
        np.testing.assert_allclose(result.data, expected, atol=1e-6 * np.abs(expected).max())
        assert result.voxel_size == pytest.approx(dataset.voxel_size)
        np.testing.assert_allclose(result.origin, dataset.origin)
    # the Zernike base is filtered: it differs from the map-space base
    assert not np.allclose(read_map(out / "base.mrc").data, read_map(out / "mapspace_base.mrc").data, atol=1e-3)

    scripts = sorted(p.name for p in out.glob("*.py"))
    assert scripts == sorted(f"{pre}{g}{suf}.py" for pre in ("", "mapspace_") for g in ("series_c0", "series_c1", "kmeans")
                             for suf in ("", "_movie"))
    level = contour_level(read_map(out / "base.mrc").data)
    assert np.mean(read_map(out / "base.mrc").data > level) == pytest.approx(0.05, abs=0.01)
    session = FakeSession(user_models=2)  # the user's own two models stay untouched
    run_script(out / "series_c1.py", session)
    assert session.opened == [[str(out / "base.mrc")], [str(out / f"series_c1_f{i:02d}.mrc") for i in range(4)]]
    assert session.numbers() == [1, 2, 3, 4] and session.closed == []
    assert f"volume #4 level {level:.6g} style surface color #3c8cd2" in session.commands
    assert session.commands[-1] == "vseries play #4 loop true direction forward"  # from the first map on
    run_script(out / "series_c1.py", session)  # again: replaces its own two models, nothing else
    assert session.closed == [3, 4] and session.numbers() == [1, 2, 3, 4]
    run_script(out / "kmeans.py", session)
    assert session.opened[-1] == [str(out / "kmeans_00.mrc"), str(out / "kmeans_01.mrc")]
    assert session.numbers() == [1, 2, 3, 4, 5, 6] and session.closed == [3, 4]

    movie = FakeSession(user_models=0)
    run_script(out / "mapspace_series_c1_movie.py", movie)
    assert movie.opened[1][-1] == str(out / "mapspace_series_c1_f03.mrc")
    assert movie.commands[-6:] == [  # starts at the first map, ends: forward, then back, then the file
        "movie record", "vseries play #2 direction forward", "wait 5", "vseries play #2 direction backward",
        "wait 5", f'movie encode "{out / "mapspace_series_c1.mp4"}" framerate 10 wait true']
    header = [line for line in (out / "kmeans.py").read_text().splitlines() if line.startswith("#")]
    named = set(re.findall(r"[\w.]+\.mrc", " ".join(header)))
    assert named == {"kmeans_00.mrc", "kmeans_01.mrc", "base.mrc"} and all((out / n).is_file() for n in named)


def test_series_groups():
    names = ["base", "series_c0_f00", "series_c0_f01", "cluster_00", "path_a_b_f00", "path_a_b_f01", "latent_00",
             "kmeans_00"]
    kinds = ["base", "series", "series", "cluster", "path", "path", "latent", "cluster"]
    assert series_groups(names, kinds) == {"series_c0": names[1:3], "clusters": ["cluster_00"], "path_a_b": names[4:6],
                                           "kmeans": ["kmeans_00"]}


def test_points_file_gives_named_maps(job, tmp_path, capsys):
    paths, _, moments = job
    points = tmp_path / "centres.csv"
    points.write_text("name,kind,uid,z_0,z_1\ncluster_00,cluster,7,0.5,-1\ncluster_01,cluster,9,-0.25,2\n")
    out = tmp_path / "maps"
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", out, "--points", points) == 0
    rows = read_index(out)
    assert [(r["file"], r["kind"], r["z_0"], r["z_1"]) for r in rows] == [
        ("base.mrc", "base", "0.0", "0.0"), ("cluster_00.mrc", "cluster", "0.5", "-1.0"),
        ("cluster_01.mrc", "cluster", "-0.25", "2.0")]
    assert (out / "clusters.py").is_file()

    points.write_text("name,kind,z_0\nx,latent,1\n")
    assert cli("reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", tmp_path / "m2", "--points", points) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{points}: --points: expected a CSV with columns name, kind, z_0, z_1" in line
