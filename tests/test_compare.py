"""`zernike3d compare` on synthetic 3D Variability jobs with known answers.

* Analytic cases of the per-order curves, the invariant distances and the latent map.
* A rotated twin (every map of a job turned exactly on the grid about voxel box//2, the
  same particles): aligned, its latent space maps onto the original's by the identity, the
  principal angles are 0, the per-order correlation is 1, and every twin particle's
  nearest reference particle in the joint landscape is its original.
* Two jobs that mix the same two states in known proportions (30/70 and 70/30), with
  different base maps, component scales and signs, and one job rotated: the joint
  clusters recover each job's proportions within a few percent.
* Bad input: one line, exit 2, nothing written.

The results folders are written as the workflow writes them (dataset.npz, moments.npz,
particle_invariants.zarr) by the library's own writers.
"""

import copy
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from zernike3d.analysis.compare import (
    ball_coordinates,
    invariant_distances,
    latent_relation,
    order_correlation,
    zcc_curve,
)
from zernike3d.analysis.landscape import (
    ComputedSource,
    StoreSource,
    cluster_populations,
    fit_joint_axes,
    nearest_reference_particles,
    project_sources,
)
from zernike3d.cli import main
from zernike3d.io.dataset import Dataset
from zernike3d.io.particle_invariants import read_particle_invariants
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.indexing import coefficient_count, nlm_table
from zernike3d.maths.invariants import particle_invariant_forms
from zernike3d.maths.rotation import inner_product
from zernike3d.moments import Moments
from zernike3d.synthetic import chiral_phantom, gaussian_blobs, write_results_folder

