"""The workflow's resource policy (zernike3d.scheduling.policy) and the header readers
of the estimates (zernike3d.scheduling.inputs), as plain functions: no Snakemake run."""

import numpy as np
import pytest

from zernike3d.scheduling import inputs, policy, resources
from zernike3d.scheduling.nodes import node_types_text

SMALL = {"cpus": 2, "mem_mb": 4000, "gpus": 0}
LARGE = {"cpus": 16, "mem_mb": 64000, "gpus": 0}
GPU_NODE = {"cpus": 8, "mem_mb": 128000, "gpus": 4}


def settings(**changes):
    """A dataset's settings as the workflow resolves them (global threads/gpu filled in)."""
    d = {"threads": 4, "gpu": False, "order": 20, "resolution": None, "radius": "inscribed", "center": None,
         "reconstruct": {}, "clusters": {}, "preprocess": {"bin": 1}, "max_runtime": None}
    d.update(changes)
    return d


@pytest.fixture
def bundle(tmp_path):
    """A dataset bundle of 3 volumes of 24^3 voxels and 500 particles."""
    path = tmp_path / "preprocessed.npz"
    np.savez(path, maps=np.zeros((3, 24, 24, 24), np.float32), latents=np.zeros((500, 2), np.float32),
             voxel_size=np.float64(2.5), origin=np.zeros(3))
    return str(path)


def test_site_reads_the_node_types_the_profile_writes():
    config = {"resources": {"qc": {"mem_mb": 900}}, "slurm_nodes": node_types_text([SMALL, LARGE]),
              "slurm_gpu_nodes": node_types_text([GPU_NODE]), "slurm_gpu_model": "a100"}
    site = policy.Site.from_config(config)
    assert list(site.cpu_nodes) == [SMALL, LARGE] and list(site.gpu_nodes) == [GPU_NODE]
    assert site.nodes(True) == site.gpu_nodes and site.nodes(False) == site.cpu_nodes
    assert site.override("qc") == {"mem_mb": 900} and site.override("basis") == {}
    assert policy.Site.from_config({}).nodes(True) == ()
    assert policy.Site.from_config({}, in_jobs=True).job_snakemake_mb == policy.SNAKEMAKE_IN_JOB_MB
    assert policy.Site.from_config({}).job_snakemake_mb == 0


def test_threads_follow_the_stage_the_override_and_the_nodes():
    local = policy.Site()
    assert policy.rule_threads("decompose", settings(), local) == 4
    assert policy.rule_threads("import", settings(), local) == 1  # single-threaded
    assert policy.rule_threads("qc", settings(), policy.Site(overrides={"qc": {"threads": 3}})) == 3
    small = policy.Site(cpu_nodes=(SMALL,), gpu_nodes=(GPU_NODE,))
    assert policy.rule_threads("decompose", settings(threads=32), small) == 2  # no node has more
    # a GPU job may also go to the GPU partition: capped by both
    assert policy.rule_threads("decompose", settings(threads=32, gpu=True), small) == 2
    gpu_only = policy.Site(gpu_nodes=(GPU_NODE,))
    assert policy.rule_threads("decompose", settings(threads=32, gpu=True), gpu_only) == 8
    assert policy.rule_threads("invariants", settings(threads=32, gpu=True), gpu_only) == 32


def test_job_resources_grow_with_the_attempt_and_obey_the_overrides(bundle):
    local = policy.Site()
    first = policy.job_resources("invariants", "a", settings(), bundle, lambda: 20, 1, local)
    assert first == resources.rule_resources("invariants", bundle, 20, dict(settings(), threads=4))
    second = policy.job_resources("invariants", "a", settings(), bundle, lambda: 20, 2, local)
    assert second["mem_mb"] == 2 * first["mem_mb"] and second["runtime"] == 2 * first["runtime"]
    fixed = policy.Site(overrides={"invariants": {"mem_mb": 777, "runtime": 5}})
    assert policy.job_resources("invariants", "a", settings(), bundle, lambda: 20, 2, fixed) == \
        {"mem_mb": 777, "runtime": 5, "gpu": 0}
    capped = policy.job_resources("invariants", "a", settings(max_runtime=3), bundle, lambda: 20, 1, local)
    assert capped["runtime"] == 3
    # the order is asked for only by the stages that depend on it
    def never():
        pytest.fail("preprocess does not depend on the order")

    policy.job_resources("preprocess", "a", settings(), bundle, never, 1, local)


def test_a_slurm_job_holds_its_snakemake_too(bundle):
    local = policy.job_resources("basis", "a", settings(), bundle, lambda: 20, 1, policy.Site())
    slurm = policy.job_resources("basis", "a", settings(), bundle, lambda: 20, 1, policy.Site(job_snakemake_mb=160))
    assert slurm["mem_mb"] == local["mem_mb"] + 160
    retry = policy.job_resources("basis", "a", settings(), bundle, lambda: 20, 2, policy.Site(job_snakemake_mb=160))
    assert retry["mem_mb"] == 2 * slurm["mem_mb"]
    compare = policy.compare_resources([bundle], 1, policy.Site())
    assert policy.compare_resources([bundle], 1, policy.Site(job_snakemake_mb=160))["mem_mb"] == compare["mem_mb"] + 160


