"""The SLURM profile, for real: `snakemake --profile slurm` on a single-node SLURM cluster.

tools/slurm_cluster.sh starts munged + slurmctld + slurmd on loopback (Debian's slurm-wlm,
no accounting database, one fake GPU of type `testgpu`). The test copies the workflow and
package into a fresh folder, puts the .test configuration there as config/config.yaml,
installs the profile with `zernike3d profile install --site ...` into a private
$XDG_CONFIG_HOME, and runs exactly `snakemake --profile slurm` from that folder. Every
job goes through sbatch; the GPU-capable rules of the GPU dataset must have asked for
`--gpus=testgpu:1` and been scheduled on the fake GPU.

Run only when asked (ZERNIKE3D_TEST_SLURM=1; .ci/run installs SLURM and asks); skipped,
with the reason, otherwise, or when not root, SLURM is not installed or cannot start. The
test never installs anything, and everything the daemons write (state, munge's key and
socket, the fake GPU device, mode 0600) lies in its temporary folder; only
/etc/slurm/slurm.conf lies outside, and is removed on stop. The profile tests at the top
need no cluster.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from zernike3d.scheduling import nodes as slurm_nodes
from zernike3d.stages import profile

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tools" / "slurm_cluster.sh"
GPU_TYPE = "testgpu"


# --- the profile (no cluster needed) -----------------------------------------------


def test_shipped_profile_is_the_rendering_of_the_shipped_site_file():
    path, site = profile.load_site(REPO / "config" / "slurm-site.yaml")
    expected = profile.render_profile(site, source="config/slurm-site.yaml")
    assert (REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text() == expected


def test_install_puts_the_profile_where_snakemake_finds_it(tmp_path, monkeypatch):
    from snakemake.cli import get_profile_dir

    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"partition": "cpu", "gpu_partition": "gpu", "account": "proj42",
                                    "gpu_model": "a100", "max_runtime": 2880, "max_threads": 32,
                                    "query_nodes": False}))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    run = subprocess.run([sys.executable, "-m", "zernike3d", "profile", "install", "--site", str(site)],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    installed = tmp_path / "xdg" / "snakemake" / "slurm" / "config.yaml"
    assert installed.is_file()
    text = yaml.safe_load(installed.read_text())
    assert text["executor"] == "slurm"
    assert text["slurm-status-command"] == "squeue"
    assert text["default-resources"]["slurm_partition"] == "cpu"
    assert text["default-resources"]["slurm_account"] == "proj42"
    assert text["config"] == {"slurm_partition": "cpu", "slurm_gpu_partition": "gpu",
                              "slurm_gpu_model": "a100", "slurm_max_runtime": 2880}
    assert "slurm-no-account" not in text
    assert text["max-threads"] == 32
    # Snakemake itself resolves `--profile slurm` to it (cwd first, then XDG_CONFIG_HOME)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    import snakemake.common

    monkeypatch.setattr(snakemake.common, "APPDIRS", None)
    found = get_profile_dir("slurm")
    assert found is not None and Path(found[1]).resolve() == installed.resolve()
    # a second install of a different site refuses without --force
    site.write_text(yaml.safe_dump({"partition": "other", "query_nodes": False}))
    again = subprocess.run([sys.executable, "-m", "zernike3d", "profile", "install", "--site", str(site)],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr


def test_a_wrong_site_key_is_named(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("partiton: cpu\n")
    run = subprocess.run([sys.executable, "-m", "zernike3d", "profile", "show", "--site", str(site)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert "unknown key 'partiton'" in run.stderr


def test_gpu_count_reads_sinfo_gres():
    assert slurm_nodes.gpu_count("(null)") == 0
    assert slurm_nodes.gpu_count("gpu:a100:4(S:0-1),shard:8") == 4
    assert slurm_nodes.gpu_count("gpu:a100:4,gpu:v100:2", "v100") == 2
    assert slurm_nodes.gpu_count("gpu:2") == 2 and slurm_nodes.gpu_count("gpu:2", "a100") == 0


def test_node_types_go_into_the_profile():
    """The partitions' node types (as install reads them with sinfo) become the workflow's
    slurm_nodes/slurm_gpu_nodes and, without max_threads, Snakemake's max-threads."""
    _, site = profile.load_site(REPO / "config" / "slurm-site.yaml")
    nodes = {"slurm_nodes": [{"cpus": 2, "mem_mb": 7000, "gpus": 0}, {"cpus": 8, "mem_mb": 64000, "gpus": 0}],
             "slurm_gpu_nodes": [{"cpus": 16, "mem_mb": 128000, "gpus": 4}]}
    text = yaml.safe_load(profile.render_profile(site, nodes=nodes))
    assert text["max-threads"] == 16
    assert text["config"]["slurm_nodes"] == "2:7000:0,8:64000:0"
    assert text["config"]["slurm_gpu_nodes"] == "16:128000:4"