BOX, VOXEL_SIZE, ORDER = 24, 2.0, 10
CENTRE = (BOX // 2) * VOXEL_SIZE


def turn_on_grid(volume):
    """An exact rotation about voxel box//2 of an even box: a quarter turn about z, then a
    quarter turn about x (a 120° turn about a body diagonal). np.rot90 turns about
    (box-1)/2 and reverses one output axis; a one-voxel roll along it moves the turning
    point to box//2."""
    quarter_z = np.roll(np.rot90(volume, 1, axes=(1, 2)), 1, axis=1)
    return np.roll(np.rot90(quarter_z, 1, axes=(0, 1)), 1, axis=0)


def write_results(folder, maps, latents, uid):
    """A results folder as the workflow writes it, from maps (1+K, N, N, N) and latents."""
    return write_results_folder(folder, maps, latents, uid, VOXEL_SIZE, ORDER)


def blob(at, sigma=3.0):
    return gaussian_blobs(BOX, VOXEL_SIZE, [at], [sigma], [1.0])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- analytic cases -------------------------------------------------------------------


def test_ball_coordinates_give_the_inner_products_over_the_ball():
    moments = Moments.from_maps(np.stack([chiral_phantom(BOX, VOXEL_SIZE), blob([CENTRE + 5, CENTRE, CENTRE])]),
                                BallGeometry.for_box(BOX, VOXEL_SIZE), ORDER).moments
    x = ball_coordinates(moments, ORDER)
    nlm = nlm_table(ORDER)
    assert np.allclose(x @ x.T, inner_product(moments[:, None], moments[None, :], nlm), rtol=1e-12)
    assert ball_coordinates(moments, 4).shape == (2, 2 * coefficient_count(4))


def test_order_curves_of_known_pairs():
    rng = np.random.default_rng(2)
    k = coefficient_count(ORDER)
    a = rng.normal(size=k) + 1j * rng.normal(size=k)
    a[nlm_table(ORDER)[:, 2] == 0] = a[nlm_table(ORDER)[:, 2] == 0].real  # a real map's m = 0 moments
    assert np.allclose(order_correlation(a, a, ORDER), 1.0)
    assert np.allclose(order_correlation(a, -2.5 * a, ORDER), -1.0)
    assert np.allclose(zcc_curve(a, -2.5 * a, ORDER), 1.0)  # magnitudes only: blind to the sign
    # the m > 0 terms count twice: a pair that differs only at m = 0 of order 2
    b = a.copy()
    n, m = nlm_table(ORDER)[:, 0], nlm_table(ORDER)[:, 2]
    b[(n == 2) & (m == 0)] *= -1
    order2 = (n == 2)
    w = np.where(m == 0, 1.0, 2.0)[order2]
    expected = np.sum(w * np.real(a[order2] * np.conj(b[order2]))) / np.sum(w * np.abs(a[order2]) ** 2)
    assert order_correlation(a, b, ORDER)[2] == pytest.approx(expected)
    assert order_correlation(a, b, ORDER)[3] == pytest.approx(1.0)
    # orthogonal within each order -> 0: i and 1 at (n, l, m) = (4, 2, 1)
    column = np.flatnonzero((nlm_table(ORDER) == (4, 2, 1)).all(axis=1))[0]
    c, d = np.zeros(k, complex), np.zeros(k, complex)
    c[column], d[column] = 1j, 1.0
    assert order_correlation(c, d, ORDER)[4] == pytest.approx(0.0)
    assert np.isnan(order_correlation(c, d, ORDER)[3])  # no power at n = 3


def test_invariant_distances_ignore_rotation_and_scale():
    geometry = BallGeometry.for_box(BOX, VOXEL_SIZE)
    phantom = chiral_phantom(BOX, VOXEL_SIZE)
    moments = Moments.from_maps(np.stack([phantom, turn_on_grid(phantom), 3 * phantom, blob([CENTRE, CENTRE, CENTRE])]),
                                geometry, ORDER).moments
    d = invariant_distances(moments, ORDER)
    assert d.euclidean[0, 1] < 1e-9 * d.norms[0]  # a rotation changes no invariant
    assert d.euclidean[0, 2] == pytest.approx(2 * d.norms[0])
    assert d.shape[0, 2] < 1e-7  # ... and a scale no shape (float32 maps)
    assert d.shape[0, 3] > 0.1
    assert np.allclose(d.shape, d.shape.T) and np.allclose(np.diag(d.shape), 0)


def test_latent_relation_recovers_a_known_linear_map():
    rng = np.random.default_rng(3)
    k = coefficient_count(ORDER)
    reference = rng.normal(size=(3, k)) + 1j * rng.normal(size=(3, k))  # base, c0, c1
    # B: components are mixtures of A's, its base is A's base moved along A's components
    mix = np.array([[0.5, -2.0], [1.5, 0.3]])  # C_B[:, j] = sum_i C_A[:, i] mix[i, j]
    other = np.empty_like(reference)
    other[1:] = mix.T @ reference[1:]
    other[0] = reference[0] + 0.7 * reference[1] - 0.2 * reference[2]
    relation = latent_relation(reference, other, ORDER)
    assert np.allclose(relation.matrix, mix)
    assert np.allclose(relation.offset, [0.7, -0.2])
    assert np.allclose(relation.captured, 1.0) and relation.offset_residual < 1e-20
    assert np.allclose(relation.principal_angles_deg, 0.0, atol=1e-5)
    z_b = rng.normal(size=(5, 2))
    maps_b = other[0] + z_b @ other[1:]
    maps_a = reference[0] + relation.map_latents(z_b) @ reference[1:]
    assert np.allclose(maps_a, maps_b)
    # a component outside A's span: captured 0, angle 90°
    orthogonal = rng.normal(size=k) + 1j * rng.normal(size=k)
    x = ball_coordinates(np.stack([reference[1], reference[2], orthogonal]), ORDER)
    coefficients = np.linalg.lstsq(x[:2].T, x[2], rcond=None)[0]
    orthogonal = orthogonal - coefficients @ reference[1:]
    relation = latent_relation(reference, np.stack([reference[0], reference[1], orthogonal]), ORDER)
    assert relation.captured[1] < 1e-20 and relation.principal_angles_deg[-1] == pytest.approx(90.0)


class ArraySource:
    """Descriptors held in memory, in blocks of 100, with the sources' interface."""

    def __init__(self, values):
        self.values, self.count = values.astype(np.float32), len(values)
        self.uid = np.arange(self.count, dtype=np.uint64)

    def blocks(self):
        for start in range(0, self.count, 100):
            yield start, self.values[start : start + 100]

    def fit_sample(self, count, rng):
        return self.values[rng.permutation(self.count)[:count]]


def test_joint_axes_weigh_each_job_the_same_and_follow_the_raw_spread():
    rng = np.random.default_rng(4)
    # job 0: 5000 points spread along (1, 1, 0, ...); job 1: 500 points spread along (1, -1, 0, ...),
    # centred elsewhere; a tiny column 3 with noise 1e-4 that standardisation would blow up
    direction_0, direction_1 = np.array([1, 1, 0, 0]) / np.sqrt(2), np.array([1, -1, 0, 0]) / np.sqrt(2)
    job_0 = 3.0 * rng.normal(size=(5000, 1)) * direction_0 + [10, 10, 0, 1]
    job_1 = 3.0 * rng.normal(size=(500, 1)) * direction_1 + [10, 10, 2, 1]
    job_0[:, 3] += 1e-4 * rng.normal(size=5000)
    job_1[:, 3] += 1e-4 * rng.normal(size=500)
    axes = fit_joint_axes([ArraySource(job_0), ArraySource(job_1)], n_axes=3, fit_particles=10_000)
    assert np.allclose(axes.centre, [10, 10, 1, 1], atol=0.2)  # the mean of the two jobs' means
    # equal weights: both spreads (variance 9 each, halved: 4.5) beat the offset between the jobs (variance 1)
    assert np.allclose(np.abs(axes.axes[:, :2].T @ np.stack([direction_0, direction_1]).T), np.eye(2), atol=0.05) or \
        np.allclose(np.abs(axes.axes[:, :2].T @ np.stack([direction_1, direction_0]).T), np.eye(2), atol=0.05)
    assert np.abs(axes.axes[2, 2]) > 0.99 and np.abs(axes.axes[3, :]).max() < 1e-3  # the tiny column does not count
    assert axes.explained[:2].sum() == pytest.approx(9.0 / (9.0 + 1.0), abs=0.03)
    coords, dataset, uid = project_sources([ArraySource(job_0), ArraySource(job_1)], axes)
    assert coords.shape == (5500, 3) and coords.dtype == np.float32 and np.bincount(dataset).tolist() == [5000, 500]
    assert np.allclose(coords, (np.concatenate([job_0, job_1]) - axes.centre) @ axes.axes, atol=1e-3)


def test_store_and_computed_sources_give_the_same_descriptors(tmp_path):
    rng = np.random.default_rng(6)
    maps = job_maps()
    folder = write_results(tmp_path / "job", maps, rng.normal(size=(300, 2)), rng.integers(0, 2**63, 300, dtype=np.uint64))
    store = read_particle_invariants(folder / "particle_invariants.zarr")
    dataset = Dataset.load(folder / "dataset.npz")
    forms = particle_invariant_forms(Moments.load(folder / "moments.npz").moments, ORDER)
    stored = np.concatenate([values for _, values in StoreSource(store, 20).blocks()])
    computed = np.concatenate([values for _, values in ComputedSource(forms, dataset.latents, dataset.uid).blocks()])
    assert stored.shape == (300, 20) and np.allclose(stored, computed[:, :20], rtol=1e-6, atol=1e-7 * stored.max())
    sample = StoreSource(store, 20).fit_sample(100, np.random.default_rng(0))
    assert sample.shape == (100, 20) and all((stored == row).all(axis=1).any() for row in sample)


def test_cluster_populations_and_nearest_neighbours_of_known_points():
    rng = np.random.default_rng(8)
    # two well separated groups; job 0 puts 25% in group A, job 1 puts 80%
    group = np.concatenate([rng.random(4000) < 0.25, rng.random(2000) < 0.8])
    dataset = np.repeat([0, 1], [4000, 2000]).astype(np.int32)
    coords = (np.where(group[:, None], [-5.0, 0.0], [5.0, 0.0]) + rng.normal(size=(6000, 2))).astype(np.float32)
    populations = cluster_populations(coords, dataset, 2, 2, bootstrap=50, sample=3000)
    assert populations.centres[0, 0] < 0 < populations.centres[1, 0]  # ordered along the first axis
    for job in (0, 1):
        assert populations.fractions[job, 0] == pytest.approx(group[dataset == job].mean(), abs=1e-3)
        binomial = np.sqrt(group[dataset == job].mean() * (1 - group[dataset == job].mean()) / np.sum(dataset == job))
        assert 0.5 * binomial < populations.bootstrap_std[job, 0] < 3 * binomial
    points = np.array([[0, 0], [1, 0], [5, 5], [0.9, 0.1], [5, 4.5]], dtype=np.float32)
    neighbours = nearest_reference_particles(points, np.array([0, 0, 0, 1, 1]))
    assert neighbours.reference_row.tolist() == [1, 0, 1, 1, 2]
    assert np.allclose(neighbours.distance, [1, 1, np.hypot(4, 5), np.hypot(0.1, 0.1), 0.5], atol=1e-6)


def test_maps_moved_by_a_fraction_of_a_voxel_keep_their_moments_about_the_moved_centre():
    from zernike3d.analysis.alignment import shifted_maps

    delta = np.zeros((1, BOX, BOX, BOX))
    delta[0, 5, 7, 9] = 1.0  # z, y, x
    assert np.unravel_index(np.argmax(shifted_maps(delta, (1, 2, 3))[0]), delta.shape[1:]) == (8, 9, 10)
    # expanding about an off-grid point = moving the map by the fraction, expanding about the voxel
    maps = job_maps()[:1]
    point = np.array([CENTRE + 0.7, CENTRE - 0.4, CENTRE + 0.3])
    on_grid = np.round(point / VOXEL_SIZE) * VOXEL_SIZE
    direct = Moments.from_maps(maps, BallGeometry(BOX, VOXEL_SIZE, CENTRE, tuple(point)), ORDER).invariants()
    moved = Moments.from_maps(shifted_maps(maps, (on_grid - point) / VOXEL_SIZE),
                              BallGeometry(BOX, VOXEL_SIZE, CENTRE, tuple(on_grid)), ORDER).invariants()
    assert np.linalg.norm(moved - direct) < 0.01 * np.linalg.norm(direct)


# --- a rotated twin -------------------------------------------------------------------


def job_maps():
    """base + 2 components: a blob that moves, and a blob that grows (density units)."""
    base = chiral_phantom(BOX, VOXEL_SIZE)
    at = [CENTRE + 6.0, CENTRE - 2.0, CENTRE + 3.0]
    moved = [CENTRE + 7.5, CENTRE - 2.0, CENTRE + 3.0]
    grows = [CENTRE - 5.0, CENTRE + 4.0, CENTRE - 3.0]
    return np.stack([base, blob(moved) - blob(at), blob(grows, 3.3) - blob(grows, 3.0)])


@pytest.fixture(scope="module")
def twin_comparison(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    rng = np.random.default_rng(5)
    maps = job_maps()
    latents = rng.normal(size=(600, 2)) * [1.0, 0.5]
    uid = rng.integers(2**63, 2**64 - 1, size=600, dtype=np.uint64)
    original = write_results(root / "original", maps, latents, uid)
    twin = write_results(root / "twin", np.stack([turn_on_grid(m) for m in maps]), latents, uid)
    # turned and moved by one voxel along x: aligned, it is decomposed again about the moved centre
    shifted = write_results(root / "shifted", np.stack([np.roll(turn_on_grid(m), 1, axis=2) for m in maps]), latents, uid)
    # the mirror image (x -> -x about voxel box//2: the chiral phantom's other hand)
    mirrored = write_results(root / "mirrored", np.stack([np.roll(m[:, :, ::-1], 1, axis=2) for m in maps]), latents, uid)
    out = root / "compare"
    with pytest.warns(UserWarning, match="the mirror image fits better"):
        assert main(["compare", str(original), str(twin), str(shifted), str(mirrored), "--out-dir", str(out),
                     "--clusters", "2", "--bootstrap", "20"]) == 0
    return out


def test_rotated_twin_is_aligned_and_its_latent_space_maps_by_the_identity(twin_comparison):
    out = twin_comparison
    alignment = json.loads((out / "alignment_twin.json").read_text())
    assert alignment["hand"] == "same" and alignment["correlation"] > 0.999
    relation = json.loads((out / "latent_twin.json").read_text())
    assert np.allclose(np.abs(relation["matrix"]), np.eye(2), atol=0.02)
    assert np.allclose(relation["offset"], 0.0, atol=0.02)
    assert np.allclose(relation["principal_angles_deg"], 0.0, atol=2.0)
    overlap = np.array(relation["overlap"])  # the components' own cosines: 1 on the diagonal, symmetric
    assert np.allclose(np.abs(np.diag(overlap)), 1.0, atol=1e-3) and np.allclose(overlap, overlap.T, atol=1e-3)
    assert np.allclose(np.abs(overlap), np.eye(2), atol=1e-3)  # no off-diagonal cosines: the identity
    assert relation["offset_residual"] < 1e-4  # relative to the base's norm, not noise over noise
    assert alignment["frame"]["method"].startswith("family") and alignment["frame"]["rotation_determined"]
    # the mirror image is flagged, and once mirrored back it is the original
    assert json.loads((out / "alignment_mirrored.json").read_text())["hand"] == "mirrored"
    mirrored = json.loads((out / "latent_mirrored.json").read_text())
    assert np.allclose(np.abs(mirrored["matrix"]), np.eye(2), atol=0.02)
    curves = read_csv(out / "order_correlation.csv")
    curves = [r for r in curves if r["dataset"] == "twin" and r["correlation"] != "nan"]
    base = [float(r["correlation"]) for r in curves if r["pair"] == "base~base"]
    assert len(base) == ORDER + 1 and min(base) > 0.99
    for pair in ("component_0~component_0", "component_1~component_1"):
        values = [float(r["correlation"]) for r in curves if r["pair"] == pair]
        assert values and min(values) > 0.98, pair


def test_rotated_twin_particles_meet_their_originals_in_the_joint_landscape(twin_comparison):
    with np.load(twin_comparison / "landscape.npz") as landscape:
        names, dataset, uid = list(landscape["names"]), landscape["dataset"], landscape["uid"]
        coords, nearest = landscape["coords"], landscape["nearest_reference_uid"]
        reference_latents = landscape["reference_latents"]
    assert names == ["original", "twin", "shifted", "mirrored"] and coords.dtype == np.float32 and uid.dtype == np.uint64
    assert coords.shape == (2400, 4) and np.bincount(dataset).tolist() == [600] * 4
    original, twin, shifted = dataset == 0, dataset == 1, dataset == 2
    for exact in (twin, dataset == 3):  # turned, mirrored: the same invariants, particle by particle
        assert np.mean(nearest[exact] == uid[exact]) > 0.95
        assert np.allclose(coords[exact], coords[original], atol=1e-3 * np.abs(coords).max())
    # the shifted twin, re-centred with align's shift (accurate to about 0.1 Å), lands where its
    # originals are, up to a small part of the landscape's spread
    spread = coords[original].std(axis=0)
    assert np.all(np.median(np.abs(coords[shifted] - coords[original]), axis=0)[:2] < 0.1 * spread[:2])
    assert all(np.corrcoef(coords[shifted][:, a], coords[original][:, a])[0, 1] > 0.99 for a in (0, 1))
    # the twins' particles placed in the original's latent space land on their own latents
    for job in (twin, shifted):
        assert np.allclose(np.abs(reference_latents[job]), np.abs(reference_latents[original]), atol=0.05)
    shift = json.loads((twin_comparison / "alignment_shifted.json").read_text())["shift"]
    assert np.linalg.norm(shift) == pytest.approx(VOXEL_SIZE, abs=0.3)  # align's stated accuracy
    distances = read_csv(twin_comparison / "volume_distances.csv")
    same = {(r["volume_a"], r["volume_b"]): float(r["shape_distance"]) for r in distances}
    assert same[("original:base", "twin:base")] < 1e-3 and same[("original:base", "twin:component_0")] > 0.1
    for figure in ("volume_distances", "order_correlation", "latent_overlap", "landscape_1d", "landscape_2d",
                   "cluster_populations"):
        assert (twin_comparison / f"{figure}.png").stat().st_size > 10_000


# --- two mixtures of the same two states ------------------------------------------------


def mixture_job(rng, share_state_1, particles, base_weight, scale, rotate):
    """A job whose particles are state 1 (a blob at one place) or state 2 (the blob moved)
    in the given share, plus a small continuous variation; its base map is base_weight *
    state 1 + (1 - base_weight) * state 2 and its first component (state 2 - state 1) /
    scale, so that the latents of the two states differ between jobs."""
    phantom = chiral_phantom(BOX, VOXEL_SIZE)
    state_1 = phantom + 0.8 * blob([CENTRE + 6.0, CENTRE, CENTRE - 2.0], 2.5)
    state_2 = phantom + 0.8 * blob([CENTRE - 1.0, CENTRE + 6.0, CENTRE + 2.0], 2.5)
    grows = [CENTRE - 5.0, CENTRE - 4.0, CENTRE + 3.0]
    base = base_weight * state_1 + (1 - base_weight) * state_2
    maps = np.stack([base, (state_2 - state_1) / scale, blob(grows, 3.3) - blob(grows, 3.0)])
    is_state_1 = rng.random(particles) < share_state_1
    # map = base + z0 (state_2 - state_1) / scale: state 1 at z0 = -(1 - w) scale, state 2 at w scale
    z0 = np.where(is_state_1, -(1 - base_weight) * scale, base_weight * scale) + rng.normal(0, 0.05 * abs(scale), particles)
    z1 = rng.normal(0, 0.5, particles)
    if rotate:
        maps = np.stack([turn_on_grid(m) for m in maps])
    uid = rng.integers(2**63, 2**64 - 1, size=particles, dtype=np.uint64)
    return maps, np.column_stack([z0, z1]), uid, is_state_1


def test_joint_clusters_recover_the_proportions_of_two_mixtures(tmp_path):
    rng = np.random.default_rng(11)
    jobs = {"mostly_2": mixture_job(rng, 0.3, 1500, 1.0, 1.0, False),
            "mostly_1": mixture_job(rng, 0.7, 1000, 0.4, -2.0, True)}
    folders = [write_results(tmp_path / name, maps, latents, uid) for name, (maps, latents, uid, _) in jobs.items()]
    out = tmp_path / "compare"
    assert main(["compare", *map(str, folders), "--out-dir", str(out), "--clusters", "2", "--bootstrap", "30"]) == 0
    with np.load(out / "landscape.npz") as landscape:
        cluster = landscape["cluster"]
    truth = np.concatenate([jobs["mostly_2"][3], jobs["mostly_1"][3]])
    # the cluster of state 1 is the one most of the state-1 particles fall into
    state_1_cluster = np.bincount(cluster[truth]).argmax()
    assert np.mean(cluster[truth] == state_1_cluster) > 0.97 and np.mean(cluster[~truth] != state_1_cluster) > 0.97
    rows = read_csv(out / "cluster_populations.csv")
    share = {(r["dataset"], int(r["cluster"])): r for r in rows}
    for name, (_, _, _, is_state_1) in jobs.items():
        row = share[(name, int(state_1_cluster))]
        assert float(row["fraction"]) == pytest.approx(is_state_1.mean(), abs=0.03), name
        assert 0 < float(row["bootstrap_std"]) < 0.05
        assert float(row["bootstrap_low_95"]) <= float(row["fraction"]) <= float(row["bootstrap_high_95"])
    assert is_state_1.mean() == pytest.approx(0.7, abs=0.05)  # the truth is what the test says it is


# --- bad input ---------------------------------------------------------------------------


def test_bad_inputs_stop_with_one_line_and_write_nothing(tmp_path, capsys):
    rng = np.random.default_rng(5)
    good = write_results(tmp_path / "good", job_maps(), rng.normal(size=(50, 2)), rng.integers(0, 2**63, 50, dtype=np.uint64))
    missing = tmp_path / "missing"
    out = tmp_path / "out"
    assert main(["compare", str(good), str(missing), "--out-dir", str(out)]) == 2
    assert f"{missing}: not a results folder" in capsys.readouterr().err
    assert main(["compare", str(good), "--out-dir", str(out)]) == 2
    assert "at least two results folders" in capsys.readouterr().err
    (tmp_path / "no_store").mkdir()
    for name in ("dataset.npz", "moments.npz"):
        shutil.copy(good / name, tmp_path / "no_store" / name)
    assert main(["compare", str(good), str(tmp_path / "no_store"), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has no particle_invariants.zarr" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(good), str(good), "--out-dir", str(out), "--clusters", "0"]) == 2
    assert "--clusters: must be at least 1" in capsys.readouterr().err
    assert not out.exists()
    # a folder that compare did not write is never replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    assert main(["compare", str(good), str(good), "--out-dir", str(mine)]) == 2
    assert "not a folder written by `zernike3d compare`" in capsys.readouterr().err
    assert main(["compare", str(good), str(good), "--out-dir", str(tmp_path)]) == 2  # nor one holding an input
    assert "holds the input" in capsys.readouterr().err
    assert (good / "moments.npz").is_file() and (tmp_path / "no_store" / "dataset.npz").is_file()


# --- the workflow ------------------------------------------------------------------------

WORKFLOW_CONFIG = {
    "datasets": {
        name: {"example": {"box": 16, "n_components": 2, "seed": seed}, "order": 6, "reconstruct": {"series": 0}}
        for name, seed in (("first", 0), ("second", 1))
    },
    "compare": {"pair": ["first", "second"]},
    "threads": 1,
}


def snakemake(workdir, *args):
    snakefile = Path(__file__).resolve().parents[1] / "workflow" / "Snakefile"
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir), *args],
                            capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


def write_workflow_config(workdir, config):
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_workflow_refuses_a_comparison_of_an_unknown_dataset(tmp_path):
    config = copy.deepcopy(WORKFLOW_CONFIG)
    config["compare"]["pair"] = ["first", "thrid"]
    write_workflow_config(tmp_path, config)
    code, output = snakemake(tmp_path, "-n")
    assert code != 0 and "compare.pair: no dataset 'thrid' (datasets: first, second)" in output


@pytest.mark.slow
def test_workflow_runs_the_compare_rule_and_reports_it(tmp_path):
    write_workflow_config(tmp_path, WORKFLOW_CONFIG)
    code, output = snakemake(tmp_path, "-n", "results/compare/pair/landscape.npz")
    assert code == 0 and "rule compare:" in output and "zernike3d compare results/first results/second" in output
    code, output = snakemake(tmp_path, "--cores", "2", "results/compare/pair/landscape.npz")
    assert code == 0, output[-4000:]
    out = tmp_path / "results" / "compare" / "pair"
    with np.load(out / "landscape.npz") as landscape:
        assert list(landscape["names"]) == ["first", "second"] and len(landscape["uid"]) == 4000
    assert json.loads((out / "alignment_second.json").read_text())["hand"] == "same"
    code, output = snakemake(tmp_path, "--report", "report.html", "results/compare/pair/landscape.npz")
    assert code == 0, output[-4000:]
    assert "Comparison" in (tmp_path / "report.html").read_text(errors="replace")
