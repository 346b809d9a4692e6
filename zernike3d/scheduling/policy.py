"""The resource policy of the workflow's rules: per stage and dataset, the threads, memory
(MB), run time (minutes), GPU and SLURM group of a job, as pure functions of the config.

The workflow (``workflow/rules/common.smk``) calls these from its rules' ``threads:``,
``resources:`` and ``group:``; nothing here knows Snakemake. A dataset's ``settings`` is
its section of the config with the global ``threads``/``gpu`` resolved (keys used:
``threads``, ``gpu``, ``radius``, ``center``, ``reconstruct``, ``clusters``,
``preprocess``, ``max_runtime``); the :class:`Site` is what the config says of where jobs
run: the per-stage overrides (``resources:``) and the SLURM nodes that
``zernike3d profile install`` wrote into the profile (:mod:`zernike3d.scheduling.nodes`).
The sizes themselves come from :mod:`zernike3d.scheduling.resources`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zernike3d.scheduling.nodes import NodeType, fit_to_nodes, node_types_from_text
from zernike3d.scheduling.resources import rule_resources

#: stages whose code can run on a GPU (CuPy): only these ever request one
GPU_STAGES = ("decompose", "reconstruct")
#: stages that keep one core busy whatever they are given
SINGLE_THREADED = ("example", "import", "preprocess", "paths")
#: stages sized without the Zernike order (they run before the geometry is known)
ORDERLESS_STAGES = ("example", "import", "preprocess")
#: stages whose fixed requests (gpu: always, resources.<stage>.mem_mb) are checked against
#: the nodes before any job runs
CHECKED_STAGES = ("example", "import", "preprocess", "basis", "decompose", "reconstruct", "invariants", "qc")
#: a transform job (decompose; reconstruct, cluster_maps, path_maps) of a box up to this
#: many voxels after crop and bin runs in seconds on the CPU, so it joins a group job of
#: its dataset (decompose: ``prepare``, the maps: ``finish``) instead of costing a SLURM
#: submission, a status-check wait and a Snakemake start-up of its own
SHORT_TRANSFORM_MAX_BOX = 128
#: the group job each transform stage of a small box joins
TRANSFORM_GROUPS = {"decompose": "prepare", "reconstruct": "finish"}
#: resident memory (MB) of the Snakemake that runs inside every SLURM job (the SLURM
#: plugin submits each job, a group job too, as a Snakemake that runs the job's rules as
#: its children): the job's memory limit counts it beside the stage. Measured: 140 MB
#: reading the example config, 144 MB reading a 3DVA job folder of 192^3 maps or of
#: 500,000 particles (peak RSS of `snakemake -n`, the Snakemake row of
#: benchmarks/bench_stage_memory.py), the Snakemake in a job also runs it. A group job
#: runs one Snakemake, but Snakemake sums the requests of the members it runs side by
#: side, so there it is counted once per member
SNAKEMAKE_IN_JOB_MB = 200


@dataclass(frozen=True)
class Site:
    """Where the jobs run, as the workflow's config says.

    overrides: ``resources.<stage>`` of the config (``threads``, ``mem_mb``, ``runtime``).
    cpu_nodes, gpu_nodes: the node types of the partition of every job and of the GPU
    partition (``slurm_nodes``/``slurm_gpu_nodes``); empty when unknown (local runs).
    gpu_memory_gb, gpu_model, partition, gpu_partition: ``gpu_memory_gb``,
    ``slurm_gpu_model``, ``slurm_partition``, ``slurm_gpu_partition``.
    """

    overrides: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    cpu_nodes: Sequence[NodeType] = ()
    gpu_nodes: Sequence[NodeType] = ()
    gpu_memory_gb: float | None = None
    gpu_model: str | None = None
    partition: str | None = None
    gpu_partition: str | None = None
    #: memory (MB) added to every job for the Snakemake inside it: SNAKEMAKE_IN_JOB_MB on
    #: SLURM, 0 for a local run (whose jobs are children of the one Snakemake)
    job_snakemake_mb: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], in_jobs: bool = False) -> Site:
        """The site of a workflow config (validated, with the schema's defaults);
        ``in_jobs``: each job runs a Snakemake of its own (a cluster executor)."""
        return cls(
            job_snakemake_mb=SNAKEMAKE_IN_JOB_MB if in_jobs else 0,
            overrides={k: dict(v or {}) for k, v in (config.get("resources") or {}).items()},
            cpu_nodes=tuple(node_types_from_text(config.get("slurm_nodes") or "")),
            gpu_nodes=tuple(node_types_from_text(config.get("slurm_gpu_nodes") or "")),
            gpu_memory_gb=config.get("gpu_memory_gb"),
            gpu_model=config.get("slurm_gpu_model"),
            partition=config.get("slurm_partition"),
            gpu_partition=config.get("slurm_gpu_partition"),
        )

    def override(self, stage: str) -> Mapping[str, int]:
        """``resources.<stage>`` of the config ({} when not given)."""
        return self.overrides.get(stage) or {}

    def nodes(self, gpu: bool) -> Sequence[NodeType]:
        """The node types of the partition a job goes to: the GPU partition's for a job
        that asks for a GPU, when it is another partition; () when unknown."""
        return (gpu and self.gpu_nodes) or self.cpu_nodes


def may_use_gpu(stage: str, gpu: bool | str) -> bool:
    """May a job of ``stage`` run on a GPU, the dataset's ``gpu`` being ``gpu``
    (false, true or ``"always"``)?"""
    return stage in GPU_STAGES and gpu in (True, "always")


def rule_threads(stage: str, settings: Mapping[str, Any], site: Site) -> int:
    """A job's threads: ``resources.<stage>.threads``, 1 for a single-threaded stage, or
    the dataset's threads; capped to the CPUs of the largest node of each partition the
    job may go to (a job that asks for more CPUs than any node has stays pending forever).
    """
    wanted = site.override(stage).get("threads") or (1 if stage in SINGLE_THREADED else int(settings["threads"]))
    partitions = [site.nodes(False)]
    if may_use_gpu(stage, settings["gpu"]):
        partitions.append(site.nodes(True))
    caps = [max(n["cpus"] for n in types) for types in partitions if types]
    return min([wanted] + caps)


def job_resources(stage: str, name: str, settings: Mapping[str, Any], path: str | None, order: Callable[[], int],
                  attempt: int, site: Site) -> dict[str, int]:
    """``{"mem_mb", "runtime", "gpu"}`` (MB, minutes, 0/1) of the ``attempt``-th try of a
    job of ``stage`` for dataset ``name`` reading ``path``.

    order: the dataset's Zernike order, called only for the stages that depend on it (it
    may need the bundle at ``path``). The memory is the stage's estimate plus the
    Snakemake that runs it inside a SLURM job (``site.job_snakemake_mb``). Memory and
    time grow with the attempt (a retry after running out); ``resources.<stage>`` fixes them; ``max_runtime`` caps the time. The
    memory is then fitted to the site's nodes. Raises FileNotFoundError naming ``path``
    while it does not exist yet (a dry run: Snakemake shows <TBD>) and ValueError, naming
    the job, when no node can run it.
    """
    d = dict(settings)
    d["threads"] = rule_threads(stage, settings, site)
    d["gpu_memory_gb"] = site.gpu_memory_gb
    d["slurm_gpu_model"] = site.gpu_model
    if site.gpu_nodes:  # plan for the nodes there are
        gpu_nodes = [n for n in site.gpu_nodes if n["cpus"] >= d["threads"] and n["gpus"] >= 1]
        cpu_nodes = [n for n in site.cpu_nodes if n["cpus"] >= d["threads"]]
        d["node_gpus"] = len(gpu_nodes)
        usable = gpu_nodes if (gpu_nodes and d["gpu"]) else cpu_nodes
        d["node_mem_mb"] = max((n["mem_mb"] for n in usable), default=None)
    override = site.override(stage)
    if override.get("mem_mb") and override.get("runtime"):
        estimate = {"gpu": 1}  # no need to look at the input: a GPU when the dataset allows one
    else:
        the_order = d["order"] if stage in ORDERLESS_STAGES else order()
        if stage == "reconstruct" and (d.get("reconstruct") or {}).get("order") is not None:
            the_order = d["reconstruct"]["order"]
        if stage == "cluster" and path is not None:  # the subsets read the particles' .cs rows
            from zernike3d.scheduling.inputs import table_row_bytes

            d["table_row_bytes"] = table_row_bytes(path, (d.get("clusters") or {}).get("particles_cs"))
        try:
            estimate = rule_resources(stage, path, the_order, d)
        except ValueError as err:  # e.g. the planner: no placement fits the node
            raise ValueError(f"{stage} job of datasets.{name}: {err}") from None
    mem_mb = override.get("mem_mb") or (estimate["mem_mb"] + site.job_snakemake_mb) * attempt
    runtime = override.get("runtime") or estimate["runtime"] * attempt
    if d.get("max_runtime"):
        runtime = min(runtime, d["max_runtime"])
    gpu = stage in GPU_STAGES and (d["gpu"] == "always" or (d["gpu"] is True and bool(estimate["gpu"])))
    try:
        mem_mb = fit_to_nodes(d["threads"], int(mem_mb), int(gpu), site.nodes(gpu), attempt)
    except ValueError as err:
        raise ValueError(f"the {stage} job of datasets.{name} cannot run on this cluster: {err}") from None
    return {"mem_mb": int(mem_mb), "runtime": int(runtime), "gpu": int(gpu)}


def node_problems(datasets: Mapping[str, Mapping[str, Any]], site: Site) -> list[str]:
    """What is known before any job runs, checked against the site's nodes: a job that
    asks for a GPU whatever the plan (``gpu: always``) or a fixed memory
    (``resources.<stage>.mem_mb``) that no node offers; one line per job, naming it.
    ``datasets``: each dataset's settings by name."""
    if not (site.cpu_nodes or site.gpu_nodes):
        return []
    problems = []
    for name, settings in datasets.items():
        for stage in CHECKED_STAGES:
            gpu = stage in GPU_STAGES and settings["gpu"] == "always"
            mem_mb = site.override(stage).get("mem_mb") or 1
            try:
                fit_to_nodes(rule_threads(stage, settings, site), mem_mb, int(gpu), site.nodes(gpu))
            except ValueError as err:
                problems.append(f"the {stage} job of datasets.{name} cannot run on this cluster: {err}")
    return problems


