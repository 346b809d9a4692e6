# Shared helpers: the configuration check (zernike3d/workflow_config.py), per-dataset
# settings, the stage command, and the resources (threads, memory, run time, GPU) of
# every rule.

import functools
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

REPO = Path(workflow.basedir).resolve().parent

# The rules run the zernike3d of this checkout (the one the workflow belongs to), not
# whatever version happens to be installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from zernike3d import workflow_config  # noqa: E402
from zernike3d.scheduling.nodes import fit_to_nodes, node_types_from_text  # noqa: E402
from zernike3d.scheduling.resources import rule_resources  # noqa: E402
from zernike3d.workflow_config import dataset_order  # noqa: E402


def config_error(*lines):
    """Stop before any job with ``lines`` (one per problem, each naming its key) and exit
    status 1: raising would add Snakemake's traceback lines into this file."""
    for line in lines:
        print(line, file=sys.stderr)
    sys.exit(1)


# the whole config checked (and its defaults filled in) before any job runs: see
# zernike3d/workflow_config.py
try:
    INPUT_FACTS = workflow_config.check_config(config, workflow.configfiles)
except workflow_config.ConfigError as err:
    config_error(*err.lines)

DATASETS = config["datasets"]


def _input_facts(name):
    """``(box, components, particles, voxel size in Å)`` of a dataset's input, read by
    the config check; each None where unknown."""
    return INPUT_FACTS[name]


def has_particles(name):
    """Does this dataset have 3DVA particles (and are per-particle results wanted)?"""
    return workflow_config.has_particles(DATASETS[name])


