# Shared helpers: the configuration check (zernike3d/workflow_config.py), per-dataset
# settings, the stage command, the resources (threads, memory, run time, GPU) of every
# rule (zernike3d/scheduling/policy.py), and the rules' arguments and inputs
# (zernike3d/workflow_jobs.py).

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
from zernike3d import workflow_jobs as jobs  # noqa: E402
from zernike3d.scheduling import policy  # noqa: E402
from zernike3d.scheduling.policy import Site  # noqa: E402
from zernike3d.workflow_config import dataset_order  # noqa: E402
from zernike3d.workflow_jobs import opt  # noqa: E402


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


def _names_regex(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


#: the datasets with 3DVA particles and per-particle results, and the others
PARTICLE_DATASETS = [n for n in DATASETS if workflow_config.has_particles(DATASETS[n])]
MAP_DATASETS = [n for n in DATASETS if n not in PARTICLE_DATASETS]


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
    return policy.preprocessed_box(INPUT_FACTS[name].box, DATASETS[name]["preprocess"])


def transform_group(stage):
    """The ``group:`` of a decompose or reconstruct job (policy.transform_group)."""
    return lambda wc: policy.transform_group(
        stage, wc.dataset, preprocessed_box(wc.dataset), settings(wc)["gpu"]
    )


# --- command-line arguments and inputs of the rules: zernike3d/workflow_jobs.py ---
# The params of the rules are functions of the wildcards (the dataset's settings) only,
# never of input/output: Snakemake's params rerun-trigger ignores params derived from
# input or output, so a changed setting would leave the earlier results in place.


def of_dataset(function):
    """``function(name, settings)`` of zernike3d.workflow_jobs as a function of the wildcards."""
    return lambda wildcards: function(wildcards.dataset, DATASETS[wildcards.dataset])


import_inputs = of_dataset(jobs.import_inputs)
import_args = of_dataset(jobs.import_args)
preprocess_extra_inputs = of_dataset(jobs.preprocess_inputs)
preprocess_args = of_dataset(jobs.preprocess_args)
order_args = of_dataset(jobs.order_args)
geometry_args = of_dataset(jobs.geometry_args)
reconstruct_args = of_dataset(jobs.reconstruct_args)
map_extra_args = of_dataset(jobs.map_extra_args)
qc_inputs = of_dataset(jobs.qc_inputs)
cluster_inputs = of_dataset(jobs.cluster_inputs)
cluster_args = of_dataset(jobs.cluster_args)
path_inputs = of_dataset(jobs.path_inputs)
path_args = of_dataset(jobs.path_args)
match_inputs = of_dataset(jobs.match_inputs)
match_args = of_dataset(jobs.match_args)


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


def qc_particle_args(wildcards, input):
    if "particle_invariants" in input.keys():
        store = os.path.dirname(input.particle_invariants)
        index = os.path.join(input.maps, "index.csv")
        return f"{opt('--particle-invariants', store)} {opt('--maps-index', index)}"
    return ""


# --- QC report entries (rules/qc.smk) ---------------------------------------------


def qc_report(path, caption, figure):
    return report(
        f"results/{{dataset}}/qc/{path}",
        caption=f"../report/{caption}",
        category="{dataset}",
        subcategory="quality control",
        labels={"dataset": "{dataset}", "figure": figure},
    )


# --- the datasets of the analyses (rules/clusters.smk, rules/match.smk) -------------


def cluster_datasets():
    return [n for n in DATASETS if workflow_config.clusters_of(DATASETS[n]).get("k")]


def path_datasets():
    return [
        n for n in DATASETS if workflow_config.clusters_of(DATASETS[n]).get("paths")
    ]


def match_datasets():
    return [n for n in DATASETS if DATASETS[n].get("match")]
