"""A bad configuration stops `snakemake -n`, before any job runs, with the key named.

Covers what the schema alone let through: a dataset given twice (YAML keeps the last),
numbers that are not numbers (``center: "e,+,-"``, ``.inf``), ``order: 16.0``, and what
can be checked against the inputs before they are processed: a crop larger than the map,
a bin that does not divide the box, latents of the wrong length, particle rows and
k-means centres beyond the particles, a reconstruction order above the dataset's, a job
directory that is not one. Every case is a dry run of the real workflow on the .test
configuration (in one process, tests/workflow_dry_runs.py); one is the `snakemake -n`
command itself.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_workflow import DELETE, SNAKEFILE, absolute_test_config, changed_config, write_config

REPO = Path(__file__).resolve().parents[1]

DUPLICATE = """
datasets:
  hand:
    map: MAP
    order: 10
  other:
    map: MAP
  hand:
    map: MAP
    order: 12
"""

#: (case, changes as (key path, value), the line that must name the key)
BAD_SETTINGS = [
    ("center not numbers", [("datasets.hand.center", "e,+,-")], "datasets.hand.center: 'e,+,-' is not allowed here"),
    ("crop centre not numbers", [("datasets.hand.preprocess.center", "1,2,x")],
     "datasets.hand.preprocess.center: '1,2,x' is not allowed here"),
    ("order 16.0", [("datasets.hand.order", 16.0)], "datasets.hand.order: 16.0 is not of type 'integer'"),
    ("radius inf", [("datasets.hand.radius", float("inf"))], "datasets.hand.radius: inf is not allowed here"),
    ("apix nan", [("datasets.hand.apix", float("nan"))], "datasets.hand.apix: nan is not of type 'number', 'null'"),
    ("centre list inf", [("datasets.hand.center", [1.0, float("inf"), 2.0])], "datasets.hand.center: [1.0, inf, 2.0] is not allowed here"),
    ("crop beyond the box", [("datasets.hand.preprocess.crop", 100)],
     "datasets.hand.preprocess.crop: 100 voxels is larger than the input's box of 64"),
    ("bin does not divide", [("datasets.hand.preprocess.bin", 3)],
     "datasets.hand.preprocess.bin: the box of 64 voxels is not divisible by 3"),
    ("bin does not divide the crop", [("datasets.hand.preprocess.crop", 50), ("datasets.hand.preprocess.bin", 4)],
     "datasets.hand.preprocess.bin: the box of 50 voxels is not divisible by 4"),
    ("crop beyond the example box", [("datasets.job3dva.preprocess.crop", 32)],
     "datasets.job3dva.preprocess.crop: 32 voxels is larger than the input's box of 24"),
    ("latents of the wrong length", [("datasets.job3dva.reconstruct.latents", [[0.5, 0.5], [0.1]])],
     "datasets.job3dva.reconstruct.latents.1: 1 coordinates, but the input has 2 components"),
    ("particle row out of range", [("datasets.job3dva.reconstruct.particles", [0, 2019])],
     "datasets.job3dva.reconstruct.particles: row 2019 is out of range; the input has 2019 particles (rows 0-2018)"),
    ("k-means beyond the particles", [("datasets.job3dva.reconstruct.kmeans", 5000)],
     "datasets.job3dva.reconstruct.kmeans: 5000 centres for 2019 particles"),
    ("reconstruct order above the order", [("datasets.hand.reconstruct.order", 21)],
     "datasets.hand.reconstruct.order: 21 is above the dataset's order 20"),
    ("order and resolution", [("datasets.job3dva.resolution", 8.0)],
     "datasets.job3dva: give order or resolution, not both"),
    ("resolution not positive", [("datasets.hand.resolution", 0)],
     "datasets.hand.resolution: 0 is less than or equal to the minimum of 0"),
    ("job_dir not a job", [("datasets.hand.map", DELETE), ("datasets.hand.job_dir", "JOBS/empty")],
     "datasets.hand.job_dir: JOBS/empty: no 3D Variability outputs here"),
    ("latents against a job's components", [("datasets.hand.map", DELETE), ("datasets.hand.job_dir", "JOBS/J7"),
                                            ("datasets.hand.reconstruct", {"latents": [[1.0, 2.0, 3.0]]})],
     "datasets.hand.reconstruct.latents.0: 3 coordinates, but the input has 2 components"),
    ("particles against a job's table", [("datasets.hand.map", DELETE), ("datasets.hand.job_dir", "JOBS/J7"),
                                         ("datasets.hand.reconstruct", {"particles": [40]})],
     "datasets.hand.reconstruct.particles: row 40 is out of range; the input has 40 particles (rows 0-39)"),
    ("k-means against a compressed table", [("datasets.hand.map", DELETE), ("datasets.hand.job_dir", "JOBS/J8"),
                                            ("datasets.hand.reconstruct", {"kmeans": 31})],
     "datasets.hand.reconstruct.kmeans: 31 centres for 30 particles"),
    # the clusters section, which only the cluster and path jobs used to refuse
    ("clusters beyond the particles", [("datasets.hand.map", DELETE), ("datasets.hand.job_dir", "JOBS/J7"),
                                       ("datasets.hand.clusters", {"k": 41})],
     "datasets.hand.clusters.k: 41 clusters, but at most 40 can be made (40 particles)"),
    ("bins of a component the job lacks", [("datasets.job3dva.clusters", {"k": 2, "bins": ["2:4"]})],
     "datasets.job3dva.clusters.bins.0: component 2 out of range 0..1"),
    ("too many bins", [("datasets.job3dva.clusters", {"k": 2, "bins": ["0:100000"]})],
     "datasets.job3dva.clusters.bins.0: '0:100000': need 1..100 bins"),
    ("particles_cs missing", [("datasets.job3dva.clusters", {"k": 2, "particles_cs": "/nonexistent/J9_particles.cs"})],
     "datasets.job3dva.clusters.particles_cs: /nonexistent/J9_particles.cs: file not found"),
    ("path point of the wrong dimension", [("datasets.job3dva.clusters", {"k": 2, "paths": [["z:0,0,0", "cluster_00"]]})],
     "datasets.job3dva.clusters.paths.0: z:0,0,0 has 3 finite values; the input has 2 components"),
    ("a range upside down", [("datasets.job3dva.clusters", {"k": 2, "ranges": ["z_0=1:0"]})],
     "datasets.job3dva.clusters.ranges.0: expected NAME=LOW:HIGH with LOW <= HIGH, got 'z_0=1:0'"),
    ("a range of an invariant in latent space", [("datasets.job3dva.clusters", {"k": 2, "ranges": ["F_2_0=0:"]})],
     "datasets.job3dva.clusters.ranges.0: F_2_0 is an invariant: it needs space: invariants"),
    ("a path twice", [("datasets.job3dva.clusters", {"k": 2, "paths": [["cluster_00", "cluster_01"]] * 2})],
     "datasets.job3dva.clusters.paths.1: cluster_00 to cluster_01 is given twice"),
    ("path neighbours beyond the particles", [("datasets.hand.map", DELETE), ("datasets.hand.job_dir", "JOBS/J7"),
                                              ("datasets.hand.clusters", {"k": 2, "paths": [["cluster_00", "cluster_01"]],
                                                                          "path_neighbours": 40})],
     "datasets.hand.clusters.path_neighbours: need 1..39 neighbours"),
]


@pytest.fixture(scope="module")
def cases(shared_data, tmp_path_factory):
    """The .test config and a workdir, a real (synthetic) 3DVA job directory of 2
    components and 40 particles, and an empty one."""
    from zernike3d.synthetic import write_3dva_job

    root = tmp_path_factory.mktemp("config_cases")
    jobs = root / "jobs"
    (jobs / "empty").mkdir(parents=True)
    write_3dva_job(jobs / "J7", box=16, n_components=2, seed=0)
    table = next((jobs / "J7").glob("*_particles.cs"))
    import numpy as np

    np.save(table.with_suffix(".npy"), np.load(table)[:40])  # 40 rows, as np.save writes them
    table.with_suffix(".npy").rename(table)
    # the same job with a 30-row table in cryoSPARC's compressed format (counted from its header)
    from cryosparc.dataset import CSDAT_FORMAT, Dataset as CsDataset

    write_3dva_job(jobs / "J8", box=16, n_components=2, seed=0)
    compressed = next((jobs / "J8").glob("*_particles.cs"))
    CsDataset(np.load(compressed)[:30]).save(compressed, format=CSDAT_FORMAT)
    config = absolute_test_config(shared_data)
    workdir = root / "work"
    write_config(workdir, config)
    return {"config": config, "workdir": workdir, "jobs": jobs}


@pytest.fixture(scope="module")
def dry_runs(cases):
    texts = {name: yaml.safe_dump(changed_config(cases["config"], changes, {"JOBS": str(cases["jobs"])}), sort_keys=False)
             for name, changes, _ in BAD_SETTINGS}
    texts["duplicate dataset"] = DUPLICATE.replace("MAP", cases["config"]["datasets"]["hand"]["map"])
    texts["good"] = yaml.safe_dump(cases["config"], sort_keys=False)
    cases_file = cases["workdir"] / "cases.json"
    cases_file.write_text(json.dumps(texts))
    run = subprocess.run([sys.executable, str(REPO / "tests" / "workflow_dry_runs.py"), str(cases["workdir"]),
                          str(cases_file)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_good_config_passes(dry_runs):
    assert dry_runs["good"]["ok"], dry_runs["good"]["error"]


@pytest.mark.parametrize("name, named", [(name, named) for name, _, named in BAD_SETTINGS],
                         ids=[name for name, _, _ in BAD_SETTINGS])
def test_a_bad_setting_stops_the_dry_run_naming_the_key(dry_runs, cases, name, named):
    result = dry_runs[name]
    assert not result["ok"], f"{name} was accepted:\n{result['output'][-2000:]}"
    assert named.replace("JOBS", str(cases["jobs"])) in result["error"], result["error"]
    assert "Traceback" not in result["error"]
    assert not (cases["workdir"] / "results").exists()


def test_a_dataset_given_twice_stops_the_dry_run(dry_runs):
    error = dry_runs["duplicate dataset"]["error"]
    assert "datasets.hand: given twice (lines 3 and 8)" in error, error


def test_snakemake_n_names_a_duplicate_key_in_one_line(cases, tmp_path):
    """The command a user types: exit status 1 and one line naming the key (no traceback
    into the workflow's files), nothing written."""
    workdir = tmp_path / "work"
    path = write_config(workdir, {})
    path.write_text(DUPLICATE.replace("MAP", cases["config"]["datasets"]["hand"]["map"]))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), "-n"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    lines = [line for line in (run.stdout + run.stderr).splitlines() if not line.startswith("Using workflow specific profile")]
    assert lines == ["config/config.yaml: datasets.hand: given twice (lines 3 and 8); "
                     "the second would silently replace the first (see config/README.md)"], run.stdout + run.stderr
    assert not (workdir / "results").exists()