def declared_gpu_resources(gpu: int, site: Site) -> dict[str, Any]:
    """The GPU resources a GPU-capable rule declares for a job whose plan is ``gpu``
    (0/1): ``gpu``, ``gpu_model`` and, with a GPU partition, ``slurm_partition``.
    Without a GPU ``gpu_model`` is 0, the value Snakemake gives a resource a rule does not
    declare, so that a CPU job can join a group job of rules that declare none (a group's
    string resources must agree); the SLURM plugin reads 0 as "not set"."""
    declared: dict[str, Any] = {"gpu": gpu, "gpu_model": (site.gpu_model or "") if gpu else 0}
    if site.gpu_partition:
        declared["slurm_partition"] = site.gpu_partition if gpu else (site.partition or 0)
    return declared


def max_memory_arg(mem_mb: object) -> str:
    """``--max-memory`` (GiB) of a transform job allocated ``mem_mb`` MB, so that the
    job's own plan stays inside it; "" while the allocation is not known (a dry run's
    <TBD>)."""
    if not isinstance(mem_mb, (int, float)):
        return ""
    return f"--max-memory {mem_mb * 1e6 / 2**30:.3f}"


def preprocessed_box(box: int | None, preprocess: Mapping[str, Any]) -> int | None:
    """The box (voxels) of a dataset's maps after ``preprocess``'s crop and bin, its
    input's box being ``box`` (None when unknown, e.g. a WIGGLE bundle)."""
    if box is None:
        return None
    return (preprocess.get("crop") or box) // preprocess["bin"]