def test_node_types_round_trip_through_their_text():
    """What `zernike3d profile install` writes into the profile is what the workflow reads back."""
    types = [{"cpus": 2, "mem_mb": 7000, "gpus": 0}, {"cpus": 16, "mem_mb": 128000, "gpus": 4}]
    assert slurm_nodes.node_types_from_text(slurm_nodes.node_types_text(types)) == types
    assert slurm_nodes.node_types_from_text(slurm_nodes.node_types_text([])) == []


def test_jobs_are_fitted_to_the_nodes():
    from zernike3d.scheduling.nodes import fit_to_nodes

    nodes = [{"cpus": 2, "mem_mb": 7000, "gpus": 0}, {"cpus": 8, "mem_mb": 4000, "gpus": 1}]
    assert fit_to_nodes(2, 6000, 0, nodes) == 6000
    assert fit_to_nodes(4, 3000, 1, nodes) == 3000
    assert fit_to_nodes(8, 5000, 0, []) == 5000  # nodes unknown: as asked
    with pytest.raises(ValueError, match=r"needs 6000 MB of memory, but the nodes with 4 CPUs have at most 4000 MB"):
        fit_to_nodes(4, 6000, 0, nodes)
    with pytest.raises(ValueError, match=r"needs 16 CPUs, but no node offers that"):
        fit_to_nodes(16, 100, 0, nodes)
    with pytest.raises(ValueError, match=r"needs 2 CPUs and 1 GPU, but no node offers that"):
        fit_to_nodes(2, 100, 1, nodes[:1])
    assert fit_to_nodes(2, 2 * 5000, 0, nodes, attempt=2) == 7000  # a retry gets the largest node


# --- the cluster ----------------------------------------------------------------------


#: the SLURM cluster tests run only when this is 1 (README, "Tests"): they start daemons and
#: need slurm-wlm and munge installed (`bash tools/slurm_cluster.sh install`; .ci/run does both)
OPT_IN = "ZERNIKE3D_TEST_SLURM"
STATE = {}


def _cluster(*args, timeout=120):
    env = dict(os.environ, ZERNIKE3D_SLURM_DIR=str(STATE["dir"]))
    return subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A single-node cluster whose state, munge key and socket and fake GPU all live in
    this test's temporary folder; nothing is installed here."""
    if os.environ.get(OPT_IN) != "1":
        pytest.skip(f"SLURM cluster tests run when asked: {OPT_IN}=1, with slurm-wlm installed "
                    "(bash tools/slurm_cluster.sh install)")
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (slurmctld, slurmd, munged, /etc/slurm)")
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        pytest.skip("slurm-wlm/munge are not installed (bash tools/slurm_cluster.sh install; .ci/run does)")
    STATE["dir"] = tmp_path_factory.mktemp("slurm")
    started = _cluster("start", "--gpus", "1", "--gpu-type", GPU_TYPE)
    if started.returncode != 0:
        _cluster("stop")
        pytest.skip(f"could not start the single-node SLURM cluster: {started.stderr.strip()[-1500:]}")
    yield
    stopped = _cluster("stop")
    assert stopped.returncode == 0, stopped.stderr


