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
from zernike3d.scheduling import policy  # noqa: E402
from zernike3d.scheduling.policy import Site  # noqa: E402
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


# --- resources and SLURM groups: zernike3d.scheduling.policy ----------------------
# On SLURM every job costs a submission, a wait for its first status check and a
# Snakemake start-up inside the job, more than the short stages take. The short rules of
# a dataset are therefore grouped into one submission each: `prepare` (import,
# preprocess, basis, and decompose of a small box on the CPU) and `finish` (invariants,
# qc, clusters, paths, and the maps of a small box on the CPU); decompose and the maps at
# a large box or on a GPU, and compare, stay jobs of their own. A local run ignores
# groups. The profile's `group-components` lets one `finish` job span its parts that do
# not depend on each other.

# a cluster executor (SLURM) runs a Snakemake inside every job, which the job's memory
# must hold too: the submitting Snakemake (not local) and the one in the job (remote)
SITE = Site.from_config(config, in_jobs=not workflow.local_exec or workflow.remote_exec)


def rule_threads(stage):
    """A rule's ``threads:`` (zernike3d.scheduling.policy.rule_threads)."""
    return lambda wildcards: policy.rule_threads(stage, settings(wildcards), SITE)


def _job_resources(stage, wildcards, path, attempt):
    d = settings(wildcards)
    try:
        return policy.job_resources(
            stage,
            wildcards.dataset,
            d,
            path,
            lambda: dataset_order(d, path),
            attempt,
            SITE,
        )
    except ValueError as err:
        raise WorkflowError(str(err)) from None


def max_memory_arg(wildcards, resources):
    return policy.max_memory_arg(resources.mem_mb)


#: does any dataset ask for a GPU? If none does, no rule declares GPU resources at all
ANY_GPU = any(settings(name)["gpu"] for name in DATASETS)
for problem in policy.node_problems({n: settings(n) for n in DATASETS}, SITE):
    config_error(problem)


def rule_resources_for(stage, input_key):
    """A rule's ``resources:``, sized from ``input[input_key]`` (<TBD> before it exists);
    GPU-capable stages add the GPU resources when any dataset allows a GPU."""

    def estimate(wc, input, attempt):
        path = input[input_key] if input_key is not None else None
        return _job_resources(stage, wc, path, attempt)

    res = {
        "mem_mb": lambda wc, input, attempt: estimate(wc, input, attempt)["mem_mb"],
        "runtime": lambda wc, input, attempt: estimate(wc, input, attempt)["runtime"],
    }

    def gpu_resource(key):
        return lambda wc, input, attempt: policy.declared_gpu_resources(
            estimate(wc, input, attempt)["gpu"], SITE
        )[key]

    if stage in policy.GPU_STAGES and ANY_GPU:
        res.update(
            {key: gpu_resource(key) for key in policy.declared_gpu_resources(0, SITE)}
        )
    return res


@functools.cache
def preprocessed_box(name):
    return policy.preprocessed_box(_input_facts(name)[0], DATASETS[name]["preprocess"])


def transform_group(stage):
    """The ``group:`` of a decompose or reconstruct job (policy.transform_group)."""
    return lambda wc: policy.transform_group(
        stage, wc.dataset, preprocessed_box(wc.dataset), settings(wc)["gpu"]
    )


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
