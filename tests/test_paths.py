"""Paths through the particles' density: a curved band where the straight line leaves the
particles, and a sparse short cut that the density weighting avoids."""

import csv

import numpy as np
import pytest

from small_job import write_small_job
from zernike3d.analysis.paths import knn_graph, particle_path, resample
from zernike3d.cli import main
from zernike3d.errors import InputError
from zernike3d.io.dataset import Dataset


def half_ring(count, inner=1.0, outer=1.3, seed=0):
    """Particles uniform in the upper half of an annulus: a curved band."""
    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.uniform(inner**2, outer**2, count))
    angle = rng.uniform(0, np.pi, count)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def ends(latents, a, b):
    return [int(np.argmin(np.linalg.norm(latents - p, axis=1))) for p in (a, b)]


def test_path_follows_the_curved_band():
    latents = half_ring(3000)
    start, end = ends(latents, (1.15, 0.0), (-1.15, 0.0))
    rows = particle_path(latents, start, end)
    assert rows[0] == start and rows[-1] == end
    frames = resample(latents[rows], 15)
    radius = np.linalg.norm(frames, axis=1)
    assert radius.min() > 0.95 and radius.max() < 1.35  # inside the band (1..1.3), with the frames in between
    np.testing.assert_allclose(frames[[0, -1]], latents[[start, end]])
    # the straight line between the ends leaves the band: its midpoint is at radius ~0
    assert np.linalg.norm((latents[start] + latents[end]) / 2) < 0.2


def test_resample_spaces_frames_evenly_by_arc_length():
    track = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(resample(track, 4), [[0, 0], [1, 0], [1, 1], [1, 2]])
    np.testing.assert_allclose(resample(track[:1], 3), [[0, 0]] * 3)


def test_density_weighting_avoids_a_sparse_short_cut():
    band = half_ring(3000)
    chord = np.stack([np.linspace(-1.0, 1.0, 26), np.zeros(26)], axis=1)  # sparse particles across
    latents = np.concatenate([band, chord])
    start, end = ends(latents, (1.15, 0.0), (-1.15, 0.0))
    shortest = latents[particle_path(latents, start, end, neighbours=10)]
    assert np.min(np.linalg.norm(shortest, axis=1)) < 0.2  # takes the short cut through the middle
    dense = latents[particle_path(latents, start, end, neighbours=10, density=True)]
    assert np.min(np.linalg.norm(dense, axis=1)) > 0.95  # goes round through the band


def test_disconnected_states_are_an_error():
    latents = np.concatenate([half_ring(200), half_ring(200) + 10])
    with pytest.raises(InputError, match="does not connect the two states"):
        particle_path(latents, 0, 399, neighbours=5)


def test_graph_is_symmetric():
    graph = knn_graph(half_ring(300), 6)
    assert (graph != graph.T).nnz == 0 and graph.nnz >= 300 * 6


def test_path_stage_writes_points_that_reconstruct_reads(tmp_path, capsys):
    paths, dataset, _ = write_small_job(tmp_path)
    band = half_ring(len(dataset.uid), seed=2)  # give the job's particles the band as latents
    Dataset(dataset.maps, band, dataset.uid, dataset.voxel_size, dataset.origin, []).save(paths.dataset)
    start, end = ends(band, (1.15, 0.0), (-1.15, 0.0))
    centres = tmp_path / "centres.csv"
    centres.write_text(f"name,kind,uid,z_0,z_1\ncluster_00,cluster,0,{band[start][0]},{band[start][1]}\n")
    out, plot = tmp_path / "paths.csv", tmp_path / "paths.png"
    assert main(["path", str(paths.dataset), "--between", "cluster_00", f"uid:{dataset.uid[end]}",
                 "--between", "z:-1.15,0", "index:0", "--clusters", str(centres), "--frames", "6",
                 "--out", str(out), "--plot", str(plot)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    first = f"path_cluster_00_uid{dataset.uid[end]}"
    assert [r["name"] for r in rows[:6]] == [f"{first}_f{i:02d}" for i in range(6)]
    assert {r["path"] for r in rows} == {first, "path_z-1.15_0_index0"}
    z = np.array([[float(r["z_0"]), float(r["z_1"])] for r in rows[:6]])
    np.testing.assert_allclose(z[[0, -1]], band[[start, end]], rtol=1e-6)
    assert np.linalg.norm(z, axis=1).min() > 0.95
    assert plot.read_bytes()[:4] == b"\x89PNG"

    maps = tmp_path / "maps"
    assert main(["reconstruct", str(paths.moments), "--dataset", str(paths.dataset), "--out-dir", str(maps),
                 "--points", str(out)]) == 0
    assert (maps / f"{first}.py").is_file() and len(list(maps.glob("path_*.mrc"))) == 12

    assert main(["path", str(paths.dataset), "--between", "cluster_05", "index:0", "--clusters", str(centres),
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "--between: cluster_05: no such cluster" in capsys.readouterr().err
