"""Install the Snakemake SLURM profile, so that `snakemake --profile slurm` works.

  zernike3d profile install [--site config/slurm-site.yaml] [--dest DIR] [--force]
  zernike3d profile show    [--site config/slurm-site.yaml]     # print it, install nothing
  zernike3d profile where                                       # where Snakemake looks

Everything specific to a cluster (partition, account, QoS, GPU model and partition, time
limit, how job states are polled) lives in ONE file, the site file (default
config/slurm-site.yaml, documented there and in config/README.md). `install` turns it
into a profile for snakemake-executor-plugin-slurm and writes it to
$XDG_CONFIG_HOME/snakemake/slurm/config.yaml (XDG_CONFIG_HOME defaults to ~/.config):
`snakemake --profile slurm` looks for a profile named `slurm` in the current directory,
then in $XDG_CONFIG_HOME/snakemake/, then in /etc/xdg/snakemake/ (the first of
$XDG_CONFIG_DIRS). The workflow's own profile, workflow/profiles/default/, is added on
top automatically. After changing the site file, install again (--force).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from zernike3d.errors import InputError
from zernike3d.scheduling.nodes import NodeType, node_types_text, query_nodes

if TYPE_CHECKING:
    import argparse

#: the site keys, their defaults and what they mean (also documented in config/README.md)
SITE_KEYS = {
    "partition": (None, "partition for every job (null: the cluster's default partition)"),
    "gpu_partition": (None, "partition for jobs that request a GPU (null: same as partition)"),
    "account": (None, "account charged (sbatch -A); null: none"),
    "qos": (None, "quality of service (sbatch --qos); null: none"),
    "gpu_model": (None, "GPU type, as in the cluster's gres.conf (e.g. a100): --gpus=<model>:1; null: any GPU"),
    "max_runtime": (None, "partition time limit in minutes; no job asks for more; null: no cap"),
    "max_threads": (None, "CPUs of the smallest node a job may land on; no job asks for more (a larger request would wait forever); null: no cap"),
    "default_runtime": (60, "minutes, for jobs without an estimate"),
    "default_mem_mb": (2000, "MB, for jobs without an estimate"),
    "jobs": (50, "most jobs queued or running at once"),
    "retries": (1, "re-submit a failed job this many times, with more memory and time each time"),
    "status_command": ("squeue", "how job states are read: 'squeue' (needs MinJobAge >= 3 x the next value; works without accounting) or 'sacct' (needs slurmdbd)"),
    "init_seconds_before_status_checks": (40, "seconds before the first job-state check, and the check interval it starts from"),
    "latency_wait": (60, "seconds to wait for output files to appear on a shared file system"),
    "slurm_extra": (None, "extra sbatch options for every job, e.g. '--constraint=avx2'"),
    "logdir": ("logs/slurm", "SLURM job logs, relative to the working directory"),
    "query_nodes": (True, "read the CPUs, memory and GPUs of the partitions' nodes with sinfo at install, so that no job asks for more than a node has; false: install without asking SLURM"),
}

DEFAULT_SITE = "config/slurm-site.yaml"
PROFILE_NAME = "slurm"
#: the most independent parts of one dataset's `finish` group that go into one SLURM job
#: (invariants, qc, reconstruct, cluster, cluster_maps, paths, path_maps: at most 7)
FINISH_COMPONENTS = 8
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.,:\-]+$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("install", "show", "where"), help="what to do")
    parser.add_argument("--site", default=None, metavar="FILE.yaml",
                        help=f"site settings (default: {DEFAULT_SITE} if it exists, else built-in defaults)")
    parser.add_argument("--dest", default=None, metavar="DIR",
                        help="profile folder (default: $XDG_CONFIG_HOME/snakemake/slurm)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing profile")


def run(args: argparse.Namespace) -> int:
    if args.action == "where":
        for directory in search_dirs():
            print(directory / PROFILE_NAME)
        return 0
    site_path, site = load_site(args.site)
    nodes = query_nodes(site) if site["query_nodes"] else {}
    text = render_profile(site, source=site_path, nodes=nodes)
    if args.action == "show":
        sys.stdout.write(text)
        return 0
    dest = Path(args.dest) if args.dest else default_profile_dir()
    target = dest / "config.yaml"
    if target.exists() and not args.force and target.read_text() != text:
        raise InputError(target, "a different profile is already installed there; use --force to replace it")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".config.yaml.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, target)
    print(f"installed {target} (from {site_path or 'built-in defaults'})")
    shadow = Path.cwd() / PROFILE_NAME
    if shadow.exists() and shadow.resolve() != dest.resolve():
        print(f"warning: {shadow} exists and will be used instead by `snakemake --profile "
              f"{PROFILE_NAME}` run from this directory", file=sys.stderr)
    print(f"run the workflow with: snakemake --profile {PROFILE_NAME}")
    return 0


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def default_profile_dir() -> Path:
    return xdg_config_home() / "snakemake" / PROFILE_NAME


def search_dirs() -> list[Path]:
    """Where `snakemake --profile NAME` looks, in order (snakemake/cli.py get_profile_dir)."""
    site_dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    return [Path.cwd(), xdg_config_home() / "snakemake", Path(site_dirs.split(":")[0]) / "snakemake"]


def load_site(path: str | Path | None = None) -> tuple[str | None, dict[str, Any]]:
    """``(path or None, settings)``: the site file merged over the defaults, checked."""
    site = {key: default for key, (default, _) in SITE_KEYS.items()}
    if path is None and Path(DEFAULT_SITE).is_file():
        path = DEFAULT_SITE
    if path is None:
        return None, site
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "site file not found")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(p, f"not valid YAML ({err})")
    if not isinstance(loaded, dict):
        raise InputError(p, "expected a mapping of site settings")
    unknown = sorted(set(loaded) - set(SITE_KEYS))
    if unknown:
        raise InputError(p, f"unknown key {', '.join(map(repr, unknown))}; known keys: {', '.join(SITE_KEYS)}")
    site.update(loaded)
    check_site(p, site)
    return str(p), site


def check_site(source: str | Path, site: dict[str, Any]) -> None:
    for key in ("partition", "gpu_partition", "account", "qos", "gpu_model"):
        value = site[key]
        if value is not None and not (isinstance(value, (str, int)) and NAME_PATTERN.match(str(value))):
            raise InputError(source, f"{key}: {value!r} is not a valid SLURM name")
    if site["gpu_model"] is not None and not re.match(r"^[A-Za-z0-9_.]+$", str(site["gpu_model"])):
        raise InputError(source, f"gpu_model: {site['gpu_model']!r} may hold only letters, digits, '_' and '.'")
    for key in ("max_runtime", "max_threads", "default_runtime", "default_mem_mb", "jobs", "init_seconds_before_status_checks", "latency_wait"):
        value = site[key]
        if value is None and key in ("max_runtime", "max_threads"):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(source, f"{key}: expected a positive integer, got {value!r}")
    if not isinstance(site["retries"], int) or site["retries"] < 0:
        raise InputError(source, f"retries: expected an integer >= 0, got {site['retries']!r}")
    if site["status_command"] not in ("squeue", "sacct"):
        raise InputError(source, f"status_command: expected 'squeue' or 'sacct', got {site['status_command']!r}")
    if site["slurm_extra"] is not None and not isinstance(site["slurm_extra"], str):
        raise InputError(source, f"slurm_extra: expected a string of sbatch options, got {site['slurm_extra']!r}")
    if not isinstance(site["query_nodes"], bool):
        raise InputError(source, f"query_nodes: expected true or false, got {site['query_nodes']!r}")
    if not isinstance(site["logdir"], str) or not site["logdir"]:
        raise InputError(source, f"logdir: expected a folder, got {site['logdir']!r}")


def _yaml_value(value):
    """One YAML scalar, quoted where needed (flow style, no trailing newline)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def render_profile(site: dict[str, Any], source: str | None = None,
                   nodes: dict[str, list[NodeType]] | None = None) -> str:
    """The text of the profile's config.yaml for the site settings ``site`` and the
    partitions' node types ``nodes`` (:func:`zernike3d.scheduling.nodes.query_nodes`)."""
    s = dict(site)
    nodes = nodes or {}
    lines = [
        "# Snakemake profile for SLURM (snakemake-executor-plugin-slurm), for the zernike3d workflow.",
        f"# Written by `zernike3d profile install` from {source or 'the built-in site defaults'}:",
        "# change the site file and install again rather than editing this file.",
        "# Used by `snakemake --profile slurm`; workflow/profiles/default/ is applied on top.",
        "executor: slurm",
        f"jobs: {s['jobs']}",
        f"latency-wait: {s['latency_wait']}",
        "# a failed job is re-submitted with its memory and time multiplied by the attempt number",
        f"retries: {s['retries']}",
        "rerun-incomplete: true",
        "keep-going: true",
        "printshellcmds: true",
    ]
    max_threads = s["max_threads"]
    if max_threads is None and nodes:  # no job asks for more CPUs than the largest node has
        max_threads = max(node["cpus"] for types in nodes.values() for node in types)
    if max_threads is not None:
        lines.append(f"max-threads: {max_threads}")
    lines += [
        "# the short rules of a dataset run as a few group jobs (zernike3d/scheduling/policy.py,",
        "# transform_group): one `finish` job spans the dataset's parts that do not depend",
        "# on each other; `cores` stacks a group's members in series where side by side they",
        "# would ask for more CPUs than a node has",
    ]
    lines.append(f'group-components: ["finish_{{dataset}}={FINISH_COMPONENTS}"]')
    if max_threads is not None:
        lines.append(f"cores: {max_threads}")
    lines += [
        f"slurm-status-command: {s['status_command']}",
        f"slurm-init-seconds-before-status-checks: {s['init_seconds_before_status_checks']}",
        f"slurm-logdir: {_yaml_value(s['logdir'])}",
    ]
    if s["account"] is None:
        lines += [
            "# no account (site file: account: null). snakemake-executor-plugin-slurm 2.8.0",
            "# declares this flag but never reads it, so it still prints \"No SLURM account given,",
            "# trying to guess.\" and, on clusters without accounting, the error of the `sacct`",
            "# it guesses with. Both are harmless: the jobs are submitted without -A. Set",
            "# `account` in the site file to silence them.",
            "slurm-no-account: true",
        ]
    if s["qos"] is not None:
        lines.append(f"slurm-qos: {_yaml_value(str(s['qos']))}")
    lines.append("default-resources:")
    if s["partition"] is not None:
        lines.append(f"  slurm_partition: {_yaml_value(str(s['partition']))}")
    if s["account"] is not None:
        lines.append(f"  slurm_account: {_yaml_value(str(s['account']))}")
    runtime = s["default_runtime"] if s["max_runtime"] is None else min(s["default_runtime"], s["max_runtime"])
    lines.append(f"  runtime: {runtime}")
    lines.append(f"  mem_mb: {s['default_mem_mb']}")
    lines += [
        "  # Snakemake's own default is an expression of the inputs' sizes, which it cannot",
        "  # evaluate while it plans SLURM jobs (\"RuntimeWarning: coroutine ... was never",
        "  # awaited\"); snakemake-executor-plugin-slurm passes no disk request to sbatch",
        "  disk_mb: 1000",
    ]
    if s["slurm_extra"]:
        lines.append(f"  slurm_extra: {_yaml_value(repr(s['slurm_extra']))}")
    # Read by the workflow (config keys slurm_*): which GPU and partition the GPU-capable
    # rules ask for when a dataset sets gpu: true, and the cap on every runtime request.
    # NB: `--config ...` on the command line replaces these; repeat them there if used.
    config = {
        "slurm_partition": s["partition"],
        "slurm_gpu_partition": s["gpu_partition"],
        "slurm_gpu_model": s["gpu_model"],
        "slurm_max_runtime": s["max_runtime"],
    }
    config = {k: v for k, v in config.items() if v is not None}
    if config or nodes:
        lines.append("# read by the workflow: GPU model/partition of GPU jobs, runtime cap, and the")
        lines.append("# CPUs, memory (MB) and GPUs of the partitions' node types (sinfo), to which every")
        lines.append("# job's request is capped")
        lines.append("config:")
        for key, value in config.items():
            lines.append(f"  {key}: {_yaml_value(value if isinstance(value, int) else str(value))}")
        for key, types in nodes.items():
            lines.append(f"  {key}: {_yaml_value(node_types_text(types))}")
    return "\n".join(lines) + "\n"
