"""What each job of the workflow runs and reads, and what the workflow makes, as pure
functions of the config (config/config.yaml, checked and its defaults filled in by
:mod:`zernike3d.workflow_config`).

``workflow/rules/*.smk`` call these from one-line params and input functions. Every
function of a dataset takes ``(name, dataset)``: the dataset's name (a wildcard of the
rules, the folder ``results/<name>/``) and its entry of ``config["datasets"]`` with the
schema's defaults filled in; it returns

- ``*_args``: the options of one ``zernike3d <stage>`` command, a string for the shell,
  each value quoted by :func:`shlex.quote` (empty for an option not given);
- ``*_inputs``: the files a rule reads, ``{input name: path or [paths]}``;
- ``*_targets``: the files the workflow makes for the dataset (``rule all``).

The arguments depend on the settings only, never on a job's input or output files:
Snakemake's params rerun-trigger ignores params derived from those, so a changed setting
would leave the earlier results in place. Paths are relative to the workflow's working
directory (``results/<name>/...``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from zernike3d.workflow_config import clusters_of, has_particles, is_3dva

#: the figures of a comparison (``compare.<name>``): file stem -> label in the report
COMPARE_FIGURES = {
    "volume_distances": "volume distances",
    "order_correlation": "correlation per order",
    "latent_overlap": "latent spaces",
    "landscape_1d": "landscape (1-D)",
    "landscape_2d": "landscape (2-D)",
    "cluster_populations": "cluster populations",
    "free_energy_states": "free energy of the states",
    "free_energy_1d": "free energy (1-D)",
    "free_energy_2d": "free energy (2-D)",
}
#: the figures and tables of `zernike3d qc` for every dataset, and those of a 3DVA job's particles
QC_FILES = ("fsc.csv", "fsc_resolution.csv", "fsc.png", "maps.png", "invariants.png")
QC_PARTICLE_FILES = ("particle_invariants_pca.png", "series_maps.png")


# --- command-line arguments ---------------------------------------------------------


def opt(flag: str, value: Any) -> str:
    """``--flag value`` (the value quoted; a list or tuple joined by commas), ``--flag``
    alone for True, nothing for None, False, an empty list or an empty string."""
    if value is None or value is False or value == [] or value == "":
        return ""
    if value is True:
        return flag
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return f"{flag} {shlex.quote(str(value))}"


def many(flag: str, values: Iterable[Any]) -> str:
    """``--flag v1 v2 ...`` (each value quoted) for an option of several values."""
    return " ".join([flag, *(shlex.quote(str(v)) for v in values)])


def joined(args: Iterable[str]) -> str:
    """The non-empty ``args`` joined by spaces."""
    return " ".join(filter(None, args))


def example_args(name: str, dataset: dict) -> str:
    """Options of `zernike3d example` from ``example`` (the synthetic job's settings)."""
    example = dataset["example"]
    return joined([
        opt("--box", example["box"]),
        opt("--components", example["n_components"]),
        opt("--seed", example["seed"]),
        opt("--particles-cs", example.get("particles_cs")),
        opt("--open-share", example.get("open_share")),
        # --turn=A,B,G: a value starting with "-" would read as an option
        *(opt(f"--{key}", value).replace(" ", "=", 1) for key in ("turn", "shift") if (value := example.get(key))),
    ])


def import_args(name: str, dataset: dict) -> str:
    """Options of `zernike3d import`: the dataset's one source (the example's job folder
    results/<name>/example_job, ``job_dir``, ``wiggle`` or ``map`` with its components and
    particles) and ``apix``."""
    if dataset.get("example") is not None:
        args = [opt("--job-dir", f"results/{name}/example_job")]
    elif dataset.get("job_dir"):
        args = [opt("--job-dir", dataset["job_dir"])]
    elif dataset.get("wiggle"):
        args = [opt("--wiggle", dataset["wiggle"])]
    else:
        args = [opt("--map", dataset["map"])]
        if dataset.get("components"):
            args += [many("--components", dataset["components"]), opt("--particles", dataset["particles"])]
    return joined([*args, opt("--apix", dataset.get("apix"))])


def preprocess_args(name: str, dataset: dict) -> str:
    """Options of `zernike3d preprocess` from ``preprocess`` (``--bin`` only above 1)."""
    p = dataset["preprocess"]
    return joined([
        opt("--crop", p.get("crop")),
        opt("--center", p.get("center")),
        opt("--bin", p["bin"] if p["bin"] > 1 else None),
        opt("--mask", p.get("mask")),
        opt("--mask-radius", p.get("mask_radius")),
        opt("--mask-edge", p.get("mask_edge")),
    ])


def order_args(name: str, dataset: dict) -> str:
    """``--resolution Å`` (the stage picks the order from the geometry), or ``--order N``."""
    return opt("--resolution", dataset["resolution"]) or opt("--order", dataset["order"])


def geometry_args(name: str, dataset: dict) -> str:
    """``--radius`` and ``--center`` of the ball (basis, decompose)."""
    return joined([opt("--radius", dataset["radius"]), opt("--center", dataset["center"])])


def map_extra_args(name: str, dataset: dict) -> str:
    """``--mapspace`` and ``--movie`` of every reconstruction (``reconstruct``)."""
    r = dataset["reconstruct"]
    return joined(["--mapspace" if r.get("mapspace") else "", "--movie" if r.get("movie") else ""])


def reconstruct_args(name: str, dataset: dict) -> str:
    """Options of `zernike3d reconstruct` from ``reconstruct``: order and grid; for a
    dataset with per-particle results the series, k-means centres and particles; the
    latent points; :func:`map_extra_args`."""
    r = dataset["reconstruct"]
    args = [opt("--order", r.get("order")), opt("--box", r.get("box")), opt("--voxel-size", r.get("voxel_size"))]
    if has_particles(dataset):
        if r.get("series"):
            args += [opt("--series", r["series"]), opt("--percentiles", r["percentiles"])]
        args.append(opt("--kmeans", r.get("kmeans") or None))
        if r.get("particles"):
            args.append(many("--particle", r["particles"]))
    # --latent=z0,z1: a first value that is negative must not read as an option
    args += [shlex.quote("--latent=" + ",".join(map(str, z))) for z in r.get("latents") or []]
    return joined([*args, map_extra_args(name, dataset)])


def cluster_args(name: str, dataset: dict) -> str:
    """Options of `zernike3d cluster` from ``clusters`` (the per-particle invariants of
    results/<name>/ for ``space: invariants``)."""
    c = clusters_of(dataset)
    args = [opt("--k", c["k"]), opt("--method", c["method"]), opt("--space", c["space"])]
    if c["space"] == "invariants":
        args.append(opt("--particle-invariants", f"results/{name}/particle_invariants.zarr"))
    args.append(opt("--subsets", c["export_subsets"]))
    if c.get("bins"):
        args.append(many("--bins", c["bins"]))
    if c.get("ranges"):
        args.append(many("--range", c["ranges"]))
    return joined([*args, opt("--particles-cs", c.get("particles_cs"))])


def path_args(name: str, dataset: dict) -> str:
    """Options of `zernike3d path` from ``clusters``: a ``--between`` per path."""
    c = clusters_of(dataset)
    return joined([
        *(many("--between", pair) for pair in c["paths"]),
        opt("--frames", c["path_frames"]),
        opt("--neighbours", c["path_neighbours"]),
        opt("--density", c["path_density"]),
    ])


def match_args(name: str, dataset: dict) -> str:
    """``--query`` files, and ``--subsets`` for a dataset whose particles came from a
    cryoSPARC table (not a WIGGLE bundle); ``clusters.particles_cs`` serves both stages."""
    args = [many("--query", dataset["match"])]
    if is_3dva(dataset) and not dataset.get("wiggle"):
        args += ["--subsets", opt("--particles-cs", clusters_of(dataset).get("particles_cs"))]
    return joined(args)


def compare_folders(members: list[str]) -> str:
    """The results folders of a comparison's ``members`` (the first is the reference)."""
    return " ".join(shlex.quote(f"results/{member}") for member in members)


# --- the files each rule reads ------------------------------------------------------


def import_inputs(name: str, dataset: dict) -> dict[str, Any]:
    """What `zernike3d import` reads: ``source`` (the folder or file it is given) and,
    for a job folder, every file of the job it reads (not only the folder, whose time
    changes only when a file is added or removed: a rewritten J42_particles.cs re-runs
    import); the components and particles beside a map."""
    if dataset.get("example") is not None:
        return {"source": f"results/{name}/example_job"}
    if dataset.get("job_dir"):
        from zernike3d.io.cryosparc import job_files_read

        return {"source": dataset["job_dir"], "files": job_files_read(dataset["job_dir"])}
    if dataset.get("wiggle"):
        return {"source": dataset["wiggle"]}
    files: dict[str, Any] = {"source": dataset["map"]}
    if dataset.get("components"):
        files.update(components=dataset["components"], particles=dataset["particles"])
    return files


def preprocess_inputs(name: str, dataset: dict) -> dict[str, str]:
    """The mask and marker files of ``preprocess``, so that changing them re-runs preprocess."""
    p = dataset["preprocess"]
    files = {}
    if p.get("mask") and p["mask"] != "sphere":
        files["mask"] = p["mask"]
    if isinstance(p.get("center"), str) and p["center"].endswith(".cmm"):
        files["markers"] = p["center"]
    return files


def qc_inputs(name: str, dataset: dict) -> dict[str, str]:
    """The bundle and moments, and for per-particle results the invariants store and the maps."""
    files = {"data": f"results/{name}/preprocessed.npz", "moments": f"results/{name}/moments.npz"}
    if has_particles(dataset):
        files.update(particle_invariants=f"results/{name}/particle_invariants.zarr/zarr.json",
                     maps=f"results/{name}/maps")
    return files


def cluster_inputs(name: str, dataset: dict) -> dict[str, Any]:
    """The bundle and the maps (their index), the invariants store for ``space:
    invariants``, and ``particles_cs`` with its passthrough file when it is there."""
    c = clusters_of(dataset)
    files: dict[str, Any] = {"data": f"results/{name}/preprocessed.npz", "maps": f"results/{name}/maps"}
    if c.get("space") == "invariants":
        files["particle_invariants"] = f"results/{name}/particle_invariants.zarr/zarr.json"
    if c.get("particles_cs"):
        from zernike3d.io.cryosparc import passthrough_path

        passthrough = passthrough_path(c["particles_cs"])
        files["particles_cs"] = [c["particles_cs"]] + ([str(passthrough)] if passthrough else [])
    return files


def path_inputs(name: str, dataset: dict) -> dict[str, str]:
    """The bundle and the maps (their index), and the cluster centres when there are clusters."""
    files = {"data": f"results/{name}/preprocessed.npz", "maps": f"results/{name}/maps"}
    if clusters_of(dataset).get("k"):
        files["centres"] = f"results/{name}/clusters/centres.csv"
    return files


def match_inputs(name: str, dataset: dict) -> dict[str, Any]:
    """The bundle, the moments and every query file (a changed query re-runs match)."""
    return {"data": f"results/{name}/preprocessed.npz", "moments": f"results/{name}/moments.npz",
            "queries": dataset["match"]}


def compare_inputs(members: list[str]) -> list[str]:
    """The bundle, moments and invariants store of each member of a comparison."""
    return [f"results/{member}/{file}" for member in members
            for file in ("preprocessed.npz", "moments.npz", "particle_invariants.zarr/zarr.json")]


# --- targets ------------------------------------------------------------------------


def dataset_targets(name: str, dataset: dict) -> list[str]:
    """Moments, invariants, maps, the per-particle invariants of a 3DVA job, and with
    ``qc`` the QC files."""
    base = f"results/{name}"
    targets = [f"{base}/moments.npz", f"{base}/invariants.csv", f"{base}/maps"]
    if has_particles(dataset):
        targets.append(f"{base}/particle_invariants.zarr/zarr.json")
    if dataset.get("qc"):
        names = QC_FILES + (QC_PARTICLE_FILES if has_particles(dataset) else ())
        targets += [f"{base}/qc/{file}" for file in names]
    return targets


def analysis_targets(name: str, dataset: dict) -> list[str]:
    """What ``clusters`` (``k``: populations and their plot, with ``maps`` the maps of the
    centres; ``paths``: the paths, their plot and maps) and ``match`` ask for."""
    c, base = clusters_of(dataset), f"results/{name}"
    targets = []
    if c.get("k"):
        targets += [f"{base}/clusters/populations.csv", f"{base}/clusters/latents.png"]
        targets += [f"{base}/cluster_maps"] if c["maps"] else []
    if c.get("paths"):
        targets += [f"{base}/paths/paths.csv", f"{base}/paths/latents.png", f"{base}/path_maps"]
    if dataset.get("match"):
        targets += [f"{base}/match/{file}" for file in ("scores.csv", "queries.csv", "scores.png")]
    return targets


def workflow_targets(config: dict) -> list[str]:
    """Every file the workflow makes by default (``rule all``): each dataset's targets,
    then each comparison's landscape and figures."""
    datasets, comparisons = config["datasets"], config.get("compare") or {}
    targets = [t for name, dataset in datasets.items() for t in dataset_targets(name, dataset)]
    targets += [t for name, dataset in datasets.items() for t in analysis_targets(name, dataset)]
    targets += [f"results/compare/{name}/landscape.npz" for name in comparisons]
    return targets + [f"results/compare/{name}/{figure}.png" for name in comparisons for figure in COMPARE_FIGURES]
