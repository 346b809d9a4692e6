"""`zernike3d match`: particles of a 3D Variability job scored against molecular models and maps.

The molecules are built here: a synthetic four-domain "protein" (random compact chains of
C, N and O atoms), open and closed by a hinge turn of its third domain (the fourth, out of the plane of
the others, makes it chiral at low resolution), written as PDB
files with gemmi in their own frame. The 3DVA job is made from their densities
independently of the code under test (a Gaussian per atom of another width than the
stage's molmap, by zernike3d.synthetic.gaussian_blobs), in another frame: turned and
shifted. Its base map is 40% open; component 0 is open minus closed, component 1 a
variation of the first domain. Known answers: the open and closed models separate the
particles of the two states (AUC near 1), the fit recovers the job's frame, the mirror
image of the open model is flagged, the best latent point is the open state.
"""

import csv
import json
import warnings

import numpy as np
import pytest
from chimerax_session import FakeSession, run_script
from scipy.spatial.transform import Rotation

from zernike3d.analysis import match as mt
from zernike3d.cli import main
from zernike3d.maths.indexing import nlm_table
from zernike3d.synthetic import gaussian_blobs, synthetic_particles, write_results_folder

BOX, VOXEL, ORDER = 32, 2.5, 14
CENTRE = (BOX // 2) * VOXEL
#: the job's frame: model coordinates p -> TURN (p - MODEL_POINT) + CENTRE + SHIFT
TURN = Rotation.from_euler("ZYZ", [40, 70, -30], degrees=True).as_matrix()
SHIFT = np.array([3.0, -2.0, 1.5])
MODEL_POINT = np.array([52.0, 61.0, 70.0])  # the models sit about here in their own frame
OPEN_Z, CLOSED_Z, SPREAD = 0.6, -0.4, 0.08
PARTICLES = 240
ELEMENTS = ("C", "N", "O")


def domain(rng, centre, radius, count, step=1.5):
    """A compact random chain of ``count`` atoms ``step`` Å apart within ``radius`` Å of ``centre``."""
    atoms, position = [], np.zeros(3)
    while len(atoms) < count:
        trial = position + step * (d := rng.standard_normal(3)) / np.linalg.norm(d)
        if np.linalg.norm(trial) <= radius:
            position = trial
            atoms.append(centre + position)
    return np.array(atoms)


def molecule_states(seed=3):
    """(open, closed) atom positions (A, 3) Å in the model frame, and elements (A,)."""
    rng = np.random.default_rng(seed)
    a = domain(rng, np.array([-11.0, -3.0, 0.0]), 8.0, 140)
    b = domain(rng, np.array([4.0, -4.0, 2.0]), 7.0, 110)
    c = domain(rng, np.array([9.0, 11.0, -2.0]), 6.5, 90)
    d = domain(rng, np.array([-6.0, 5.0, 11.0]), 5.0, 50)  # out of the plane of the others: chiral at low resolution
    hinge = np.array([6.0, 3.0, 0.0])
    turn = Rotation.from_rotvec(np.radians(55) * np.array([0.0, 0.3, 1.0]) / np.linalg.norm([0.0, 0.3, 1.0])).as_matrix()
    closed_c = (c - hinge) @ turn.T + hinge
    elements = np.array([ELEMENTS[i % 3] for i in range(len(a) + len(b) + len(c) + len(d))])
    return (np.concatenate([a, b, c, d]) + MODEL_POINT, np.concatenate([a, b, closed_c, d]) + MODEL_POINT, elements,
            slice(0, len(a)))


def write_pdb(path, positions, elements):
    import gemmi

    structure, model, chain = gemmi.Structure(), gemmi.Model("1"), gemmi.Chain("A")
    for i, (position, element) in enumerate(zip(positions, elements)):
        residue = gemmi.Residue()
        residue.name, residue.seqid = "GLY", gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name, atom.element, atom.pos, atom.occ, atom.b_iso = element, gemmi.Element(element), gemmi.Position(*position), 1.0, 30.0
        residue.add_atom(atom)
        chain.add_residue(residue)
    model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    structure.write_pdb(str(path))
    return path


def true_matrix():
    return np.column_stack([TURN, CENTRE + SHIFT - TURN @ MODEL_POINT])


def job_density(positions, elements, sigma=2.2):
    """The map of ``positions`` (model frame) in the job's frame: Gaussians of ``sigma`` Å
    weighted by atomic number (C 6, N 7, O 8)."""
    weights = np.array([{"C": 6.0, "N": 7.0, "O": 8.0}[e] for e in elements])
    placed = positions @ TURN.T + (CENTRE + SHIFT - TURN @ MODEL_POINT)
    return gaussian_blobs(BOX, VOXEL, placed, [sigma] * len(placed), weights).astype(np.float64)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The models on disk, and a results folder of the job with its particles' true states."""
    root = tmp_path_factory.mktemp("match")
    opened, closed, elements, first_domain = molecule_states()
    mirrored = opened * np.array([-1.0, 1.0, 1.0])
    models = {"open": write_pdb(root / "open.pdb", opened, elements),
              "closed": write_pdb(root / "closed.pdb", closed, elements),
              "mirror": write_pdb(root / "mirror.pdb", mirrored, elements)}
    open_map, closed_map = job_density(opened, elements), job_density(closed, elements)
    wobble = job_density(opened[first_domain], elements[first_domain], sigma=2.6) - job_density(
        opened[first_domain], elements[first_domain])
    base = 0.6 * closed_map + 0.4 * open_map
    rng = np.random.default_rng(11)
    is_open = np.arange(PARTICLES) % 2 == 0
    z0 = np.where(is_open, OPEN_Z, CLOSED_Z) + rng.normal(0, SPREAD, PARTICLES)
    latents = np.column_stack([z0, rng.normal(0, 0.5, PARTICLES)])
    particles = synthetic_particles(count=PARTICLES, voxel_size=VOXEL, box=BOX, seed=5)
    folder = write_results_folder(root / "results" / "job", np.stack([base, open_map - closed_map, wobble]), latents,
                                  particles["uid"], VOXEL, ORDER)
    with open(root / "particles.cs", "wb") as f:
        np.save(f, particles)
    return {"root": root, "folder": folder, "models": models, "is_open": is_open, "latents": latents,
            "open_atoms": opened, "uid": particles["uid"], "particles_cs": root / "particles.cs",
            "open_map": open_map}


def read_scores(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def auc(positive, negative):
    """Probability that a positive scores above a negative (ties count half)."""
    positive, negative = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(np.mean(positive > negative) + 0.5 * np.mean(positive == negative))


@pytest.fixture(scope="module")
def matched(job):
    out = job["root"] / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["match", str(job["folder"]), "--query", str(job["models"]["open"]), str(job["models"]["closed"]),
                     "--query", str(job["models"]["mirror"]), "--out-dir", str(out), "--subsets",
                     "--particles-cs", str(job["particles_cs"]), "--top", "0.9"])
    assert code == 0
    return out, [str(w.message) for w in caught]


@pytest.mark.slow
def test_open_and_closed_models_separate_the_particles_of_the_two_states(job, matched):
    out, _ = matched
    rows = read_scores(out / "scores.csv")
    assert list(rows[0]) == ["uid", "open", "closed", "mirror", "best"]
    assert [int(r["uid"]) for r in rows] == job["uid"].tolist()
    margin = np.array([float(r["open"]) - float(r["closed"]) for r in rows])
    is_open = job["is_open"]
    assert auc(margin[is_open], margin[~is_open]) > 0.99
    best = np.array([r["best"] for r in rows])
    assert np.mean(best[~is_open] == "closed") > 0.95
    assert np.mean(np.isin(best[is_open], ["open", "mirror"])) > 0.95


@pytest.mark.slow
def test_the_fit_recovers_the_job_frame_and_the_best_state(job, matched):
    out, _ = matched
    record = json.loads((out / "match.json").read_text())
    truth = true_matrix()
    for stem in ("open", "closed"):
        fit = record["queries"][stem]
        assert fit["hand"] == "same"
        matrix = np.array(fit["matrix"])
        atoms = job["open_atoms"]
        rmsd = np.sqrt(np.mean(np.sum((atoms @ matrix[:, :3].T + matrix[:, 3] - (atoms @ truth[:, :3].T + truth[:, 3])) ** 2, axis=1)))
        assert rmsd < 1.0, (stem, rmsd)
    open_point, closed_point = (record["queries"][s]["best_point"]["latents"][0] for s in ("open", "closed"))
    assert abs(open_point - OPEN_Z) < 0.1 and abs(closed_point - CLOSED_Z) < 0.1
    assert record["queries"]["open"]["fit_rounds"] >= 2  # refitted onto the open state, not only the 40% open base
    best = record["queries"]["open"]["best_particle"]
    assert job["is_open"][job["uid"].tolist().index(best["uid"])]


@pytest.mark.slow
def test_the_mirrored_model_is_flagged(matched):
    out, messages = matched
    record = json.loads((out / "match.json").read_text())
    assert record["queries"]["mirror"]["hand"] == "mirrored"
    assert np.linalg.det(np.array(record["queries"]["mirror"]["matrix"])[:, :3]) < 0
    assert any("mirror:" in m and "mirror image of the job" in m for m in messages)
    with open(out / "queries.csv", newline="") as f:
        hands = {r["query"]: r["hand"] for r in csv.DictReader(f)}
    assert hands == {"open": "same", "closed": "same", "mirror": "mirrored"}


@pytest.mark.slow
def test_outputs_open_together_and_go_back_to_cryosparc(job, matched):
    import mrcfile
    import yaml

    out, _ = matched
    for stem in ("open", "closed", "mirror"):
        for name in (f"{stem}.mrc", f"{stem}_fitted.mrc"):
            with mrcfile.open(out / name) as mrc:
                assert mrc.data.shape == (BOX,) * 3
                assert float(mrc.voxel_size.x) == pytest.approx(VOXEL)
        session = FakeSession(user_models=2)  # the user's own #1 and #2 stay as they are
        run_script(out / f"{stem}.py", session)
        assert session.opened[:2] == [[str(out / f"{stem}.mrc")], [str(out / f"{stem}_fitted.mrc")]]
        assert session.numbers() == [1, 2, 3, 4, 5] and session.closed == []
        assert any(c.startswith("view matrix models #5,") for c in session.commands)  # the model file, placed
        run_script(out / f"{stem}.py", session)  # again: replaces only its own three models
        assert session.closed == [3, 4, 5] and session.numbers() == [1, 2, 3, 4, 5]
    with mrcfile.open(out / "open_fitted.mrc") as mrc:
        fitted = np.asarray(mrc.data, dtype=np.float64)
    assert np.corrcoef(fitted.ravel(), job["open_map"].ravel())[0, 1] > 0.9  # the model lands on the open state
    rows = read_scores(out / "scores.csv")
    for stem in ("open", "closed"):
        subset = np.load(out / "subsets" / f"{stem}.cs")
        assigned = [int(r["uid"]) for r in rows if r["best"] == stem]
        assert len(subset) == int(np.ceil(0.9 * len(assigned) - 1e-9))
        assert set(subset["uid"].tolist()) <= set(assigned)
        group = yaml.safe_load((out / "subsets" / f"{stem}.csg").read_text())
        assert group["results"]["blob"]["num_items"] == len(subset)
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_scores_are_the_correlations_of_the_particle_maps():
    """The ratio of quadratic forms equals Pearson's correlation of the expansions computed
    directly (m > 0 terms counted twice), for random moments."""
    order = 6
    nlm = nlm_table(order)
    rng = np.random.default_rng(0)

    def real_moments(count):
        m = rng.normal(size=(count, len(nlm))) + 1j * rng.normal(size=(count, len(nlm)))
        m[:, nlm[:, 2] == 0] = m[:, nlm[:, 2] == 0].real
        return m

    volumes, queries = real_moments(3), real_moments(2)
    latents = rng.normal(size=(5, 2))
    scores = mt.particle_scores(latents, mt.score_forms(volumes, queries, nlm))
    full = np.concatenate([[1.0] * len(nlm), 2.0 * (nlm[:, 2] > 0)])  # weights over m = -l..l as stored pairs
    for p, z in enumerate(latents):
        particle = volumes[0] + z @ volumes[1:]
        for q, query in enumerate(queries):
            a, b = particle.copy(), query.copy()
            a[0] = b[0] = 0.0
            weight = np.where(nlm[:, 2] == 0, 1.0, 2.0)
            expected = np.sum(weight * np.real(a * np.conj(b))) / np.sqrt(np.sum(weight * np.abs(a) ** 2) * np.sum(weight * np.abs(b) ** 2))
            assert scores[p, q] == pytest.approx(expected, rel=1e-12)
    assert full.size  # the weights' shape is that of the stored columns


def test_assignment_leaves_out_low_and_ambiguous_particles():
    scores = np.array([[0.9, 0.2], [0.5, 0.6], [0.3, 0.1], [0.8, 0.7], [np.nan, np.nan]])
    assert mt.assign(scores).tolist() == [0, 1, 0, 0, -1]
    assert mt.assign(scores, min_score=0.55).tolist() == [0, 1, -1, 0, -1]
    assert mt.assign(scores, top=0.5).tolist() == [0, 1, -1, 0, -1]


def test_best_latent_point_stays_where_the_particles_are():
    """A query equal to the map at z = 0.6 along component 0 peaks there; a query that
    the affine space reaches only far away is held at the particles' region."""
    nlm = nlm_table(4)
    rng = np.random.default_rng(1)
    volumes = rng.normal(size=(2, len(nlm))) + 0j
    latents = rng.normal(0, 0.3, size=(500, 1))
    region = mt.LatentRegion.of(latents)
    inside = mt.score_forms(volumes, volumes[0] + 0.6 * volumes[1], nlm)
    assert mt.best_latent_point(inside, 0, region, latents[0])[0] == pytest.approx(0.6, abs=1e-4)
    far = mt.score_forms(volumes, volumes[0] + 9.0 * volumes[1], nlm)
    point = mt.best_latent_point(far, 0, region, latents[np.argmax(latents[:, 0])])
    assert region.distance(point) == pytest.approx(region.radius, rel=1e-6)


@pytest.mark.slow
def test_a_map_query_of_another_box_and_voxel_size_is_fitted_and_scored(job, tmp_path):
    """The open state as a gzipped map of 56 voxels of 1.6 Å, in its own frame: the fit
    finds the job's frame and the map scores the open particles above the closed."""
    from zernike3d.io.mrc import write_map

    box, voxel = 56, 1.6
    centre = (box // 2) * voxel
    opened, _, elements, _ = molecule_states()
    in_map = opened - MODEL_POINT + centre  # the map's frame: from its voxel [0, 0, 0]
    weights = np.array([{"C": 6.0, "N": 7.0, "O": 8.0}[e] for e in elements])
    import gzip

    write_map(tmp_path / "open_state.mrc", gaussian_blobs(box, voxel, in_map, [2.0] * len(in_map), weights), voxel,
              origin=(100.0, 0.0, -50.0))
    with gzip.open(tmp_path / "open_state.map.gz", "wb") as f:  # as EMDB serves maps
        f.write((tmp_path / "open_state.mrc").read_bytes())
    out = tmp_path / "out"
    assert main(["match", str(job["folder"]), "--query", str(tmp_path / "open_state.map.gz"), "--out-dir", str(out)]) == 0
    fit = json.loads((out / "match.json").read_text())["queries"]["open_state"]
    assert fit["kind"] == "map" and fit["hand"] == "same"
    matrix, truth = np.array(fit["matrix"]), np.column_stack([TURN, CENTRE + SHIFT - TURN @ np.full(3, centre)])
    moved = in_map @ matrix[:, :3].T + matrix[:, 3] - (in_map @ truth[:, :3].T + truth[:, 3])
    assert np.sqrt(np.mean(np.sum(moved**2, axis=1))) < 1.0
    assert "100" in fit["chimerax"].split(",")[4] or fit["chimerax"].startswith("view matrix models #3,")
    scores = np.array([float(r["open_state"]) for r in read_scores(out / "scores.csv")])
    assert auc(scores[job["is_open"]], scores[~job["is_open"]]) > 0.99


@pytest.mark.slow
def test_a_single_map_is_scored_itself(job, tmp_path, capsys):
    from zernike3d.io.dataset import Dataset
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.moments import Moments

    folder = tmp_path / "results" / "single"
    folder.mkdir(parents=True)
    dataset = Dataset.single_map(job["open_map"], VOXEL, (0.0, 0.0, 0.0), [])
    dataset.save(folder / "dataset.npz")
    Moments.from_maps(dataset.maps, BallGeometry.for_box(BOX, VOXEL), ORDER, names=dataset.names).save(folder / "moments.npz")
    out = tmp_path / "out"
    assert main(["match", str(folder), "--query", str(job["models"]["open"]), str(job["models"]["closed"]),
                 "--out-dir", str(out)]) == 0
    assert "is a single map (no particles): scoring the map itself" in capsys.readouterr().out
    (row,) = read_scores(out / "scores.csv")
    assert row["uid"] == "map" and row["best"] == "open" and float(row["open"]) > 0.95
    assert main(["match", str(folder), "--query", str(job["models"]["open"]), "--out-dir", str(tmp_path / "o2"),
                 "--subsets"]) == 2


def _pdb_text(lines):
    return "".join(f"HETATM{i + 1:5d}  {name:<3s} {res:3s} A{i % 9999 + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00          {el:>2s}\n"
                   for i, (name, res, x, y, z, el) in enumerate(lines)) + "END\n"


@pytest.mark.parametrize("case, named, problem", [
    ("garbage.cif", "garbage.cif", "not a readable PDB or mmCIF model"),
    ("garbage.mrc", "garbage.mrc", "not an MRC file"),
    ("waters.pdb", "waters.pdb", "the model has no atoms"),
    ("large.pdb", "large.pdb", "the model is larger than the job's ball: 10 of 91 atoms (11.0%) lie outside its radius of 40 Å"),
    ("twice", "closed.pdb", "its stem 'open' repeats that of"),
    ("notes.txt", "notes.txt", "not a molecular model"),
    ("no particles", "empty", "has neither preprocessed.npz nor dataset.npz"),
])
def test_bad_input_is_one_line_and_exit_2(job, tmp_path, capsys, case, named, problem):
    queries = {
        "garbage.cif": lambda p: p.write_text("this is not a model\n"),
        "garbage.mrc": lambda p: p.write_bytes(b"\0" * 100),
        "waters.pdb": lambda p: p.write_text(_pdb_text([("O", "HOH", 1.0, 2.0, 3.0, "O")])),
        # a rod of 91 atoms 1 Å apart: 90 Å long, in a ball of 40 Å radius
        "large.pdb": lambda p: p.write_text(_pdb_text([("CA", "GLY", float(x), 0.0, 0.0, "C") for x in range(91)])),
        "notes.txt": lambda p: p.write_text("hello\n"),
    }
    folder, query = job["folder"], [str(job["models"]["open"])]
    if case in queries:
        queries[case](tmp_path / case)
        query = [str(tmp_path / case)]
    elif case == "twice":
        (tmp_path / "other").mkdir()
        query.append(str(tmp_path / "other" / "open.pdb"))
        (tmp_path / "other" / "open.pdb").write_text(job["models"]["closed"].read_text())
        named, problem = "open.pdb", "its stem 'open' repeats that of"
    else:
        folder = tmp_path / "empty"
        folder.mkdir()
    out = tmp_path / "out"
    assert main(["match", str(folder), "--query", *query, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and problem in err, err
    assert not out.exists()


@pytest.mark.slow
def test_the_workflow_runs_match_and_reports_it(tmp_path):
    """A `match:` key of the example dataset: the match rule's outputs (subsets from the
    example job's particles .cs), its report section, a stem given twice refused by key."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(2)
    atoms = domain(rng, np.full(3, 30.0), 9.0, 120)
    model = write_pdb(tmp_path / "blob.pdb", atoms, np.array(["C"] * len(atoms)))
    config = {"datasets": {"example": {"example": {"box": 24, "n_components": 2}, "order": 10, "qc": False,
                                       "particle_invariants": False, "reconstruct": {"series": 0},
                                       "match": [str(model)]}},
              "threads": 1, "basis_cache": None}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args):
        return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"),
                               "-d", str(tmp_path), *args], capture_output=True, text=True, timeout=600)

    run = snakemake("--cores", "2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "results" / "example" / "match"
    assert [r["query"] for r in csv.DictReader(open(out / "queries.csv"))] == ["blob"]
    assert len(read_scores(out / "scores.csv")) == 2000
    assert (out / "subsets" / "blob.cs").is_file() and (out / "subsets" / "blob.csg").is_file()
    import re

    from zernike3d.scheduling import resources

    peak = float(re.search(r"peak memory ([0-9.]+) MB", (tmp_path / "logs" / "example" / "match.log").read_text())[1])
    settings = dict(config["datasets"]["example"], threads=1)
    estimate = resources.rule_resources("match", tmp_path / "results" / "example" / "preprocessed.npz", 10, settings)
    assert peak <= estimate["mem_mb"], (peak, estimate)
    report = snakemake("--report", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Matching models" in (tmp_path / "report.html").read_text(errors="replace")
    other = tmp_path / "other"
    other.mkdir()
    (other / "blob.pdb").write_text(model.read_text())
    config["datasets"]["example"]["match"].append(str(other / "blob.pdb"))
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake("-n")
    assert dry.returncode != 0 and "datasets.example.match: " in dry.stdout + dry.stderr
    assert "its stem 'blob' repeats that of" in dry.stdout + dry.stderr


def test_a_model_that_fits_the_ball_only_off_its_centroid_is_accepted(job, tmp_path):
    """A rod 76 Å long in a ball of 40 Å radius, its atoms crowded at one end: about its
    centroid it would stick out by 30 Å; centred on its enclosing sphere it fits."""
    from zernike3d.stages.match import read_query
    from zernike3d.moments import Moments

    xs = [float(x) for x in range(0, 77, 4)] + [0.5 + 0.01 * i for i in range(300)]
    (tmp_path / "rod.pdb").write_text(_pdb_text([("CA", "GLY", x, 0.0, 0.0, "C") for x in xs]))
    geometry = Moments.load(job["folder"] / "moments.npz").geometry
    query = read_query(tmp_path / "rod.pdb", "rod", geometry, 2.0)
    assert query.atoms_outside(query.centring(geometry), geometry)[0] == 0
    assert query.centre[0] == pytest.approx(38.0, abs=0.5)


@pytest.mark.slow
def test_a_hand_that_the_fit_order_cannot_tell_is_told_at_the_job_order(job, tmp_path):
    """At --fit-order 4 the mirror image fits about as well as the model; the fit is then
    made again at the job's order, which flags the mirrored model."""
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["match", str(job["folder"]), "--query", str(job["models"]["mirror"]), "--out-dir", str(out),
                     "--fit-order", "4"]) == 0
    fit = json.loads((out / "match.json").read_text())["queries"]["mirror"]
    assert fit["hand"] == "mirrored"
