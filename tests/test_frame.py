"""The common frame of two 3D Variability jobs, and what compare then says, on synthetic
pairs with known answers (zernike3d.synthetic.two_state_job: analytic Gaussian maps, so
a turned job is turned exactly).

* Two jobs of one molecule with 40% and 75% of their particles open, the second turned
  and moved by 3 Å: the frame within 0.5° and 0.3 Å (the bases alone are biased: a base
  is the population-weighted mean), each state of the second job placed on the
  reference's within 0.5 within-state sd, ΔG of each state within its interval, no
  particle flagged as beyond the reference; a third job with a state the reference
  lacks: those particles flagged, its other state not, and its frame not pulled.
* A C4-symmetric base whose components break the symmetry, turned: the right copy,
  four copies reported, latent spaces identical.
* A sphere and a cylinder: the rotation (about the axis) said to be undetermined.
"""

import csv
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from zernike3d.analysis.compare import latent_relation
from zernike3d.analysis.frame import align_jobs
from zernike3d.cli import main
from zernike3d.maths.geometry import BallGeometry
from zernike3d.moments import Moments
from zernike3d.synthetic import gaussian_blobs, two_state_job, write_results_folder

BOX, VOXEL_SIZE, ORDER, PARTICLES = 32, 2.0, 12, 1500
TURN = Rotation.from_euler("zyz", [100, 35, -20], degrees=True).as_matrix()
SHIFT = 3.0 * np.array([2.0, -1.5, 1.6]) / np.linalg.norm([2.0, -1.5, 1.6])


def angle_deg(a, b):
    return np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1)))


def moments_of(maps, order=ORDER):
    return Moments.from_maps(maps, BallGeometry.for_box(maps.shape[-1], VOXEL_SIZE), order)


@pytest.fixture(scope="module")
def two_conditions(tmp_path_factory):
    root = tmp_path_factory.mktemp("conditions")
    rng = np.random.default_rng(0)
    jobs = {"apo": two_state_job(BOX, VOXEL_SIZE, 0.4, PARTICLES, seed=1),
            "ligand": two_state_job(BOX, VOXEL_SIZE, 0.75, PARTICLES, seed=2, rotation=TURN, shift=SHIFT),
            "novel": two_state_job(BOX, VOXEL_SIZE, 0.5, PARTICLES, seed=3, swing_deg=-60)}  # another open state
    folders = [write_results_folder(root / name, maps, latents, rng.integers(2**63, 2**64 - 1, PARTICLES, dtype=np.uint64),
                                    VOXEL_SIZE, ORDER) for name, (maps, latents, _) in jobs.items()]
    out = root / "compare"
    assert main(["compare", *map(str, folders), "--out-dir", str(out), "--clusters", "2", "--bootstrap", "60"]) == 0
    return out, {name: job[2] for name, job in jobs.items()}


@pytest.mark.slow
def test_frame_of_jobs_with_other_populations_is_the_molecules(two_conditions):
    out, _ = two_conditions
    alignment = json.loads((out / "alignment_ligand.json").read_text())
    # the moving job's points p land at R^T (p - c - shift) + c: rotation R^T, shift -R^T s
    assert angle_deg(np.array(alignment["rotation"]), TURN.T) < 0.5
    assert np.linalg.norm(np.array(alignment["shift"]) + TURN.T @ SHIFT) < 0.3
    frame = alignment["frame"]
    assert frame["method"].startswith("family") and frame["rotation_determined"] and len(frame["symmetry_copies"]) == 1
    assert frame["family_correlation"] > frame["base_correlation"]  # the bases are other mixtures
    assert len(frame["states"]) == 5 and max(s["misfit"] for s in frame["states"]) < 0.02
    # the job with a state the reference lacks is aligned on the state they share
    novel = json.loads((out / "alignment_novel.json").read_text())
    assert angle_deg(np.array(novel["rotation"]), np.eye(3)) < 0.5 and np.linalg.norm(novel["shift"]) < 0.3
    assert novel["frame"]["particles_fitted"] < 0.7


@pytest.mark.slow
def test_the_bases_alone_give_a_biased_frame(two_conditions, tmp_path):
    """What compare did before (--frame base): the consensus maps are other mixtures."""
    from zernike3d.analysis.alignment import align

    apo = Moments.load(two_conditions[0].parent / "apo" / "moments.npz")
    ligand = Moments.load(two_conditions[0].parent / "ligand" / "moments.npz")
    base = align(ligand, apo)
    family = json.loads((two_conditions[0] / "alignment_ligand.json").read_text())
    assert angle_deg(base.rotation, TURN.T) > 2 * angle_deg(np.array(family["rotation"]), TURN.T)


@pytest.mark.slow
def test_states_land_on_the_references_in_its_latent_space(two_conditions):
    out, is_open = two_conditions
    with np.load(out / "landscape.npz") as landscape:
        dataset, placed = landscape["dataset"], landscape["reference_latents"]
    apo, ligand = placed[dataset == 0], placed[dataset == 1]
    for state in (True, False):
        reference = apo[is_open["apo"] == state]
        offset = (ligand[is_open["ligand"] == state].mean(axis=0) - reference.mean(axis=0)) / reference.std(axis=0)
        assert np.all(np.abs(offset) < 0.5), (state, offset)


@pytest.mark.slow
def test_novelty_is_flagged_only_for_the_state_the_reference_lacks(two_conditions):
    out, is_open = two_conditions
    rows = {r["dataset"]: r for r in csv.DictReader(open(out / "nearest_neighbours.csv"))}
    assert float(rows["apo"]["share_beyond_reference_states"]) <= 0.05
    assert float(rows["ligand"]["share_beyond_reference_states"]) <= 0.05  # every state occurs in the reference
    with np.load(out / "landscape.npz") as landscape:
        beyond = landscape["beyond_reference"][landscape["dataset"] == 2]
    assert beyond[is_open["novel"]].mean() > 0.95 and beyond[~is_open["novel"]].mean() <= 0.05
    assert float(rows["novel"]["share_beyond_reference_states"]) == pytest.approx(is_open["novel"].mean(), abs=0.05)