def _names_regex(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


PARTICLE_DATASETS = [n for n in DATASETS if has_particles(n)]
MAP_DATASETS = [n for n in DATASETS if not has_particles(n)]


wildcard_constraints:
    dataset=_names_regex(list(DATASETS)),


def settings(wildcards_or_name):
    """The dataset's settings with the global threads/gpu/limits resolved."""
    name = getattr(wildcards_or_name, "dataset", wildcards_or_name)
    d = dict(DATASETS[name])
    d["threads"] = d.get("threads") or config["threads"]
    d["gpu"] = config["gpu"] if d.get("gpu") is None else d["gpu"]
    d["max_runtime"] = config.get("slurm_max_runtime")
    return d


# --- the command that every rule runs ----------------------------------------------


def _uses_conda():
    try:
        from snakemake.settings.types import DeploymentMethod

        return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    except Exception:
        return False


# Every rule runs one `zernike3d <stage> ...` command. In the job's shell, `zernike3d` is
# this checkout's package run by: with --sdm conda, the environment's python
# (envs/*.yaml); otherwise the interpreter that runs Snakemake; through
# zernike3d.measured.run_measured, which ends the log with the job's exact peak memory. (The prefix is formatted
# like the command, hence the doubled braces.) The multi-threaded rules set
# NUMBA_NUM_THREADS/OMP_NUM_THREADS to their threads, so that numba and BLAS use the
# job's CPUs, not every core of the node.
PYTHON = "python" if _uses_conda() else shlex.quote(sys.executable)
shell.prefix(
    "set -euo pipefail; "
    f"export PYTHONPATH={shlex.quote(str(REPO))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f'zernike3d() {{{{ {PYTHON} -m zernike3d.measured run "$@"; }}}}; '
)


def conda_env(gpu_capable=False):
    """envs/*.yaml for --sdm conda: the CuPy one for GPU-capable rules when a GPU is asked for."""

    def choose(wildcards):
        gpu = gpu_capable and settings(wildcards)["gpu"]
        return str(
            REPO / "envs" / ("zernike3d-gpu.yaml" if gpu else "zernike3d-cpu.yaml")
        )

    return choose


def opt(flag, value):
    """``--flag value`` (quoted) or nothing when value is None/False/empty."""
    if value is None or value is False or value == [] or value == "":
        return ""
    if value is True:
        return flag
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return f"{flag} {shlex.quote(str(value))}"


def order_args(wildcards):
    """``--order N``, or ``--resolution Å`` (the stage picks the order from the geometry)."""
    d = settings(wildcards)
    return opt("--resolution", d["resolution"]) or opt("--order", d["order"])


def geometry_args(wildcards):
    d = settings(wildcards)
    return " ".join(
        filter(None, [opt("--radius", d["radius"]), opt("--center", d["center"])])
    )


# --- resources ----------------------------------------------------------------------

#: stages whose code can run on a GPU (CuPy): only these ever request one
GPU_STAGES = ("decompose", "reconstruct")
_SINGLE_THREADED = ("example", "import", "preprocess", "paths")


def node_types(gpu=False):
    """The node types ([{cpus, mem_mb, gpus}]) of the partition a job goes to: the GPU
    partition's for a job that asks for a GPU, when it is another partition. Written into
    the SLURM profile by `zernike3d profile install` (sinfo) as "cpus:mem_mb:gpus,...";
    [] when unknown (local runs)."""
    return node_types_from_text(
        (gpu and config.get("slurm_gpu_nodes")) or config.get("slurm_nodes") or ""
    )


def _may_use_gpu(stage, wildcards):
    return stage in GPU_STAGES and settings(wildcards)["gpu"] in (True, "always")


def rule_threads(stage):
    """A rule's threads: the stage's override, 1, or the dataset's threads, capped to the
    CPUs of the largest node of each partition the job may go to (a job that asks for
    more CPUs than any node has stays pending forever)."""

    def threads(wildcards):
        override = (config["resources"].get(stage) or {}).get("threads")
        wanted = override or (
            1 if stage in _SINGLE_THREADED else settings(wildcards)["threads"]
        )
        partitions = [node_types(False)]
        if _may_use_gpu(stage, wildcards):
            partitions.append(node_types(True))
        caps = [max(n["cpus"] for n in types) for types in partitions if types]
        return min([wanted] + caps)

    return threads


def _estimate(stage, wildcards, path, attempt):
    d = settings(wildcards)
    d["threads"] = rule_threads(stage)(wildcards)
    d["gpu_memory_gb"] = config.get("gpu_memory_gb")
    d["slurm_gpu_model"] = config.get("slurm_gpu_model")
    gpu_nodes = [
        n for n in node_types(True) if n["cpus"] >= d["threads"] and n["gpus"] >= 1
    ]
    cpu_nodes = [n for n in node_types(False) if n["cpus"] >= d["threads"]]
    if node_types(True):  # plan for the nodes there are
        d["node_gpus"] = len(gpu_nodes)
        usable = gpu_nodes if (gpu_nodes and d["gpu"]) else cpu_nodes
        d["node_mem_mb"] = max((n["mem_mb"] for n in usable), default=None)
    order = (
        d["order"]
        if stage in ("example", "import", "preprocess")
        else dataset_order(d, path)
    )
    if stage == "reconstruct" and d["reconstruct"].get("order") is not None:
        order = d["reconstruct"]["order"]
    # the cluster subsets read the particles' .cs rows: their size counts
    if stage == "cluster" and path is not None:
        from zernike3d.scheduling.inputs import table_row_bytes

        d["table_row_bytes"] = table_row_bytes(
            path, clusters_of(wildcards.dataset).get("particles_cs")
        )
    override = config["resources"].get(stage) or {}
    if override.get("mem_mb") and override.get("runtime"):
        est = {
            "gpu": 1
        }  # no need to look at the input: a GPU when the dataset allows one
    else:
        try:
            est = rule_resources(stage, path, order, d)
        except ValueError as err:  # e.g. the planner: no placement fits the node
            raise WorkflowError(
                f"{stage} job of datasets.{wildcards.dataset}: {err}"
            ) from None
    mem_mb = override.get("mem_mb") or est["mem_mb"] * attempt  # more memory on a retry
    runtime = override.get("runtime") or est["runtime"] * attempt
    if d.get("max_runtime"):
        runtime = min(runtime, d["max_runtime"])
    gpu = stage in GPU_STAGES and (
        d["gpu"] == "always" or (d["gpu"] is True and est["gpu"])
    )
    try:
        mem_mb = fit_to_nodes(
            d["threads"], int(mem_mb), int(gpu), node_types(gpu), attempt
        )
    except ValueError as err:
        raise WorkflowError(
            f"the {stage} job of datasets.{wildcards.dataset} cannot run on this cluster: {err}"
        ) from None
    return {"mem_mb": int(mem_mb), "runtime": int(runtime), "gpu": int(gpu)}


def _check_against_nodes():
    """What is known before any job runs, checked against the SLURM partitions' nodes: a
    job that asks for a GPU whatever the plan (gpu: always) or a fixed memory
    (resources.<stage>.mem_mb) that no node offers stops the run (also `snakemake -n`).
    """
    if not (node_types(False) or node_types(True)):
        return
    for name in DATASETS:
        for stage in (
            ("example", "import", "preprocess", "basis")
            + GPU_STAGES
            + ("invariants", "qc")
        ):
            threads = rule_threads(stage)(name)
            gpu = int(stage in GPU_STAGES and settings(name)["gpu"] == "always")
            mem_mb = (config["resources"].get(stage) or {}).get("mem_mb") or 1
            try:
                fit_to_nodes(threads, mem_mb, gpu, node_types(gpu))
            except ValueError as err:
                config_error(
                    f"the {stage} job of datasets.{name} cannot run on this cluster: {err}"
                )


def max_memory_arg(wildcards, resources):
    """``--max-memory`` (GiB) of a transform job: its allocation, so that the job's own
    plan stays inside it (nothing while the allocation is still <TBD>, in a dry run)."""
    if not isinstance(resources.mem_mb, (int, float)):
        return ""
    return f"--max-memory {resources.mem_mb * 1e6 / 2**30:.3f}"


#: does any dataset ask for a GPU? If none does, no rule declares GPU resources at all
ANY_GPU = any(settings(name)["gpu"] for name in DATASETS)
_check_against_nodes()


def rule_resources_for(stage, input_key):
    """Resource callables for a rule of ``stage``, sized from ``input[input_key]``.

    ``mem_mb``/``runtime`` come from zernike3d.scheduling.resources.rule_resources (the input's box,
    volumes, particles, the order). Before the input exists they show as <TBD>.
    GPU-capable stages add ``gpu``/``gpu_model`` (and the GPU partition) only when the
    dataset's ``gpu`` is true.
    """

    def path_of(input):
        return input[input_key] if input_key is not None else None

    def estimate(wc, input, attempt):
        return _estimate(stage, wc, path_of(input), attempt)

    res = {
        "mem_mb": lambda wc, input, attempt: estimate(wc, input, attempt)["mem_mb"],
        "runtime": lambda wc, input, attempt: estimate(wc, input, attempt)["runtime"],
    }
    if stage in GPU_STAGES and ANY_GPU:
        res["gpu"] = lambda wc, input, attempt: estimate(wc, input, attempt)["gpu"]
        # without a GPU: 0, the value Snakemake gives a resource a rule does not declare,
        # so that a CPU job can join a group job of rules that declare none (a group's
        # string resources must agree); the SLURM plugin reads 0 as "not set"
        res["gpu_model"] = lambda wc, input, attempt: (
            (config.get("slurm_gpu_model") or "")
            if estimate(wc, input, attempt)["gpu"]
            else 0
        )
        if config.get("slurm_gpu_partition"):
            cpu_partition = config.get("slurm_partition") or 0
            res["slurm_partition"] = lambda wc, input, attempt: (
                config["slurm_gpu_partition"]
                if estimate(wc, input, attempt)["gpu"]
                else cpu_partition
            )
    return res


# --- SLURM job groups (ignored by local runs) ---------------------------------------
# On SLURM every job costs a submission and at least one status check (tens of seconds)
# on top of its stage's own start-up, more than the short stages take. The short rules
# of a dataset are therefore grouped into one submission each: `prepare` (import,
# preprocess, basis) and `finish` (invariants, qc, clusters, paths, and the maps of a
# small box on the CPU), each `group: "<step>_{dataset}"`; decompose, reconstruct at a
# large box or on a GPU, and compare stay jobs of their own. A group job asks for the
# most memory and CPUs of its members and the sum of their runtimes (Snakemake's group
# resources); the SLURM profile's `group-components` lets one `finish` job of a dataset
# span its parts that do not depend on each other, and its `cores` stacks them in series
# where side by side they would ask for more CPUs than a node has.

#: a reconstruct job (reconstruct, cluster_maps, path_maps) of a box up to this many
#: voxels after crop and bin runs in seconds on the CPU, so it joins its dataset's group
SHORT_RECONSTRUCT_MAX_BOX = 128


@functools.cache
def preprocessed_box(name):
    """The box (voxels) of a dataset's maps after crop and bin, from the input's header
    before any job runs; None when that is unknown (a WIGGLE bundle)."""
    box = _input_facts(name)[0]
    if box is None:
        return None
    p = DATASETS[name]["preprocess"]
    return (p.get("crop") or box) // p["bin"]


def reconstruct_group(wildcards):
    """The `group:` of a reconstruct job: its dataset's `finish` group when the box is
    small and it runs on the CPU, else none (a job of its own)."""
    box = preprocessed_box(wildcards.dataset)
    if (
        _may_use_gpu("reconstruct", wildcards)
        or box is None
        or box > SHORT_RECONSTRUCT_MAX_BOX
    ):
        return None
    return f"finish_{wildcards.dataset}"


# --- command-line arguments and inputs of the rules ---


def import_inputs(wildcards):
    d = DATASETS[wildcards.dataset]
    if d.get("example") is not None:
        return {"source": f"results/{wildcards.dataset}/example_job"}
    if d.get("job_dir"):
        # the files that import reads, not only the folder (whose time changes only when
        # a file is added or removed): a rewritten J42_particles.cs re-runs import
        from zernike3d.stages.import_data import job_files_read

        return {"source": d["job_dir"], "files": job_files_read(d["job_dir"])}
    if d.get("wiggle"):
        return {"source": d["wiggle"]}
    files = {"source": d["map"]}
    if d.get("components"):
        files["components"] = d["components"]
        files["particles"] = d["particles"]
    return files


# The params of the rules are functions of the wildcards (the dataset's settings) only,
# never of input/output: Snakemake's params rerun-trigger ignores params derived from
# input or output, so a changed setting would leave the earlier results in place.


def import_args(wildcards):
    d = DATASETS[wildcards.dataset]
    source = import_inputs(wildcards)
    if d.get("example") is not None or d.get("job_dir"):
        args = [opt("--job-dir", source["source"])]
    elif d.get("wiggle"):
        args = [opt("--wiggle", source["source"])]
    else:
        args = [opt("--map", source["source"])]
        if d.get("components"):
            args.append(
                "--components " + " ".join(shlex.quote(c) for c in source["components"])
            )
            args.append(opt("--particles", source["particles"]))
    args.append(opt("--apix", d.get("apix")))
    return " ".join(filter(None, args))


def preprocess_extra_inputs(wildcards):
    """Mask and marker files are inputs, so that changing them re-runs preprocess."""
    p = DATASETS[wildcards.dataset]["preprocess"]
    files = {}
    if p.get("mask") and p["mask"] != "sphere":
        files["mask"] = p["mask"]
    if isinstance(p.get("center"), str) and p["center"].endswith(".cmm"):
        files["markers"] = p["center"]
    return files


def preprocess_args(wildcards):
    p = DATASETS[wildcards.dataset]["preprocess"]
    args = [
        opt("--crop", p.get("crop")),
        opt("--center", p.get("center")),
        opt("--bin", p["bin"] if p["bin"] > 1 else None),
        opt("--mask", p.get("mask")),
        opt("--mask-radius", p.get("mask_radius")),
        opt("--mask-edge", p.get("mask_edge")),
    ]
    return " ".join(filter(None, args))


def basis_input(wildcards):
    """decompose reads the cached basis when the cache is switched on."""
    if config["basis_cache"]:
        return {"basis": f"results/{wildcards.dataset}/basis.json"}
    return {}


def invariants_particle_args(wildcards, input, output):
    if "particles" in output.keys():
        store = os.path.dirname(output.particles)
        return (
            f"--dataset {shlex.quote(input.data)} --particles-out {shlex.quote(store)}"
        )
    return ""


def reconstruct_args(wildcards):
    """What to reconstruct, from datasets.<name>.reconstruct (see config/README.md)."""
    r = settings(wildcards)["reconstruct"]
    args = [
        opt("--order", r.get("order")),
        opt("--box", r.get("box")),
        opt("--voxel-size", r.get("voxel_size")),
    ]
    if has_particles(wildcards.dataset):
        if r.get("series"):
            args += [
                opt("--series", r["series"]),
                opt("--percentiles", r["percentiles"]),
            ]
        args.append(opt("--kmeans", r.get("kmeans") or None))
        if r.get("particles"):
            args.append(
                "--particle " + " ".join(shlex.quote(str(p)) for p in r["particles"])
            )
    if r.get("latents"):
        # --latent=z0,z1: a first value that is negative must not read as an option
        args.extend(
            shlex.quote("--latent=" + ",".join(map(str, z))) for z in r["latents"]
        )
    args.append(map_extra_args(wildcards))  # --mapspace, --movie: rules/clusters.smk
    return " ".join(filter(None, args))


def qc_particle_args(wildcards, input):
    if "particle_invariants" in input.keys():
        return " ".join(
            [
                opt(
                    "--particle-invariants", os.path.dirname(input.particle_invariants)
                ),
                opt("--maps-index", os.path.join(input.maps, "index.csv")),
            ]
        )
    return ""


def qc_inputs(wildcards):
    files = {
        "data": f"results/{wildcards.dataset}/preprocessed.npz",
        "moments": f"results/{wildcards.dataset}/moments.npz",
    }
    if has_particles(wildcards.dataset):
        files["particle_invariants"] = (
            f"results/{wildcards.dataset}/particle_invariants.zarr/zarr.json"
        )
        files["maps"] = f"results/{wildcards.dataset}/maps"
    return files


# --- targets ------------------------------------------------------------------------


def dataset_targets(name):
    d = DATASETS[name]
    base = f"results/{name}"
    targets = [f"{base}/moments.npz", f"{base}/invariants.csv", f"{base}/maps"]
    if has_particles(name):
        targets.append(f"{base}/particle_invariants.zarr/zarr.json")
    if d.get("qc"):
        targets += qc_files(name)
    return targets


def qc_files(name):
    names = ("fsc.csv", "fsc_resolution.csv", "fsc.png", "maps.png", "invariants.png")
    files = [f"results/{name}/qc/{f}" for f in names]
    if has_particles(name):
        files += [
            f"results/{name}/qc/particle_invariants_pca.png",
            f"results/{name}/qc/series_maps.png",
        ]
    return files


def all_targets():
    return [t for name in DATASETS for t in dataset_targets(name)]


# --- QC report entries (rules/qc.smk) ---------------------------------------------


def qc_report(path, caption, figure):
    return report(
        f"results/{{dataset}}/qc/{path}",
        caption=f"../report/{caption}",
        category="{dataset}",
        subcategory="quality control",
        labels={"dataset": "{dataset}", "figure": figure},
    )


# --- clusters, subsets and paths (rules/clusters.smk) ------------------------------


def is_3dva(name):
    """Does the dataset have particles (a 3DVA job), whether or not per-particle
    invariants are computed?"""
    return workflow_config.is_3dva(DATASETS[name])


def clusters_of(name):
    """The dataset's clusters section; {} for a dataset without particles."""
    return workflow_config.clusters_of(DATASETS[name])


def cluster_datasets():
    return [n for n in DATASETS if clusters_of(n).get("k")]


def path_datasets():
    return [n for n in DATASETS if clusters_of(n).get("paths")]


def cluster_inputs(wildcards):
    files = {
        "data": f"results/{wildcards.dataset}/preprocessed.npz",
        "maps": f"results/{wildcards.dataset}/maps",
    }
    if clusters_of(wildcards.dataset).get("space") == "invariants":
        files["particle_invariants"] = (
            f"results/{wildcards.dataset}/particle_invariants.zarr/zarr.json"
        )
    if clusters_of(wildcards.dataset).get("particles_cs"):
        from zernike3d.io.cryosparc import passthrough_path

        cs = clusters_of(wildcards.dataset)["particles_cs"]
        files["particles_cs"] = [cs] + [str(p) for p in [passthrough_path(cs)] if p]
    return files


def cluster_args(wildcards):
    """Options of `zernike3d cluster` from datasets.<name>.clusters (wildcards only: see
    the note on params in inputs.smk)."""
    c = clusters_of(wildcards.dataset)
    args = [
        opt("--k", c["k"]),
        opt("--method", c["method"]),
        opt("--space", c["space"]),
    ]
    if c["space"] == "invariants":
        args.append(
            opt(
                "--particle-invariants",
                f"results/{wildcards.dataset}/particle_invariants.zarr",
            )
        )
    if c["export_subsets"]:
        args.append("--subsets")
    if c.get("bins"):
        args.append("--bins " + " ".join(shlex.quote(b) for b in c["bins"]))
    if c.get("ranges"):
        args.append("--range " + " ".join(shlex.quote(r) for r in c["ranges"]))
    args.append(opt("--particles-cs", c.get("particles_cs")))
    return " ".join(filter(None, args))


def path_args(wildcards):
    c = clusters_of(wildcards.dataset)
    args = [
        f"--between {shlex.quote(str(a))} {shlex.quote(str(b))}" for a, b in c["paths"]
    ]
    args += [
        opt("--frames", c["path_frames"]),
        opt("--neighbours", c["path_neighbours"]),
    ]
    if c["path_density"]:
        args.append("--density")
    return " ".join(filter(None, args))


def map_extra_args(wildcards):
    r = settings(wildcards)["reconstruct"]
    return " ".join(
        filter(
            None,
            [
                "--mapspace" if r.get("mapspace") else None,
                "--movie" if r.get("movie") else None,
            ],
        )
    )


def path_inputs(wildcards):
    files = {
        "data": f"results/{wildcards.dataset}/preprocessed.npz",
        "maps": f"results/{wildcards.dataset}/maps",
    }
    if clusters_of(wildcards.dataset).get("k"):
        files["centres"] = f"results/{wildcards.dataset}/clusters/centres.csv"
    return files


def cluster_targets():
    targets = []
    for name in cluster_datasets():
        targets += [
            f"results/{name}/clusters/populations.csv",
            f"results/{name}/clusters/latents.png",
        ]
        if clusters_of(name)["maps"]:
            targets.append(f"results/{name}/cluster_maps")
    for name in path_datasets():
        targets += [
            f"results/{name}/paths/paths.csv",
            f"results/{name}/paths/latents.png",
            f"results/{name}/path_maps",
        ]
    return targets


# --- scoring particles against models and maps (rules/match.smk) -------------------


def match_datasets():
    return [n for n in DATASETS if DATASETS[n].get("match")]


def match_inputs(wildcards):
    """The bundle, the moments and every query file (a changed query re-runs match)."""
    return {
        "data": f"results/{wildcards.dataset}/preprocessed.npz",
        "moments": f"results/{wildcards.dataset}/moments.npz",
        "queries": DATASETS[wildcards.dataset]["match"],
    }


def match_args(wildcards):
    """``--query`` files, and ``--subsets`` for a dataset whose particles came from a
    cryoSPARC table (not a WIGGLE bundle); ``clusters.particles_cs`` serves both stages.
    """
    d = DATASETS[wildcards.dataset]
    args = ["--query " + " ".join(shlex.quote(q) for q in d["match"])]
    if is_3dva(wildcards.dataset) and not d.get("wiggle"):
        args.append("--subsets")
        args.append(
            opt("--particles-cs", clusters_of(wildcards.dataset).get("particles_cs"))
        )
    return " ".join(filter(None, args))


def match_targets():
    return [
        f"results/{name}/match/{f}"
        for name in match_datasets()
        for f in ("scores.csv", "queries.csv", "scores.png")
    ]