def test_job_resources_before_the_input_exists_and_on_nodes_too_small(tmp_path, bundle):
    missing = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError) as err:
        policy.job_resources("basis", "a", settings(), missing, lambda: 20, 1, policy.Site())
    assert err.value.filename == missing
    tiny = policy.Site(cpu_nodes=({"cpus": 4, "mem_mb": 10, "gpus": 0},))
    with pytest.raises(ValueError, match=r"the basis job of datasets\.a cannot run on this cluster"):
        policy.job_resources("basis", "a", settings(), bundle, lambda: 20, 1, tiny)


def test_gpu_only_for_the_gpu_stages_and_as_the_dataset_allows(bundle):
    site = policy.Site(overrides={s: {"mem_mb": 100, "runtime": 5} for s in ("decompose", "invariants")})
    assert policy.job_resources("decompose", "a", settings(gpu="always"), bundle, lambda: 20, 1, site)["gpu"] == 1
    assert policy.job_resources("decompose", "a", settings(gpu=False), bundle, lambda: 20, 1, site)["gpu"] == 0
    assert policy.job_resources("invariants", "a", settings(gpu="always"), bundle, lambda: 20, 1, site)["gpu"] == 0
    # without a GPU in its plan, a job declares gpu_model 0 (joins CPU groups) and the CPU partition
    partitions = policy.Site(gpu_model="a100", partition="cpu", gpu_partition="gpu")
    assert policy.declared_gpu_resources(1, partitions) == {"gpu": 1, "gpu_model": "a100", "slurm_partition": "gpu"}
    assert policy.declared_gpu_resources(0, partitions) == {"gpu": 0, "gpu_model": 0, "slurm_partition": "cpu"}
    assert policy.declared_gpu_resources(0, policy.Site()) == {"gpu": 0, "gpu_model": 0}


def test_node_problems_name_each_job_that_fits_no_node():
    site = policy.Site(overrides={"qc": {"mem_mb": 9000}}, cpu_nodes=(SMALL,))
    problems = policy.node_problems({"a": settings(), "b": settings()}, site)
    assert problems == [f"the qc job of datasets.{n} cannot run on this cluster: needs 9000 MB of memory, but the "
                        f"nodes with 2 CPUs have at most 4000 MB (nodes: 2 CPUs, 4000 MB, 0 GPUs)" for n in "ab"]
    always = policy.node_problems({"a": settings(gpu="always")}, site)
    assert [p.split(" cannot")[0] for p in always] == ["the decompose job of datasets.a",
                                                      "the reconstruct job of datasets.a", "the qc job of datasets.a"]
    assert policy.node_problems({"a": settings()}, policy.Site(overrides={"qc": {"mem_mb": 9000}})) == []


def test_small_transforms_on_the_cpu_join_their_datasets_group_jobs():
    assert policy.preprocessed_box(256, {"crop": 192, "bin": 2}) == 96
    assert policy.preprocessed_box(256, {"bin": 1}) == 256
    assert policy.preprocessed_box(None, {"bin": 2}) is None
    assert policy.transform_group("decompose", "a", 96, False) == "prepare_a"
    assert policy.transform_group("reconstruct", "a", policy.SHORT_TRANSFORM_MAX_BOX, True) is None  # may use a GPU
    assert policy.transform_group("reconstruct", "a", policy.SHORT_TRANSFORM_MAX_BOX, False) == "finish_a"
    assert policy.transform_group("reconstruct", "a", policy.SHORT_TRANSFORM_MAX_BOX + 1, False) is None
    assert policy.transform_group("decompose", "a", None, False) is None  # unknown box: a job of its own


def test_max_memory_is_the_allocation_in_gib():
    assert policy.max_memory_arg(2**30 / 1e6) == "--max-memory 1.000"
    assert policy.max_memory_arg("<TBD>") == ""


def test_compare_grows_with_the_particles(tmp_path, bundle):
    more = tmp_path / "more.npz"
    np.savez(more, maps=np.zeros((3, 24, 24, 24), np.float32), latents=np.zeros((2_000_000, 2), np.float32),
             voxel_size=np.float64(2.5))
    small, large = (policy.compare_resources([p], 1, policy.Site()) for p in (bundle, str(more)))
    assert small["mem_mb"] < large["mem_mb"] and small["runtime"] < large["runtime"]
    assert policy.compare_resources([bundle], 2, policy.Site())["mem_mb"] == 2 * small["mem_mb"]


def test_npz_headers_are_read_as_numpy_writes_them(tmp_path):
    path = tmp_path / "d.npz"
    arrays = {"maps": np.zeros((2, 5, 5, 5), np.float32), "latents": np.zeros((9, 2), np.float64),
              "voxel_size": np.float32(1.25), "name": np.array("x")}
    np.savez(path, **arrays)
    shapes = inputs.npz_member_shapes(path)
    assert shapes == {key: (value.shape, value.dtype) for key, value in arrays.items()}
    assert inputs.npz_scalar(path, "voxel_size") == 1.25
    assert inputs.npz_scalar(path, "name", default=7.0) == 7.0  # not a float
    assert inputs.npz_scalar(path, "absent", default=3.0) == 3.0


def test_scheduling_imports_nothing_above_it():
    """zernike3d/scheduling may import maths, io and analysis, never stages or cli."""
    import ast
    from pathlib import Path

    package = Path(policy.__file__).parent
    for module in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("zernike3d.stages", "zernike3d.cli")), f"{module.name} imports {name}"