@pytest.mark.slow
def test_free_energies_of_the_states_are_recovered_within_their_intervals(two_conditions):
    out, is_open = two_conditions
    rows = list(csv.DictReader(open(out / "free_energy.csv")))
    assert list(rows[0]) == ["dataset", "state", "population", "population_low", "population_high", "dG_kT", "dG_kT_low",
                             "dG_kT_high"]
    with np.load(out / "landscape.npz") as landscape:
        cluster, dataset = landscape["cluster"], landscape["dataset"]
    open_state = np.bincount(cluster[dataset == 0][is_open["apo"]]).argmax()
    table = {(r["dataset"], int(r["state"])): {k: float(v) for k, v in r.items() if k not in ("dataset", "state")}
             for r in rows}
    for state, share_apo, share_ligand in ((open_state, 0.4, 0.75), (1 - open_state, 0.6, 0.25)):
        row = table[("ligand", state)]
        assert row["population_low"] <= share_ligand <= row["population_high"]
        assert row["dG_kT_low"] <= -np.log(share_ligand / share_apo) <= row["dG_kT_high"]
        assert row["dG_kT_high"] - row["dG_kT_low"] < 0.5
        assert table[("apo", state)]["dG_kT"] == 0.0
    one_d = list(csv.DictReader(open(out / "free_energy_1d.csv")))
    assert {r["dataset"] for r in one_d} == {"apo", "ligand", "novel"}
    sparse = [r for r in one_d if int(r["particles"]) < 20]
    assert sparse and all(r["G_kT"] == "nan" for r in sparse)  # masked, not -kT ln of a few particles
    dense = [float(r["G_kT"]) for r in one_d if int(r["particles"]) >= 20]
    assert min(dense) >= -10 and np.isfinite(dense).all()
    for figure in ("free_energy_1d", "free_energy_2d", "free_energy_states"):
        assert (out / f"{figure}.png").stat().st_size > 10_000


@pytest.mark.parametrize("turn", [Rotation.from_euler("z", 100, degrees=True).as_matrix(),
                                  Rotation.from_euler("zyz", [-50, 70, 160], degrees=True).as_matrix()])
def test_a_symmetric_base_is_told_apart_by_its_components(turn):
    maps, latents, _ = two_state_job(BOX, VOXEL_SIZE, 0.5, 800, seed=4, symmetry=4)
    turned, _, _ = two_state_job(BOX, VOXEL_SIZE, 0.5, 800, seed=4, symmetry=4, rotation=turn)
    reference, moving = moments_of(maps), moments_of(turned)
    alignment = align_jobs(moving, reference, latents)
    assert angle_deg(alignment.rotation, turn.T) < 0.5
    assert len(alignment.frame["symmetry_copies"]) == 4  # the base alone: C4
    from zernike3d.analysis.alignment import express_in_reference_frame

    relation = latent_relation(reference.moments, express_in_reference_frame(moving, alignment).moments, ORDER)
    assert np.max(relation.principal_angles_deg) < 5.0
    assert np.allclose(np.abs(relation.matrix), np.eye(2), atol=0.05)  # up to each component's sign


def test_a_sphere_and_a_cylinder_leave_the_rotation_undetermined():
    centre = (BOX // 2) * VOXEL_SIZE
    rng = np.random.default_rng(5)
    latents = rng.normal(size=(200, 1))
    sphere = np.stack([gaussian_blobs(BOX, VOXEL_SIZE, [[centre] * 3], [6.0], [1.0]),
                       gaussian_blobs(BOX, VOXEL_SIZE, [[centre] * 3] * 2, [6.6, 6.0], [1.0, -1.0])])
    with pytest.warns(UserWarning, match="the rotation is undetermined"):
        alignment = align_jobs(moments_of(sphere), moments_of(sphere), latents)
    assert not alignment.frame["rotation_determined"] and len(alignment.frame["undetermined_axes"]) == 3
    line = [[centre, centre, centre + dz] for dz in (-8.0, -4.0, 0.0, 4.0, 8.0)]
    cylinder = np.stack([gaussian_blobs(BOX, VOXEL_SIZE, line, [3.0] * 5, [1.0] * 5),
                         gaussian_blobs(BOX, VOXEL_SIZE, line[:1] * 2, [3.3, 3.0], [1.0, -1.0])])
    with pytest.warns(UserWarning, match="undetermined about the axis"):
        alignment = align_jobs(moments_of(cylinder), moments_of(cylinder), latents)
    (axis,) = alignment.frame["undetermined_axes"]
    assert abs(axis[2]) > 0.999  # about z


@pytest.mark.slow
def test_align_fits_two_results_folders_as_compare_does(two_conditions, tmp_path, capsys):
    root = two_conditions[0].parent
    out = tmp_path / "alignment.json"
    assert main(["align", str(root / "ligand"), str(root / "apo"), "--out", str(out)]) == 0
    alignment = json.loads(out.read_text())
    assert alignment["frame"]["method"].startswith("family") and angle_deg(np.array(alignment["rotation"]), TURN.T) < 0.5
    assert "family correlation" in capsys.readouterr().out
    assert main(["align", str(root / "ligand" / "moments.npz"), str(root / "apo" / "moments.npz"), "--out", str(out),
                 "--frame", "family"]) == 2
    assert "needs two results folders" in capsys.readouterr().err
