"""Checks of the workflow's configuration against what its inputs hold, as pure functions.

The workflow (workflow/rules/common.smk) calls them while it parses the configuration,
before any job runs (also for ``snakemake -n``), with what it can read cheaply of each
dataset's input: the number of 3DVA components and particles (None where unknown). Each
returns one line per problem, naming the configuration key, in the words the stage
would use; the stages' own option checks are called wherever they exist, so that the
workflow refuses exactly what the job would.
"""

import os
import re

from zernike3d.errors import InputError


def cluster_problems(where: str, clusters: dict, components: int | None, particles: int | None) -> list[str]:
    """The problems of ``clusters`` (a dataset's ``clusters`` section, defaults filled
    in) at key ``where`` (e.g. ``datasets.J42.clusters``), for an input of
    ``components`` latent components and ``particles`` particles."""
    from zernike3d.analysis.clusters import MAX_CLUSTERS, parse_bins, parse_range
    from zernike3d.stages.path import check_counts

    problems = []
    k = clusters.get("k") or 0
    most = MAX_CLUSTERS if particles is None else min(MAX_CLUSTERS, particles)
    if k > most:
        problems.append(f"{where}.k: {k} clusters, but at most {most} can be made "
                        + (f"({particles} particles)" if particles is not None and particles < MAX_CLUSTERS else ""))
    if k and clusters.get("particles_cs") and not os.path.isfile(clusters["particles_cs"]):
        problems.append(f"{where}.particles_cs: {clusters['particles_cs']}: file not found")
    for i, text in enumerate(clusters.get("bins") or []):
        try:
            component, _ = parse_bins(text)
        except InputError as err:
            problems.append(f"{where}.bins.{i}: {err.problem}")
            continue
        if components is not None and component >= components:
            problems.append(f"{where}.bins.{i}: component {component} out of range 0..{components - 1}")
    for i, text in enumerate(clusters.get("ranges") or []):
        try:
            conditions = parse_range(text)
        except InputError as err:
            problems.append(f"{where}.ranges.{i}: {err.problem}")
            continue
        for name, _, _ in conditions:
            latent = re.fullmatch(r"z_(\d+)", name)
            invariant = re.fullmatch(r"F_(\d+)_(\d+)", name)
            if latent and components is not None and int(latent[1]) >= components:
                problems.append(f"{where}.ranges.{i}: {name}, but the input has {components} components")
            elif invariant and clusters.get("space") != "invariants":
                problems.append(f"{where}.ranges.{i}: {name} is an invariant: it needs space: invariants")
            elif not latent and not invariant:
                problems.append(f"{where}.ranges.{i}: unknown quantity {name!r} (z_K or F_n_l)")
    paths = [tuple(str(end) for end in pair) for pair in clusters.get("paths") or []]
    for i, pair in enumerate(paths):
        if pair in paths[:i]:
            problems.append(f"{where}.paths.{i}: {pair[0]} to {pair[1]} is given twice")
        for end in pair:
            problems += [f"{where}.paths.{i}: {problem}" for problem in _state_problems(end, components, particles)]
    if paths and particles is not None:
        try:
            check_counts(clusters.get("path_frames", 10), clusters.get("path_neighbours", 10), particles,
                         names=(f"{where}.path_frames", f"{where}.path_neighbours"))
        except InputError as err:
            problems.append(str(err))
    return problems


def _state_problems(end: str, components: int | None, particles: int | None) -> list[str]:
    """What is wrong with the path end ``end`` (z:z0,.., index:ROW) for the input."""
    kind, _, value = end.partition(":")
    if kind == "z" and components is not None:
        try:
            z = [float(v) for v in value.split(",")]
        except ValueError:
            return [f"{end}: expected z:z0,z1,.. numbers"]
        if len(z) != components or not all(abs(v) < float("inf") for v in z):
            return [f"{end} has {len(z)} finite values; the input has {components} components"]
    if kind == "index" and particles is not None:
        if not value.isdigit() or int(value) >= particles:
            return [f"{end}: particle index out of range 0..{particles - 1}"]
    return []
