"""The Snakemake workflow on the tiny .test/ configuration, run locally.

lint, dry run, a bad configuration key, then the whole workflow end to end (interrupted
once by SIGKILL mid-way and resumed), checks of what it wrote, the HTML report, that a
second run does nothing, that deleting one output re-makes only what depends on it, and
the per-rule peak memory against the estimate. The run takes about a minute on 2 cores.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from zernike3d.scheduling import inputs, resources
from zernike3d.maths.indexing import nl_table

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
PATH_KEYS = ("job_dir", "map", "wiggle", "particles")

pytestmark = pytest.mark.slow


def absolute_test_config(shared_data):
    """The .test config with its relative paths (relative to .test/) made absolute."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    base = TEST_CONFIG.parents[1]
    for d in config["datasets"].values():
        for key in PATH_KEYS:
            if isinstance(d.get(key), str):
                d[key] = str((base / d[key]).resolve())
        if d.get("components"):
            d["components"] = [str((base / c).resolve()) for c in d["components"]]
        if d.get("example") and d["example"].get("particles_cs"):
            d["example"]["particles_cs"] = str((base / d["example"]["particles_cs"]).resolve())
    for d in config["datasets"].values():
        for key in ("map",):
            if d.get(key) and not Path(d[key]).exists():
                pytest.skip(f"{d[key]} not found (shared data beside the repository)")
        if d.get("example", {}).get("particles_cs") and not Path(d["example"]["particles_cs"]).exists():
            pytest.skip(f"{d['example']['particles_cs']} not found (shared data beside the repository)")
    return config


def write_config(workdir, config):
    path = Path(workdir) / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir, *args, timeout=600, check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{output[-6000:]}")
    return result.returncode, output


def job_counts(output):
    """{rule: count} from the 'Job stats' table of a dry run."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
                else:
                    break
    return counts


@pytest.fixture(scope="module")
def test_config(shared_data):
    return absolute_test_config(shared_data)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, test_config):
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, test_config)
    return workdir


def test_lint(workdir):
    _, output = snakemake(workdir, "--lint")
    assert "Congratulations, your workflow is in a good condition" in output, output


def test_workflow_is_formatted_by_snakefmt():
    run = subprocess.run([sys.executable, "-m", "snakefmt", "--check", str(REPO / "workflow")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dry_run(workdir):
    _, output = snakemake(workdir, "-n")
    counts = job_counts(output)
    assert counts == {
        "example_job": 1, "import_data": 2, "preprocess": 2, "basis": 2, "decompose": 2,
        "invariants": 1, "invariants_single": 1, "reconstruct": 2, "qc": 1, "qc_single": 1,
        "all": 1,
    }, output


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda c: c["datasets"]["hand"].__setitem__("ordr", 3), "datasets.hand: Additional properties are not allowed ('ordr' was unexpected)"),
        (lambda c: c["datasets"]["hand"]["preprocess"].__setitem__("bin", 0), "datasets.hand.preprocess.bin: 0 is less than the minimum of 1"),
        (lambda c: c.__setitem__("thread", 2), "(top level): Additional properties are not allowed ('thread' was unexpected)"),
        (lambda c: c["datasets"]["hand"].__setitem__("radius", "big"), "datasets.hand.radius: 'big' is not allowed here"),
        (lambda c: c["datasets"]["hand"].__setitem__("wiggle", "x.npz"), "datasets.hand: give exactly one input of job_dir, map, wiggle, example (got map, wiggle)"),
        (lambda c: c["datasets"]["hand"].__setitem__("map", "/nonexistent/map.mrc"), "datasets.hand.map: /nonexistent/map.mrc: file not found"),
        (lambda c: c["datasets"]["hand"]["preprocess"].__setitem__("bin", 16), "datasets.hand.preprocess.bin: the box of 64 voxels binned by 16 leaves 4; a map needs at least 8"),
        (lambda c: c["datasets"]["hand"].update({"order": None, "resolution": 3}), "datasets.hand.resolution: 3 Å is finer than the voxels resolve (Nyquist: 2 x 2 Å = 4 Å, 1 Å voxels binned by 2)"),
        (lambda c: c["datasets"]["job3dva"].__setitem__("clusters", {"k": 3, "paths": [["cluster_00", "cluster_07"]]}),
         "datasets.job3dva.clusters.paths.0: cluster_07, but clusters.k is 3 (clusters made: cluster_00 to cluster_02)"),
    ],
    ids=["misspelt key", "bad value", "misspelt global", "bad radius", "two inputs", "missing map", "bin too far",
         "resolution beyond Nyquist", "path to a cluster not made"],
)
def test_bad_config_stops_with_the_key_named(tmp_path, test_config, change, named):
    config = yaml.safe_load(yaml.safe_dump(test_config))
    change(config)
    write_config(tmp_path, config)
    code, output = snakemake(tmp_path, "-n", check=False)
    assert code != 0
    assert named in output, output
    assert not (tmp_path / "results").exists()


def test_resources_of_a_missing_input_are_tbd(workdir):
    _, output = snakemake(workdir, "-n", "--forcerun", "decompose")
    assert "mem_mb=<TBD>" in output


# --- the end-to-end run ---------------------------------------------------------------


def interrupt_when_started(workdir, log, sig, timeout=300):
    """Start the workflow; send ``sig`` to it and its jobs (the process group, as Ctrl-C
    in a terminal does) as soon as ``log`` appears. Returns the exit status."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), "--cores", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if (workdir / log).exists():
                os.killpg(proc.pid, sig)
                break
            time.sleep(0.05)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="module")
