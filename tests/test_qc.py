"""FSC maths and the `zernike3d qc` stage."""

import base64
import csv
import re

import numpy as np
import pytest
from small_job import BOX, ORDER, VOXEL_SIZE, write_small_job

from zernike3d.analysis.pca import rank_correlations as latent_correlations
from zernike3d.cli import main
from zernike3d.io.dataset import Dataset
from zernike3d.io.mrc import write_map
from zernike3d.io.particle_invariants import write_particle_invariants
from zernike3d.maths.fsc import (
    ball_mask,
    crossing_resolution,
    fourier_shell_correlation,
)
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.invariants import particle_invariant_forms
from zernike3d.maths.resolution import expected_resolution
from zernike3d.maths.transform import reconstruct
from zernike3d.stages.qc import pca_scores as principal_components


def _white(rng, box=32):
    return rng.standard_normal((box, box, box))


def test_fsc_of_a_map_with_itself_is_one():
    rng = np.random.default_rng(0)
    a = _white(rng)
    curve = fourier_shell_correlation(a, a, voxel_size=1.5)
    np.testing.assert_allclose(curve.fsc, 1.0, atol=1e-12)
    assert curve.frequency[-1] == pytest.approx(1 / (2 * 1.5))
    assert curve.resolution(0.143) is None


def test_fsc_with_independent_noise_is_near_zero():
    rng = np.random.default_rng(1)
    curve = fourier_shell_correlation(_white(rng), _white(rng), voxel_size=1.0)
    # Real maps: a shell of n voxels has about n/2 independent values.
    sigma = 1.0 / np.sqrt(curve.voxels[2:] / 2)
    assert np.all(np.abs(curve.fsc[2:]) < 5 * sigma)
    assert abs(np.mean(curve.fsc[2:])) < 0.05