def transform_group(stage: str, name: str, box: int | None, gpu: bool | str) -> str | None:
    """The ``group:`` of a transform job (``decompose``, or ``reconstruct`` for the maps
    of reconstruct, cluster_maps and path_maps) of dataset ``name`` whose box after crop
    and bin is ``box``: its dataset's group job (:data:`TRANSFORM_GROUPS`) when the box is
    small and it runs on the CPU, else None (a SLURM job of its own)."""
    if may_use_gpu(stage, gpu) or box is None or box > SHORT_TRANSFORM_MAX_BOX:
        return None
    return f"{TRANSFORM_GROUPS[stage]}_{name}"


#: what a compare job holds besides its inputs: libraries and work arrays (MB), and the
#: joint landscape per particle (bytes); measured 1.04 GB peak for three jobs of 1,000,000
#: particles at order 50 (benchmarks/bench_compare.py), estimated 1.6 GB
COMPARE_BASE_MB = 1000
COMPARE_PARTICLE_BYTES = 150


def compare_resources(bundles: Sequence[str], attempt: int, site: Site) -> dict[str, int]:
    """``{"mem_mb", "runtime"}`` of a compare job of the dataset bundles ``bundles``
    (``preprocessed.npz`` of each member): libraries and work arrays, the joint
    landscape, each bundle held twice (maps, latents) and the Snakemake in a SLURM job;
    about a minute per million particles, plus the alignments. Both grow with the
    attempt."""
    from zernike3d.scheduling.inputs import bundle_shape

    particles = sum(bundle_shape(f).n_particles for f in bundles)
    held = 2 * sum(os.path.getsize(f) for f in bundles)
    mem_mb = (COMPARE_BASE_MB + site.job_snakemake_mb + (particles * COMPARE_PARTICLE_BYTES + held) / 1e6) * attempt
    return {"mem_mb": int(mem_mb), "runtime": int((10 + particles / 1e6) * attempt)}