def finished(workdir):
    """The whole .test workflow: interrupted by Ctrl-C (SIGINT) once decompose has started,
    resumed and killed outright (SIGKILL, as a crash or a lost node) once reconstruct has
    started, then unlocked and resumed to the end."""
    started = time.time()
    moments = workdir / "results" / "job3dva" / "moments.npz"
    code = interrupt_when_started(workdir, "logs/job3dva/decompose.log", signal.SIGINT)
    assert code != 0, "the first run ended before it could be interrupted"
    assert not moments.exists() or _readable_moments(moments)
    code = interrupt_when_started(workdir, "logs/job3dva/reconstruct.log", signal.SIGKILL)
    assert code == -signal.SIGKILL, "the second run ended before it could be killed"
    assert moments.exists() and _readable_moments(moments)
    # a killed Snakemake leaves its lock behind: `snakemake --unlock`, then run again
    snakemake(workdir, "--unlock")
    _, output = snakemake(workdir, "--cores", "2")
    return {"output": output, "seconds": time.time() - started}


def _readable_moments(path):
    from zernike3d.moments import Moments

    return Moments.load(path).moments.shape[0] == 3


def results(workdir, dataset):
    return workdir / "results" / dataset


def test_run_completes_after_interruptions(finished, workdir):
    assert "Nothing to be done" not in finished["output"]
    # the job killed mid-way is re-run, the ones finished before are not
    assert "reconstruct" in finished["output"]
    # job3dva's moments were complete before the kill: the resumed run does not remake them
    assert not re.search(r"output: [^\n]*results/job3dva/moments\.npz", finished["output"])
    for name in ("job3dva", "hand"):
        assert (results(workdir, name) / "moments.npz").is_file()
    leftovers = [p for p in (workdir / "results").rglob("*.tmp-*") if "example_job" not in str(p)]
    # a SIGKILLed stage cannot clean up its temporary file, but never leaves a final one
    for path in leftovers:
        assert path.name.startswith("."), path


def test_moments(finished, workdir):
    from zernike3d.maths.indexing import coefficient_count
    from zernike3d.moments import Moments

    m = Moments.load(results(workdir, "job3dva") / "moments.npz")
    assert m.moments.shape == (3, coefficient_count(20))
    assert np.all(np.isfinite(m.moments))
    m = Moments.load(results(workdir, "hand") / "moments.npz")
    assert m.moments.shape == (1, coefficient_count(20))