def test_fsc_shells_count_the_whole_sphere():
    box = 24
    curve = fourier_shell_correlation(np.ones((box,) * 3), np.ones((box,) * 3), 1.0)
    k = np.fft.fftfreq(box) * box
    radius = np.rint(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2))
    expected = np.bincount(radius.ravel().astype(int))[: box // 2 + 1]
    np.testing.assert_array_equal(curve.voxels, expected)


def test_low_passed_half_maps_cross_half_at_the_expected_resolution():
    """A Gaussian low-pass alone scales each shell and leaves the FSC at 1, so the test
    gives two "half maps" the same low-passed signal and independent unit noise:
    FSC(f) = a²H(f)² / (a²H(f)² + 1) with H(f) = exp(-2π²σ²f²), so FSC = 0.5 where
    H = 1/a, at f = sqrt(ln a / (2π²σ²))."""
    rng = np.random.default_rng(2)
    box, voxel_size, amplitude = 32, 1.5, 8.0
    f_half = 0.25 / voxel_size  # 1/Å: shell 8 of 16
    sigma = np.sqrt(np.log(amplitude) / (2 * np.pi**2)) / f_half  # Å
    fz = np.fft.fftfreq(box, voxel_size)[:, None, None]
    fx = np.fft.rfftfreq(box, voxel_size)[None, None, :]
    f2 = fz**2 + np.swapaxes(fz, 0, 1) ** 2 + fx**2
    transfer = np.exp(-2 * np.pi**2 * sigma**2 * f2)
    signal = np.fft.irfftn(np.fft.rfftn(amplitude * _white(rng)) * transfer, s=(box,) * 3, axes=(0, 1, 2))
    curve = fourier_shell_correlation(signal + _white(rng), signal + _white(rng), voxel_size)
    assert curve.resolution(0.5) == pytest.approx(1 / f_half, rel=0.08)
    # The 0.143 crossing is at higher frequency (smaller Å) than the 0.5 one.
    assert curve.resolution(0.143) < curve.resolution(0.5)


def test_crossing_is_interpolated_between_shells():
    frequency = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    fsc = np.array([1.0, 0.9, 0.7, 0.3, 0.1])
    # 0.5 lies halfway between 0.7 (f = 0.2) and 0.3 (f = 0.3): f = 0.25 -> 4 Å.
    assert crossing_resolution(frequency, fsc, 0.5) == pytest.approx(4.0)
    # 0.143 between 0.3 (0.3) and 0.1 (0.4): f = 0.3 + 0.157/0.2 * 0.1.
    assert crossing_resolution(frequency, fsc, 0.143) == pytest.approx(1 / 0.3785)
    assert crossing_resolution(frequency, fsc, 0.05) is None
    # A dip that recovers: the first crossing counts.
    assert crossing_resolution(frequency, [1.0, 0.4, 0.8, 0.8, 0.8], 0.5) == pytest.approx(
        1 / (0.1 * 0.5 / 0.6)
    )


def test_ball_mask_hard_and_soft():
    geometry = BallGeometry.for_box(16, 2.0, radius=12.0, center=(16.0, 16.0, 16.0))
    hard = ball_mask(geometry, edge_width=0)
    soft = ball_mask(geometry, edge_width=2)
    assert hard[8, 8, 8] == 1 and soft[8, 8, 8] == 1
    assert hard[8, 8, 14] == 1 and hard[8, 8, 15] == 0  # 12 Å in, 14 Å out
    assert 0 < soft[8, 8, 13] < 1  # 10 Å: inside the 2-voxel (4 Å) edge
    assert soft[8, 8, 14] == pytest.approx(0, abs=1e-12)
    assert np.all(soft <= hard)


def test_qc_writes_tables_and_figures(tmp_path):
    paths, dataset, moments = write_small_job(tmp_path)
    store = tmp_path / "P.zarr"
    forms = particle_invariant_forms(moments.moments, moments.order)
    write_particle_invariants(store, forms, dataset.latents, dataset.uid, moments.nl, order=moments.order,
                              names=moments.names)
    out = tmp_path / "qc"
    index = _write_maps_index(tmp_path / "maps", moments)
    argv = ["qc", "--dataset", paths.dataset, "--moments", paths.moments, "--particle-invariants", store,
            "--maps-index", index, "--name", "my_job", "--out-dir", out, "--pca-sample", 150]
    assert main([str(a) for a in argv]) == 0
    assert sorted(p.name for p in out.iterdir()) == [  # and the marker naming the stage that owns the folder
        ".zernike3d-output", "fsc.csv", "fsc.png", "fsc_resolution.csv", "invariants.png", "maps.png",
        "particle_invariants_pca.png", "series_maps.png", "summary.html"]
    summary = (out / "summary.html").read_bytes()
    summary.decode("ascii")  # ASCII only: the same inlined into the report or opened alone
    images = re.findall(rb'src="data:image/png;base64,([^"]+)"', summary)
    assert [base64.b64decode(i) for i in images] == [(out / f).read_bytes() for f in ("fsc.png", "maps.png", "particle_invariants_pca.png")]
    assert b"<b>my_job</b>" in summary and b"<td>component_1</td>" in summary
    with open(out / "fsc.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["shell", "frequency_per_A", "resolution_A", "base", "component_0", "component_1"]
    # zero-padded to at least 64 shells (box 24 -> 4 x 24 = 96 voxels, 49 shells up to Nyquist)
    assert len(rows) == 4 * BOX // 2 + 1
    assert float(rows[-1]["resolution_A"]) == pytest.approx(2 * VOXEL_SIZE)
    # An order-8 expansion reproduces the coarse shape well.
    assert all(float(rows[1][name]) > 0.9 for name in moments.names)
    with open(out / "fsc_resolution.csv") as f:
        crossings = list(csv.DictReader(f))
    # 0.5 only: 0.143 is a half-map criterion, meaningless for a map against its expansion
    assert list(crossings[0]) == ["map", "resolution_at_0.5_A", "expected_resolution_A", "order"]
    assert [r["map"] for r in crossings] == moments.names
    assert all(r["resolution_at_0.5_A"] == "not reached" or float(r["resolution_at_0.5_A"]) > 2 * VOXEL_SIZE
               for r in crossings)
    assert float(crossings[0]["expected_resolution_A"]) == pytest.approx(
        expected_resolution(ORDER, BOX * VOXEL_SIZE / 2), abs=1e-4)
    # the base map has detail at every scale: its crossing is near what the order is expected to reach
    assert float(crossings[0]["resolution_at_0.5_A"]) == pytest.approx(
        float(crossings[0]["expected_resolution_A"]), rel=0.25)


def test_qc_refuses_particles_of_another_dataset(capsys, tmp_path):
    paths, dataset, moments = write_small_job(tmp_path)
    store = tmp_path / "P.zarr"
    forms = particle_invariant_forms(moments.moments, moments.order)
    write_particle_invariants(store, forms, dataset.latents[:10], dataset.uid[:10], moments.nl,
                              order=moments.order, names=moments.names)
    argv = ["qc", "--dataset", paths.dataset, "--moments", paths.moments, "--particle-invariants", store,
            "--out-dir", tmp_path / "qc"]
    assert main([str(a) for a in argv]) == 2
    assert f"{store}: its particles (uid) are not those of {paths.dataset}" in capsys.readouterr().err


def test_qc_of_a_single_map_has_no_particle_plot(tmp_path):
    paths, dataset, moments = write_small_job(tmp_path)
    single, base = tmp_path / "single.npz", tmp_path / "base.npz"
    Dataset.single_map(dataset.maps[0], dataset.voxel_size, dataset.origin, []).save(single)
    moments.volume("base").save(base)
    out = tmp_path / "qc"
    assert main(["qc", "--dataset", str(single), "--moments", str(base), "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".zernike3d-output", "fsc.csv", "fsc.png", "fsc_resolution.csv", "invariants.png",
                                                     "maps.png", "summary.html"]
    assert (out / "summary.html").read_text().count("data:image/png;base64,") == 2


def _write_maps_index(folder, moments):
    """A reconstruct-like maps folder: base and a 2-frame series, listed in index.csv."""
    folder.mkdir()
    maps = reconstruct(moments.moments[:2], moments.geometry, moments.order)
    files = {"base.mrc": maps[0], "series_c0_f00.mrc": maps[0] - maps[1], "series_c0_f01.mrc": maps[0] + maps[1]}
    for name, data in files.items():
        write_map(folder / name, data, moments.voxel_size)
    kinds = ["base", "series", "series"]
    (folder / "index.csv").write_text("file,kind\n" + "".join(f"{f},{k}\n" for f, k in zip(files, kinds)))
    return folder / "index.csv"


def _latent_driven_invariants(seed=0, particles=2000):
    """Per-particle "invariants" with a known answer: the conformation z_0 drives 4 large
    low-order columns (amplitude ~1); 300 tiny high-order columns (spread ~0.01) follow a
    nuisance z_1 plus their own noise, as tiny, noisy high-l invariants do."""
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((particles, 2))
    signal = 5.0 + latents[:, :1] * np.array([1.0, 0.8, -0.6, 0.5]) + 0.05 * rng.standard_normal((particles, 4))
    weights = rng.uniform(0.5, 1.0, 300)
    noise = 0.02 + 0.01 * (latents[:, 1:] * weights + 0.5 * rng.standard_normal((particles, 300)))
    return np.hstack([signal, noise]), latents


def test_pca_follows_the_latent_that_drives_the_large_invariants():
    values, latents = _latent_driven_invariants()
    scores, explained = principal_components(values, "P.zarr")
    correlations = latent_correlations(scores, latents)
    assert abs(correlations[0, 0]) > 0.95  # PC 1 is the conformation z_0
    assert abs(correlations[0, 1]) < 0.1
    assert explained[0] > 0.9
    # Standardising every column (the old choice) lets the 300 tiny columns set PC 1:
    standardised = (values - values.mean(axis=0)) / values.std(axis=0)
    old_scores, _ = principal_components(standardised, "P.zarr")
    old = latent_correlations(old_scores, latents)
    assert abs(old[0, 0]) < 0.3 and abs(old[0, 1]) > 0.9


def test_latent_correlations_are_rank_correlations():
    x = np.linspace(-1, 1, 101)
    scores = np.column_stack([x**3, -x])  # monotonic in x, and decreasing
    latents = np.column_stack([x, np.zeros_like(x)])
    np.testing.assert_allclose(latent_correlations(scores, latents), [[1.0, 0.0], [-1.0, 0.0]], atol=1e-12)


def test_fsc_oversampling_gives_finer_shells_of_the_same_curve():
    rng = np.random.default_rng(3)
    geometry = BallGeometry.for_box(24, 1.0)
    mask = ball_mask(geometry, 3)
    a = mask * rng.standard_normal((24,) * 3)
    b = a + 0.5 * mask * rng.standard_normal((24,) * 3)
    coarse = fourier_shell_correlation(a, b, 1.0)
    fine = fourier_shell_correlation(a, b, 1.0, oversample=2)
    assert len(fine.frequency) == 2 * (len(coarse.frequency) - 1) + 1
    assert fine.frequency[-1] == pytest.approx(coarse.frequency[-1])
    # every other fine shell sits at a coarse shell's frequency and agrees with it closely
    np.testing.assert_allclose(fine.fsc[2::2], coarse.fsc[1:], atol=0.1)


def test_qc_refuses_a_maps_index_that_is_not_one(capsys, tmp_path):
    paths, _, _ = write_small_job(tmp_path)
    index = tmp_path / "index.csv"
    index.write_text("name,value\nbase.mrc,1\n")
    argv = ["qc", "--dataset", paths.dataset, "--moments", paths.moments, "--maps-index", index,
            "--out-dir", tmp_path / "qc"]
    assert main([str(a) for a in argv]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zernike3d qc: error: {index}: is not an index.csv of `zernike3d reconstruct` (columns file, kind, ...)"]
    assert not (tmp_path / "qc").exists()


def _qc_fsc(tmp_path, paths, out, *extra):
    argv = ["qc", "--dataset", paths.dataset, "--moments", paths.moments, "--out-dir", tmp_path / out, *extra]
    assert main([str(a) for a in argv]) == 0
    with open(tmp_path / out / "fsc.csv") as f:
        return np.array([[float(v) for v in row.values()] for row in csv.DictReader(f)])


def test_qc_takes_the_expansions_from_reconstructs_maps(capsys, tmp_path):
    """The maps of `reconstruct --dataset` are base + Σ z_k component_k of the expansions:
    qc solves the volumes from 1 + K of them instead of rebuilding, with the FSC of a
    rebuild to float32 rounding; maps at another order are not taken."""
    paths, _, _ = write_small_job(tmp_path)
    rebuilt = _qc_fsc(tmp_path, paths, "rebuilt")
    assert "not rebuilt" not in capsys.readouterr().out
    maps = tmp_path / "maps"
    assert main([str(a) for a in ["reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", maps,
                                  "--series", 3]]) == 0
    capsys.readouterr()
    reused = _qc_fsc(tmp_path, paths, "reused", "--maps-index", maps / "index.csv")
    assert "expansions of the 3 volumes taken from the maps of the index (not rebuilt)" in capsys.readouterr().out
    np.testing.assert_allclose(reused, rebuilt, atol=1e-5)
    lower = tmp_path / "lower"  # the maps of an order-6 expansion are not those of the stored order 8
    assert main([str(a) for a in ["reconstruct", paths.moments, "--dataset", paths.dataset, "--out-dir", lower,
                                  "--series", 3, "--order", 6]]) == 0
    capsys.readouterr()
    again = _qc_fsc(tmp_path, paths, "lower_qc", "--maps-index", lower / "index.csv")
    assert f"is not labelled 'zernike3d expansion order {ORDER} of " in capsys.readouterr().out
    np.testing.assert_array_equal(again, rebuilt)


def test_independent_points_and_the_volumes_they_give():
    from zernike3d.analysis.latents import independent_points

    z = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, -1.5], [3.0, 0.0]])
    rows = independent_points(z)
    assert sorted(rows) == [0, 3, 4]  # the base, the farthest along z_0 and the one along z_1
    assert independent_points(z[:3]) is None  # all on the z_0 axis: z_1's component is not in them
    rng = np.random.default_rng(5)
    volumes = rng.standard_normal((3, 4))
    maps = np.column_stack([np.ones(len(z)), z]) @ volumes
    weights = np.column_stack([np.ones(3), z[rows]])
    np.testing.assert_allclose(np.linalg.solve(weights, maps[rows]), volumes, atol=1e-12)


def test_qc_mask_edge_is_in_voxels_by_its_name_and_the_old_spelling_warns(capsys, tmp_path):
    paths, _, _ = write_small_job(tmp_path)
    new = _qc_fsc(tmp_path, paths, "new", "--mask-edge-voxels", 2)
    assert "deprecated" not in capsys.readouterr().err
    old = _qc_fsc(tmp_path, paths, "old", "--mask-edge", 2)
    assert capsys.readouterr().err.strip().splitlines() == [(
        "zernike3d qc: warning: --mask-edge is deprecated here (it is in voxels for qc, in Å for preprocess): "
        "use --mask-edge-voxels; the old spelling goes in the next release")]
    np.testing.assert_array_equal(old, new)
    assert not np.array_equal(new, _qc_fsc(tmp_path, paths, "default"))  # the default edge is 3 voxels


def test_principal_components_of_a_known_spread():
    """Points spread 3 along (1, 1, 0)/√2 and 1 along z: the first axis carries 9/10 of the
    variance, the second 1/10, the scores are the coordinates along them."""
    from zernike3d.analysis.pca import principal_components

    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(4000), rng.standard_normal(4000)
    a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    b -= a * (a @ b) / (a @ a)  # uncorrelated
    b /= b.std()
    values = np.column_stack([3 * a / np.sqrt(2), 3 * a / np.sqrt(2), b]) + [5.0, -2.0, 1.0]
    scores, explained = principal_components(values, 2)
    np.testing.assert_allclose(explained, [0.9, 0.1], atol=1e-12)
    np.testing.assert_allclose(scores, np.column_stack([3 * a, b]), atol=1e-9)  # largest loading positive