def job_table():
    """[{id, state, name, comment, tres}] of every job slurmctld still knows (MinJobAge 300 s)."""
    out = subprocess.run(["squeue", "--states=all", "--noheader", "-O", "JobID:|,State:|,Name:|,Comment:|,tres-alloc:|,tres-per-job:"],
                         capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 6:
            jobs.append(dict(zip(("id", "state", "name", "comment", "tres", "tres_per_job"), parts)))
    return jobs


def test_slurm_sbatch_gpu_job(slurm_cluster, tmp_path):
    """The cluster itself: a batch job asking for the fake GPU runs, and its srun step too."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\nsrun bash -c 'echo step CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES'\n")
    out = tmp_path / "job.out"
    job = subprocess.run(["sbatch", "--parsable", f"--gpus={GPU_TYPE}:1", "--mem", "100", "-t", "2",
                          "-o", str(out), str(script)], capture_output=True, text=True, check=True).stdout.strip()
    deadline = time.time() + 60
    state = ""
    while time.time() < deadline:
        state = subprocess.run(["squeue", "--states=all", "-h", "-j", job, "-o", "%T"],
                               capture_output=True, text=True).stdout.strip()
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            break
        time.sleep(0.5)
    assert state == "COMPLETED", (state, out.read_text() if out.exists() else "")
    assert "step CUDA_VISIBLE_DEVICES=0" in out.read_text()


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """`snakemake --profile slurm` on the .test configuration, from a fresh copy of the repository."""
    from test_workflow import absolute_test_config  # noqa: E402 (tests/ is on sys.path under pytest)

    shared = REPO.parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip(f"real test data not found at {shared}")
    root = tmp_path_factory.mktemp("slurm")
    repo = root / "repo"
    for part in ("workflow", "zernike3d", "config", "envs"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    config = absolute_test_config(shared)
    # more threads than the node's CPUs (the default 4): the profile must cap them, or the
    # multi-threaded jobs would stay pending forever
    config["threads"] = 4 * os.cpu_count()
    (repo / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    site = root / "site.yaml"
    # MinJobAge of the test cluster is 300 s >= 3 x 8 s: squeue sees finished jobs. No
    # max_threads: install reads the node's CPUs, memory and GPUs with sinfo
    site.write_text(yaml.safe_dump({"gpu_model": GPU_TYPE, "init_seconds_before_status_checks": 8,
                                    "latency_wait": 5, "jobs": 4, "retries": 0, "max_runtime": 30}))
    env = dict(os.environ, XDG_CONFIG_HOME=str(root / "xdg"))
    env.pop("SLURM_JOB_ID", None)
    install = subprocess.run([sys.executable, "-m", "zernike3d", "profile", "install", "--site", str(site)],
                             cwd=repo, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    # slurmctld keeps finished jobs for MinJobAge, and across a restart from its saved
    # state: only the jobs this run submits are this run's
    earlier = {j["id"] for j in job_table()}
    started = time.time()
    # exactly what a user types, from the repository
    run = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=900)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    installed = yaml.safe_load((root / "xdg" / "snakemake" / "slurm" / "config.yaml").read_text())
    jobs = [j for j in job_table() if j["id"] not in earlier]
    return {"repo": repo, "output": output, "seconds": time.time() - started, "jobs": jobs,
            "profile": installed, "env": env}


def test_slurm_run_completes(slurm_run):
    repo, output = slurm_run["repo"], slurm_run["output"]
    assert "Using profile slurm" in output or "executor: slurm" in output.lower() or "SLURM run ID" in output, output[-3000:]
    for dataset in ("job3dva", "hand"):
        for f in ("moments.npz", "invariants.csv", "maps/index.csv", "qc/fsc.png"):
            assert (repo / "results" / dataset / f).is_file(), (dataset, f)
    assert (repo / "results" / "job3dva" / "particle_invariants.zarr" / "zarr.json").is_file()
    print(f"\nsnakemake --profile slurm on .test: {slurm_run['seconds']:.0f} s")


def test_every_job_went_through_slurm(slurm_run):
    """Every job of the .test workflow ran in a SLURM job but the target rule `all` and the
    local rule `example_job`: the short rules of a dataset in one group job each
    (zernike3d.scheduling.policy; SLURM's comment names the group and its rules), with
    decompose of a small box on the CPU in `prepare`; decompose and reconstruct that may
    use a GPU in jobs of their own."""
    ours = [j for j in slurm_run["jobs"] if j["comment"].startswith("rule_")]
    submitted = sorted(j["comment"] for j in ours)
    assert submitted == sorted([
        "rule_prepare_job3dva_basis_import_data_preprocess",
        "rule_decompose_wildcards_job3dva",
        "rule_reconstruct_wildcards_job3dva",  # gpu: always, on the fake GPU
        "rule_finish_job3dva_invariants_qc",
        "rule_prepare_hand_basis_decompose_import_data_preprocess",  # a small box on the CPU
        # three parts that do not depend on each other, one job (group-components)
        "rule_finish_hand_invariants_single_qc_single_reconstruct",
    ]), submitted
    assert all(j["state"] == "COMPLETED" for j in ours), [(j["comment"], j["state"]) for j in ours]
    assert (slurm_run["repo"] / "results" / "job3dva" / "example_job").is_dir()  # made on the submitting host


def test_the_run_prints_no_warning_of_ours(slurm_run):
    """Snakemake's default disk request (an expression of the input sizes) is replaced by
    the profile's, so Snakemake no longer leaves a coroutine unawaited."""
    assert "was never awaited" not in slurm_run["output"], slurm_run["output"][-3000:]


def test_gpu_rules_were_scheduled_on_the_gpu(slurm_run):
    ours = [j for j in slurm_run["jobs"] if j["comment"].startswith("rule_")]
    gpu_jobs = {j["comment"] for j in ours if "gpu" in (j["tres"] + j["tres_per_job"])}
    expected = {f"rule_{rule}_wildcards_job3dva" for rule in ("decompose", "reconstruct")}
    assert gpu_jobs == expected, [(j["comment"], j["tres"], j["tres_per_job"]) for j in ours]


def test_jobs_given_an_unusable_gpu_say_so_and_run_on_the_cpu(slurm_run):
    for rule in ("decompose", "reconstruct"):
        log = (slurm_run["repo"] / "logs" / "job3dva" / f"{rule}.log").read_text()
        fallback = [line for line in log.splitlines() if "granted but cannot be used" in line]
        assert len(fallback) == 1 and fallback[0].endswith("running on the CPU"), log
        assert "plan: cpu-" in log


def test_install_read_the_nodes_with_sinfo(slurm_run):
    cpus, mem_mb, gpus = map(int, slurm_run["profile"]["config"]["slurm_nodes"].split(":"))
    assert cpus == os.cpu_count() and gpus == 1 and mem_mb > 1000, (cpus, mem_mb, gpus)
    assert slurm_run["profile"]["max-threads"] == os.cpu_count()


def test_no_job_asked_for_more_cpus_than_the_node_has(slurm_run):
    ours = [j for j in slurm_run["jobs"] if j["comment"].startswith("rule_")]
    cpus = {j["comment"]: int(j["tres"].split("cpu=")[1].split(",")[0]) for j in ours if "cpu=" in j["tres"]}
    assert len(cpus) == len(ours) and max(cpus.values()) == os.cpu_count(), cpus


def test_account_guessing_is_explained(slurm_run):
    """snakemake-executor-plugin-slurm 2.8.0 ignores slurm-no-account and guesses an
    account with sacct; the profile says so where the flag is set."""
    text = (Path(slurm_run["env"]["XDG_CONFIG_HOME"]) / "snakemake" / "slurm" / "config.yaml").read_text()
    assert "declares this flag but never reads it" in text


def test_a_job_that_fits_no_node_stops_the_run_with_one_line(slurm_run):
    """`snakemake --profile slurm -n` with a memory override larger than the node: the
    rule and dataset named in one line, before anything is submitted."""
    repo = slurm_run["repo"]
    config_file = repo / "config" / "config.yaml"
    original = config_file.read_text()
    config = yaml.safe_load(original)
    node_mb = int(slurm_run["profile"]["config"]["slurm_nodes"].split(":")[1])
    config["resources"] = {"basis": {"mem_mb": 2 * node_mb, "runtime": 10}}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        run = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-n"], cwd=repo,
                             env=slurm_run["env"], capture_output=True, text=True, timeout=300)
    finally:
        config_file.write_text(original)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]
    lines = [line for line in output.splitlines() if "cannot run on this cluster" in line]
    assert lines == [f"the basis job of datasets.job3dva cannot run on this cluster: needs {2 * node_mb} MB of memory, "
                     f"but the nodes with {os.cpu_count()} CPUs have at most {node_mb} MB "
                     f"(nodes: {os.cpu_count()} CPUs, {node_mb} MB, 1 GPU)"], output[-3000:]