def test_invariants(finished, workdir):
    import zarr

    n_nl = len(nl_table(20))
    with open(results(workdir, "job3dva") / "invariants.csv") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[:2] == ["n", "l"] and len(header) == 2 + 3, header
    assert len(body) == n_nl
    store = zarr.open(str(results(workdir, "job3dva") / "particle_invariants.zarr"), mode="r")
    arrays = {name: a for name, a in store.arrays()} if hasattr(store, "arrays") else {"": store}
    shapes = [a.shape for a in arrays.values() if len(a.shape) == 2]
    assert (2019, n_nl) in shapes, shapes
    with open(results(workdir, "hand") / "invariants.csv") as f:
        assert len(list(csv.reader(f))) == 1 + n_nl


def test_reconstruction_of_the_base_map_correlates_with_the_input(finished, workdir):
    from zernike3d.io.dataset import Dataset
    from zernike3d.io.mrc import read_map
    from zernike3d.maths.geometry import BallGeometry

    for name, minimum in (("job3dva", 0.95), ("hand", 0.9)):
        data = Dataset.load(results(workdir, name) / "preprocessed.npz")
        maps_dir = results(workdir, name) / "maps"
        with open(maps_dir / "index.csv") as f:
            index = list(csv.DictReader(f))
        assert index, f"{maps_dir}/index.csv lists no map"
        files = [maps_dir / Path(row.get("file") or row.get("path") or list(row.values())[0]).name for row in index]
        for path in files:
            assert path.is_file(), path
        base = read_map(files[0]).data
        geometry = BallGeometry.for_box(data.box, data.voxel_size)
        inside = geometry.inside()
        r = np.corrcoef(data.maps[0][inside], base[inside])[0, 1]
        assert r > minimum, (name, r)
        if name == "job3dva":
            # base + 2 series x 2 components + 2 k-means + 1 particle + 1 latent point
            assert len(index) >= 1 + 2 * 2 + 2 + 1 + 1, index


