"""SLURM node types: read from the partitions with ``sinfo`` when the profile is
installed (``zernike3d profile install``), written into the profile's ``config:`` as text
(:func:`node_types_text`), read back by the workflow (:func:`node_types_from_text`), and
the jobs' requests fitted to them (:func:`fit_to_nodes`)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from zernike3d.errors import InputError


class NodeType(TypedDict):
    """One kind of node of a partition: its CPUs, memory (MB as SLURM counts them, the
    unit of ``--mem``) and GPUs."""

    cpus: int
    mem_mb: int
    gpus: int


def query_nodes(site: Mapping[str, Any]) -> dict[str, list[NodeType]]:
    """``{"slurm_nodes": [...], "slurm_gpu_nodes": [...]}``: the node types of the
    partition of every job and of the GPU partition (when it is another one), each
    ``{"cpus", "mem_mb", "gpus"}``, read with ``sinfo``. {} when SLURM's commands are not
    installed here (a note says so); a failing sinfo or a partition without nodes is an
    InputError naming the partition."""
    import shutil

    if shutil.which("sinfo") is None:
        print("note: sinfo not found, so the nodes' CPUs, memory and GPUs are not recorded and jobs are "
              "not capped to them (install on the cluster, or set max_threads)", file=sys.stderr)
        return {}
    nodes = {"slurm_nodes": partition_nodes(site["partition"], site["gpu_model"])}
    if site["gpu_partition"] is not None and site["gpu_partition"] != site["partition"]:
        nodes["slurm_gpu_nodes"] = partition_nodes(site["gpu_partition"], site["gpu_model"])
    return nodes


def partition_nodes(partition: str | None, gpu_model: str | None = None) -> list[NodeType]:
    """The distinct node types of ``partition`` (None: the cluster's default one) as
    ``[{"cpus": int, "mem_mb": int, "gpus": int}]``, from
    ``sinfo -h -e -o "%P|%c|%m|%G"``: CPUs, memory (MB as SLURM counts them, the unit of
    ``--mem``) and GPUs of type ``gpu_model`` (any type when None) per node."""
    import subprocess

    command = ["sinfo", "--noheader", "--exact", "--format", "%P|%c|%m|%G"]
    if partition is not None:
        command += ["--partition", str(partition)]
    where = f"partition {partition}" if partition is not None else "the default partition"
    try:
        listed = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InputError("sinfo", f"cannot list the nodes of {where} ({err}); set query_nodes: false in the site file to install without it")
    if listed.returncode != 0:
        reason = (listed.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError("sinfo", f"cannot list the nodes of {where} ({reason}); set query_nodes: false "
                         "in the site file to install without it")
    types = set()
    for line in listed.stdout.splitlines():
        name, cpus, mem_mb, gres = (line.split("|") + ["", "", ""])[:4]
        if partition is None and not name.endswith("*"):  # sinfo marks the default partition
            continue
        try:
            types.add((int(cpus.rstrip("+")), int(mem_mb.rstrip("+")), gpu_count(gres, gpu_model)))
        except ValueError:
            raise InputError("sinfo", f"unexpected line for {where}: {line!r}")
    if not types:
        raise InputError(where, "sinfo lists no nodes in it; check the partition names in the site file")
    return [NodeType(cpus=c, mem_mb=m, gpus=g) for c, m, g in sorted(types)]


def node_types_text(types: Sequence[NodeType]) -> str:
    """``"cpus:mem_mb:gpus,..."``: node types as one string, the form in which a value of
    the profile's ``config:`` reaches the workflow intact (Snakemake passes it on as
    ``--config key=value`` and reads a nested value back as strings)."""
    return ",".join(f"{n['cpus']}:{n['mem_mb']}:{n['gpus']}" for n in types)


def node_types_from_text(text: str) -> list[NodeType]:
    """The node types ``[{"cpus", "mem_mb", "gpus"}]`` of a text written by
    :func:`node_types_text` (``"cpus:mem_mb:gpus,..."``); [] for an empty text."""
    types = []
    for item in text.split(","):
        if item:
            cpus, mem_mb, gpus = map(int, item.split(":"))
            types.append(NodeType(cpus=cpus, mem_mb=mem_mb, gpus=gpus))
    return types


def gpu_count(gres: str, gpu_model: str | None = None) -> int:
    """GPUs in a node's GRES as sinfo prints it, e.g. ``gpu:a100:4(S:0-1),shard:8`` -> 4;
    only those of type ``gpu_model`` when it is given; ``(null)`` -> 0."""
    count = 0
    for item in gres.split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] != "gpu" or not fields[-1].isdigit():
            continue
        gpu_type = fields[1] if len(fields) == 3 else None
        if gpu_model is None or gpu_type == str(gpu_model):
            count += int(fields[-1])
    return count


def fit_to_nodes(threads: int, mem_mb: int, gpus: int, nodes: Sequence[NodeType], attempt: int = 1) -> int:
    """The memory (MB) to ask for a job of ``threads`` CPUs, ``mem_mb`` MB and ``gpus``
    GPUs on a partition of node types ``nodes`` ([{"cpus", "mem_mb", "gpus"}], as
    ``zernike3d profile install`` reads them with sinfo); ``mem_mb`` where ``nodes`` is
    empty (unknown). A retry (``attempt`` > 1, memory already multiplied) is capped to the
    largest node; a first attempt that fits no node raises ValueError saying why, since
    SLURM would keep such a job pending forever without a message."""
    if not nodes:
        return mem_mb
    fitting = [n for n in nodes if n["cpus"] >= threads and n["gpus"] >= gpus]
    offered = "; ".join(f"{n['cpus']} CPUs, {n['mem_mb']} MB, {n['gpus']} GPU{'' if n['gpus'] == 1 else 's'}" for n in nodes)
    if not fitting:
        need = f"{threads} CPU{'s' if threads > 1 else ''}" + (f" and {gpus} GPU{'s' if gpus > 1 else ''}" if gpus else "")
        raise ValueError(f"needs {need}, but no node offers that (nodes: {offered})")
    largest = max(n["mem_mb"] for n in fitting)
    if mem_mb <= largest:
        return mem_mb
    if attempt > 1 and mem_mb / attempt <= largest:
        return largest
    raise ValueError(f"needs {mem_mb} MB of memory, but the nodes with {threads} CPU{'s' if threads > 1 else ''}{' and a GPU' if gpus else ''} "
                     f"have at most {largest} MB (nodes: {offered})")