def test_qc_outputs(finished, workdir):
    common = ("fsc.csv", "fsc_resolution.csv", "fsc.png", "invariants.png")
    for name, files in (("job3dva", common + ("particle_invariants_pca.png",)), ("hand", common)):
        for f in files:
            path = results(workdir, name) / "qc" / f
            assert path.is_file() and path.stat().st_size > 0, path
        assert (results(workdir, name) / "qc" / "fsc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_logs_and_benchmarks(finished, workdir):
    for name, rules in (("job3dva", ("example_job", "import_data", "preprocess", "basis", "decompose", "invariants", "reconstruct", "qc")),
                        ("hand", ("import_data", "preprocess", "basis", "decompose", "invariants", "reconstruct", "qc"))):
        for rule in rules:
            assert (workdir / "logs" / name / f"{rule}.log").is_file(), (name, rule)
            assert (workdir / "logs" / name / f"{rule}.benchmark.tsv").is_file(), (name, rule)


def measured_peaks(workdir):
    """{(dataset, rule): (exact peak RSS MB from the log, sampled max_rss MB from the benchmark)}."""
    import re

    peaks = {}
    for log in sorted((workdir / "logs").glob("*/*.log")):
        found = re.search(r"peak memory ([0-9.]+) MB", log.read_text())
        with open(log.with_suffix(".benchmark.tsv")) as f:
            sampled = next(csv.DictReader(f, delimiter="\t")).get("max_rss", "NA")
        peaks[(log.parent.name, log.stem)] = (float(found.group(1)) if found else None,
                                              float(sampled) if sampled not in ("NA", "-", "") else None)
    return peaks


def test_memory_estimates_cover_the_measured_peaks(finished, workdir, test_config):
    """Every job's log ends with its exact peak RSS; mem_mb (zernike3d.scheduling.resources) must cover it."""
    stages = {"example_job": "example", "import_data": "import", "preprocess": "preprocess", "basis": "basis",
              "decompose": "decompose", "invariants": "invariants", "reconstruct": "reconstruct", "qc": "qc"}
    lines = []
    for (dataset, rule), (peak, sampled) in sorted(measured_peaks(workdir).items()):
        stage = stages[rule]
        settings = dict(test_config["datasets"][dataset], threads=1)
        if stage == "example":
            path = None
        elif stage == "import":
            d = test_config["datasets"][dataset]
            path = results(workdir, dataset) / "example_job" if d.get("example") else d["map"]
        elif stage == "preprocess":
            path = results(workdir, dataset) / "dataset.npz"
        else:
            path = results(workdir, dataset) / "preprocessed.npz"
        estimate = resources.rule_resources(stage, path, settings.get("order", 20), settings)["mem_mb"]
        lines.append(f"{dataset:8s} {rule:12s} peak {peak} MB (benchmark max_rss {sampled} MB), mem_mb {estimate}")
        assert peak is not None, f"logs/{dataset}/{rule}.log has no peak memory line"
        assert peak <= estimate, lines[-1]
    print("\n" + "\n".join(lines))


def test_report(finished, workdir):
    report = workdir / "report.html"
    snakemake(workdir, "--report", str(report))
    text = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000
    assert "fsc" in text.lower()
    # the first page: every dataset's FSC table and figures, inlined (the report still
    # reads when moved away from results/)
    assert 'src="results/' not in text and "src=\\\"results/" not in text
    for name in ("hand", "job3dva"):
        summary = (workdir / "results" / name / "qc" / "summary.html").read_text()
        assert summary.count("data:image/png;base64,") == (3 if name == "job3dva" else 2)
        assert f"<b>{name}</b>: FSC 0.5" in summary and "resolution_at_0.5_A" in summary
        assert json.dumps(summary.splitlines()[1])[1:-1] in text or summary.splitlines()[1] in text, name


def _result_values(folder):
    """{output: bytes of its values} of a 3DVA dataset's results: the moments, the
    invariants table, the per-particle store and every rebuilt map's voxels and header
    geometry (the MRC header's label names the zernike3d version, not a time)."""
    import mrcfile
    import zarr

    with np.load(folder / "moments.npz") as npz:
        values = {"moments": npz["moments"].tobytes()}
    values["invariants.csv"] = (folder / "invariants.csv").read_bytes()
    values["particle_invariants"] = zarr.open_group(folder / "particle_invariants.zarr", mode="r")["invariants"][:].tobytes()
    for path in sorted((folder / "maps").glob("*.mrc")):
        with mrcfile.open(path, permissive=True) as mrc:
            values[path.name] = mrc.data.tobytes() + repr((mrc.voxel_size, mrc.header.origin)).encode()
    return values


def test_resumed_results_equal_those_of_a_fresh_run(finished, workdir):
    """After Ctrl-C, kill -9, --unlock and a rerun, the results are value for value those
    that running the same jobs again from scratch gives."""
    job = results(workdir, "job3dva")
    resumed = _result_values(job)
    assert any(name.endswith(".mrc") for name in resumed)
    _, output = snakemake(workdir, "--cores", "2", "--forcerun", "results/job3dva/moments.npz")
    assert re.search(r"output: [^\n]*results/job3dva/moments\.npz", output), output  # really made again
    assert re.search(r"output: [^\n]*results/job3dva/maps", output), output
    fresh = _result_values(job)
    assert fresh.keys() == resumed.keys()
    assert [name for name in fresh if fresh[name] != resumed[name]] == []


def test_second_run_does_nothing(finished, workdir):
    _, output = snakemake(workdir, "-n")
    assert "Nothing to be done" in output, output


def test_deleting_one_output_remakes_only_what_depends_on_it(finished, workdir):
    hand = results(workdir, "hand")
    untouched = {p: p.stat().st_mtime_ns for p in (
        hand / "preprocessed.npz", hand / "basis.json", results(workdir, "job3dva") / "moments.npz",
        results(workdir, "job3dva") / "qc" / "fsc.png")}
    (hand / "moments.npz").unlink()
    _, output = snakemake(workdir, "-n")
    assert job_counts(output) == {"decompose": 1, "invariants_single": 1, "reconstruct": 1, "qc_single": 1, "all": 1}, output
    snakemake(workdir, "--cores", "2")
    assert (hand / "moments.npz").is_file()
    for path, mtime in untouched.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was re-made"
    _, output = snakemake(workdir, "-n")
    assert "Nothing to be done" in output


def test_resource_estimates_grow_with_the_problem():
    small = resources.estimate("decompose", resources.BundleShape(64, 4, 1000, 1.0), 20, {"threads": 4})
    box = resources.estimate("decompose", resources.BundleShape(256, 4, 1000, 1.0), 20, {"threads": 4})
    order = resources.estimate("decompose", resources.BundleShape(256, 4, 1000, 1.0), 60, {"threads": 4})
    assert small["mem_mb"] < box["mem_mb"] <= order["mem_mb"]
    assert small["runtime"] <= box["runtime"] <= order["runtime"]
    more = resources.estimate("invariants", resources.BundleShape(64, 4, 10_000_000, 1.0), 40, {})
    assert more["mem_mb"] > resources.estimate("invariants", resources.BundleShape(64, 4, 1000, 1.0), 40, {})["mem_mb"]
    basis = [resources.estimate("basis", resources.BundleShape(b, 1, 0, 1.0), 80, {"radius": "circumscribed"}) for b in (64, 256)]
    assert basis[0]["mem_mb"] < basis[1]["mem_mb"]
    for stage in resources.STAGES:
        r = resources.estimate(stage, resources.BundleShape(64, 3, 100, 1.0), 10, {"threads": 2})
        assert set(r) == {"mem_mb", "runtime", "gpu"} and r["mem_mb"] >= resources.MIN_MEM_MB and r["runtime"] >= 1
        assert r["gpu"] == 0


def test_rule_resources_reads_only_the_headers(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, maps=np.zeros((3, 20, 20, 20), np.float32), latents=np.zeros((7, 2), np.float32),
             voxel_size=np.float64(1.5), origin=np.zeros(3))
    assert inputs.bundle_shape(path) == inputs.BundleShape(20, 3, 7, 1.5)
    with pytest.raises(FileNotFoundError) as err:
        resources.rule_resources("decompose", str(tmp_path / "missing.npz"), 10, {})
    assert err.value.filename == str(tmp_path / "missing.npz")


def test_every_config_key_is_documented():
    """config/README.md names every key of the schema, and every site key of the SLURM profile."""
    from zernike3d.stages.profile import SITE_KEYS

    schema = yaml.safe_load((REPO / "config" / "schema" / "config.schema.yaml").read_text())
    readme = (REPO / "config" / "README.md").read_text()

    def keys(node, prefix=""):
        node = node if isinstance(node, dict) else {}
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
        for key, sub in (node.get("properties") or {}).items():
            yield prefix + key
            yield from keys(sub, prefix + key + "." if sub.get("type") == "object" or "properties" in sub else prefix)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            yield from keys(extra, "")

    missing = [k for k in keys(schema) if f"`{k}`" not in readme and f"`{k.split('.')[-1]}`" not in readme]
    assert not missing, f"config/README.md does not document: {missing}"
    missing_site = [k for k in SITE_KEYS if f"`{k}`" not in readme]
    assert not missing_site, f"config/README.md does not document the site keys: {missing_site}"


def test_transform_jobs_follow_the_plan_for_their_node():
    """decompose/reconstruct: memory from the planner with headroom, a GPU only where the
    planner would run the job on one, none when the dataset does not allow GPUs."""
    from zernike3d.scheduling.hardware import GpuDescription, MachineDescription
    from zernike3d.scheduling.planner import plan_for

    big, small = resources.BundleShape(192, 4, 1000, 1.0), resources.BundleShape(24, 3, 1000, 1.0)
    # one thread: two cores of the CPU kernels are now predicted faster than the CuPy
    # backend on a GPU known only by its memory (fallback rates), even for the big case
    allowed = {"threads": 1, "gpu": True, "gpu_memory_gb": 80}
    on_gpu = resources.planned("decompose", big, 60, allowed)
    assert on_gpu["gpu"] == 1
    assert resources.planned("decompose", small, 12, allowed)["gpu"] == 0  # faster on the CPU
    on_cpu = resources.planned("decompose", big, 60, {"threads": 2, "gpu": False})
    assert on_cpu["gpu"] == 0
    node = MachineDescription(2, 2**50, 2**50, 2**50)
    predicted = plan_for(192, 60, n_volumes=4, machine=node, threads=2).resources()["mem_mb"]
    assert predicted * resources.PLANNED_SAFETY <= on_cpu["mem_mb"] < predicted * resources.PLANNED_SAFETY + 256
    reconstruct = resources.planned("reconstruct", big, 60, {"threads": 2, "gpu": False, "reconstruct": {"series": 5}})
    assert reconstruct["gpu"] == 0 and reconstruct["mem_mb"] >= resources.MIN_MEM_MB
    gpu_node = MachineDescription(2, 2**50, 2**50, 2**50, gpus=(GpuDescription(0, "g", 80 * 2**30, 80 * 2**30),), cupy_usable=True)
    assert plan_for(192, 60, n_volumes=4, machine=gpu_node, threads=1).choice.placement.startswith("gpu")


# --- every setting that changes an output re-runs its rule and all that follows --------

#: a change's value that removes the key
DELETE = "<delete>"

HAND_FROM_IMPORT = {"import_data": 1, "preprocess": 1, "basis": 1, "decompose": 1, "invariants_single": 1,
                    "reconstruct": 1, "qc_single": 1, "all": 1}
HAND_FROM_PREPROCESS = {k: v for k, v in HAND_FROM_IMPORT.items() if k != "import_data"}
HAND_FROM_BASIS = {k: v for k, v in HAND_FROM_PREPROCESS.items() if k != "preprocess"}
JOB_FROM_EXAMPLE = {"example_job": 1, "import_data": 1, "preprocess": 1, "basis": 1, "decompose": 1,
                    "invariants": 1, "reconstruct": 1, "qc": 1, "all": 1}
JOB_FROM_PREPROCESS = {k: v for k, v in JOB_FROM_EXAMPLE.items() if k not in ("example_job", "import_data")}
RECONSTRUCT = {"reconstruct": 1, "qc": 1, "all": 1}  # qc reads the maps of a 3DVA job
BOTH_FROM_BASIS = {"basis": 2, "decompose": 2, "invariants": 1, "invariants_single": 1, "reconstruct": 2,
                   "qc": 1, "qc_single": 1, "all": 1}
NOTHING = {}
CLUSTERS = {"cluster": 1, "cluster_maps": 1, "all": 1}

#: (config key, the change(s) as (key path, new value), the jobs a dry run must schedule)
SETTING_CHANGES = [
    ("example.box", [("datasets.job3dva.example.box", 16)], JOB_FROM_EXAMPLE),
    ("example.n_components", [("datasets.job3dva.example.n_components", 3),
                              ("datasets.job3dva.reconstruct.latents", [[-0.5, 0.5, 0.0]])], JOB_FROM_EXAMPLE),
    ("example.particles_cs", [("datasets.job3dva.example.particles_cs", "SHARED/cryosparc_J2_particles_exported.cs")],
     JOB_FROM_EXAMPLE),
    ("example.seed", [("datasets.job3dva.example.seed", 1)], JOB_FROM_EXAMPLE),
    ("example.open_share", [("datasets.job3dva.example.open_share", 0.5)], JOB_FROM_EXAMPLE),
    *((f"example.{key}", [("datasets.job3dva.example.open_share", 0.5), (f"datasets.job3dva.example.{key}", value)],
       JOB_FROM_EXAMPLE) for key, value in (("turn", [-10, 20, 30]), ("shift", [1.0, 0.0, -2.0]))),
    ("map", [("datasets.hand.map", "COPY/hand-vol.mrc")], HAND_FROM_IMPORT),
    ("apix", [("datasets.hand.apix", 1.5)], HAND_FROM_IMPORT),
    ("preprocess.crop", [("datasets.hand.preprocess.crop", 48)], HAND_FROM_PREPROCESS),
    ("preprocess.center", [("datasets.hand.preprocess.center", "30,30,30")], HAND_FROM_PREPROCESS),
    ("preprocess.bin", [("datasets.hand.preprocess.bin", 1)], HAND_FROM_PREPROCESS),
    ("preprocess.mask", [("datasets.hand.preprocess.mask", "sphere")], HAND_FROM_PREPROCESS),
    ("preprocess.mask_radius", [("datasets.job3dva.preprocess.mask_radius", 20.0)], JOB_FROM_PREPROCESS),
    ("preprocess.mask_edge", [("datasets.job3dva.preprocess.mask_edge", 4)], JOB_FROM_PREPROCESS),
    ("order", [("datasets.hand.order", 16)], HAND_FROM_BASIS),
    ("resolution", [("datasets.hand.order", DELETE), ("datasets.hand.resolution", 8.0)], HAND_FROM_BASIS),
    ("radius", [("datasets.hand.radius", "circumscribed")], HAND_FROM_BASIS),
    ("center", [("datasets.hand.center", "30,30,30")], HAND_FROM_BASIS),
    # the maps of the series, k-means and particles go; the PCA plot is no longer made
    ("particle_invariants", [("datasets.job3dva.particle_invariants", False)], {"reconstruct": 1, "qc_single": 1, "all": 1}),
    ("reconstruct.order", [("datasets.job3dva.reconstruct.order", 10)], RECONSTRUCT),
    ("reconstruct.box", [("datasets.job3dva.reconstruct.box", 32)], RECONSTRUCT),
    ("reconstruct.voxel_size", [("datasets.job3dva.reconstruct.voxel_size", 2.0)], RECONSTRUCT),
    ("reconstruct.series", [("datasets.job3dva.reconstruct.series", 3)], RECONSTRUCT),
    ("reconstruct.percentiles", [("datasets.job3dva.reconstruct.percentiles", [10, 90])], RECONSTRUCT),
    ("reconstruct.kmeans", [("datasets.job3dva.reconstruct.kmeans", 3)], RECONSTRUCT),
    ("reconstruct.particles", [("datasets.job3dva.reconstruct.particles", [1])], RECONSTRUCT),
    ("reconstruct.latents", [("datasets.job3dva.reconstruct.latents", [[0.5, 0.5]])], RECONSTRUCT),
    ("reconstruct.mapspace", [("datasets.job3dva.reconstruct.mapspace", True)], RECONSTRUCT),
    ("reconstruct.movie", [("datasets.job3dva.reconstruct.movie", True)], RECONSTRUCT),
    # clusters (none in .test): each setting, given with k, schedules the cluster jobs
    *((f"clusters.{key}", [("datasets.job3dva.clusters.k", 2), (f"datasets.job3dva.clusters.{key}", value)], CLUSTERS)
      for key, value in (("k", 2), ("method", "gmm"), ("space", "invariants"), ("export_subsets", False),
                         ("bins", ["0:2"]), ("ranges", ["z_0=0:"]), ("particles_cs", "SHARED/cryosparc_P12_J24_001_particles.cs"))),
    ("clusters.maps", [("datasets.job3dva.clusters.k", 2), ("datasets.job3dva.clusters.maps", False)],
     {"cluster": 1, "all": 1}),
    *((f"clusters.{key}", [("datasets.job3dva.clusters.paths", [["index:0", "index:1"]]),
                           (f"datasets.job3dva.clusters.{key}", value)], {"paths": 1, "path_maps": 1, "all": 1})
      for key, value in (("paths", [["index:0", "index:1"]]), ("path_frames", 4), ("path_neighbours", 5),
                         ("path_density", True))),
    ("basis_cache", [("basis_cache", "results/other_cache")], BOTH_FROM_BASIS),
    ("basis_cache null", [("basis_cache", None)], {k: v for k, v in BOTH_FROM_BASIS.items() if k != "basis"}),
    # settings that change where or how fast, not what: nothing to re-make
    ("qc", [("datasets.hand.qc", False)], NOTHING),
    ("dataset threads", [("datasets.hand.threads", 2)], NOTHING),
    ("dataset gpu", [("datasets.hand.gpu", True)], NOTHING),
    ("threads", [("threads", 2)], NOTHING),
    ("gpu", [("gpu", True)], NOTHING),
    ("gpu_memory_gb", [("gpu_memory_gb", 80)], NOTHING),
    ("temperature", [("temperature", 300.0)], NOTHING),  # read by compare only (none in .test)
    ("resources", [("resources", {"decompose": {"mem_mb": 4000, "runtime": 30}})], NOTHING),
    ("slurm settings", [("slurm_max_runtime", 30), ("slurm_partition", "cpu"), ("slurm_gpu_model", "a100"),
                         ("slurm_gpu_partition", "gpu"), ("slurm_nodes", "2:64000:1"), ("slurm_gpu_nodes", "4:64000:1")],
     NOTHING),
]


def changed_config(config, changes, substitutions):
    """A copy of ``config`` with ``changes`` [(dotted key path, value or DELETE)] made,
    each placeholder of ``substitutions`` in a string value replaced."""
    config = yaml.safe_load(yaml.safe_dump(config))
    for path, value in changes:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if value == DELETE:
            node.pop(last, None)
            continue
        for placeholder, actual in substitutions.items():
            if isinstance(value, str):
                value = value.replace(placeholder, actual)
        node[last] = value
    return config


@pytest.fixture(scope="module")
def setting_changes(finished, workdir, test_config, shared_data, tmp_path_factory):
    """One dry run per changed setting on the finished run (in one process:
    tests/workflow_dry_runs.py); ``{case: scheduled job counts}``."""
    import json
    import shutil

    copy = tmp_path_factory.mktemp("copy")
    shutil.copy(shared_data / "hand-vol.mrc", copy / "hand-vol.mrc")  # same map, another file
    substitutions = {"SHARED": str(shared_data), "COPY": str(copy)}
    cases = {name: yaml.safe_dump(changed_config(test_config, changes, substitutions), sort_keys=False)
             for name, changes, _ in SETTING_CHANGES}
    cases_file = copy / "cases.json"
    cases_file.write_text(json.dumps(cases))
    run = subprocess.run([sys.executable, str(REPO / "tests" / "workflow_dry_runs.py"), str(workdir), str(cases_file)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for name, result in results.items():
        assert result["ok"], f"{name}: {result['error']}\n{result['output'][-3000:]}"
    return {name: job_counts(result["output"]) for name, result in results.items()}


@pytest.mark.parametrize("name, expected", [(name, expected) for name, _, expected in SETTING_CHANGES],
                         ids=[name for name, _, _ in SETTING_CHANGES])
def test_a_changed_setting_reruns_what_it_changes(setting_changes, name, expected):
    """Snakemake's default rerun triggers (mtime, params, input, code) see every setting:
    the rules' params are functions of the settings, never of input/output files."""
    assert setting_changes[name] == expected, (name, setting_changes[name])


def test_every_setting_that_feeds_a_rule_is_covered():
    """SETTING_CHANGES names every key of a dataset and every global key of the schema."""
    schema = yaml.safe_load((REPO / "config" / "schema" / "config.schema.yaml").read_text())
    dataset = schema["$defs"]["dataset"]["properties"]
    keys = set()
    for key, sub in dataset.items():
        if key in ("job_dir", "wiggle", "components", "particles"):  # inputs, as `map`; not in .test
            continue
        nested = sub.get("properties")
        keys |= {f"{key}.{k}" for k in nested} if nested else {key}
    keys |= set(schema["properties"]) - {"datasets"}
    # the comparison, clustering and matching analyses have their own rules and tests
    # (tests/test_compare.py, tests/test_cluster*.py, tests/test_match.py)
    keys = {k for k in keys if k.split(".")[0] not in ("compare", "clusters", "match")}
    covered = {name for name, _, _ in SETTING_CHANGES}
    covered |= {"threads", "gpu"} | {path for _, changes, _ in SETTING_CHANGES for path, _ in changes if "." not in path}
    missing = sorted(k for k in keys if k not in covered)
    assert not missing, f"no dry-run case for: {missing}"
