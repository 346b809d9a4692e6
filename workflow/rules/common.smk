# Shared helpers: configuration checks, per-dataset settings, the stage command, and
# the resources (threads, memory, run time, GPU) of every rule.

import functools
import os
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(workflow.basedir).resolve().parent
SCHEMA = REPO / "config" / "schema" / "config.schema.yaml"

# The rules run the zernike3d of this checkout (the one the workflow belongs to), not
# whatever version happens to be installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from zernike3d.scheduling import policy  # noqa: E402
from zernike3d.scheduling.policy import Site  # noqa: E402


def config_error(*lines):
    """Stop before any job with ``lines`` (one per problem, each naming its key) and exit
    status 1: raising would add Snakemake's traceback lines into this file."""
    for line in lines:
        print(line, file=sys.stderr)
    sys.exit(1)


def _duplicate_keys(node, path=()):
    """``(key path, first line, second line)`` of every key given twice in a mapping of
    the composed YAML ``node`` (Snakemake's loader keeps the last one silently)."""
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key_node, value in node.value:
            key = (
                key_node.value
                if isinstance(key_node, yaml.ScalarNode)
                else str(key_node)
            )
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                yield ".".join(path + (key,)), seen[key], line
            seen.setdefault(key, line)
            yield from _duplicate_keys(value, path + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, path + (str(i),))


def _check_config_files():
    """Snakemake reads the config files itself and keeps the last of two equal keys (a
    second dataset of the same name replaces the first): read them again, refusing that.
    """
    for path in workflow.configfiles:
        try:
            with open(path) as f:
                node = yaml.compose(f)
        except yaml.YAMLError as err:  # Snakemake has read it, so this is unlikely
            config_error(f"{path}: not valid YAML ({err})")
        for key, first, second in _duplicate_keys(node):
            config_error(
                f"{path}: {key}: given twice (lines {first} and {second}); "
                "the second would silently replace the first (see config/README.md)"
            )


def _strict_validator(schema):
    """jsonschema's validator for ``schema``, except that ``integer`` means an int (JSON
    Schema counts 16.0 as an integer, the stages' options do not) and a ``number`` is
    finite (YAML's .inf and .nan are floats)."""
    import math

    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    checker = base.TYPE_CHECKER.redefine_many(
        {
            "integer": lambda _, value: isinstance(value, int)
            and not isinstance(value, bool),
            "number": lambda _, value: isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value),
        }
    )
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def _check_config(config):
    """Validate against the schema with one short line per problem, naming the key;
    then let snakemake.utils.validate fill in the defaults."""
    with open(SCHEMA) as f:
        schema = yaml.safe_load(f)
    validator = _strict_validator(schema)
    problems = []
    for error in sorted(
        validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))
    ):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        hint = (
            error.schema.get("description") if isinstance(error.schema, dict) else None
        )
        if error.validator == "oneOf" and hint:
            message = f"{error.instance!r} is not allowed here; expected {hint}"
        else:
            message = error.message
        problems.append(f"{where}: {message}")
    if problems:
        files = ", ".join(str(f) for f in workflow.configfiles) or "the configuration"
        config_error(
            *(f"{files}: {problem} (see config/README.md)" for problem in problems)
        )
    validate(config, str(SCHEMA))  # sets the schema's defaults


_check_config_files()
_check_config(config)

SOURCES = ("job_dir", "map", "wiggle", "example")
DATASETS = config["datasets"]


def _check_sources():
    for name, d in DATASETS.items():
        given = [key for key in SOURCES if d.get(key) is not None]
        if len(given) != 1:
            config_error(
                f"datasets.{name}: give exactly one input of {', '.join(SOURCES)} "
                f"(got {', '.join(given) or 'none'})"
            )
        if (d.get("components") or d.get("particles")) and given != ["map"]:
            config_error(f"datasets.{name}: components/particles go with map")
        if bool(d.get("components")) != bool(d.get("particles")):
            config_error(
                f"datasets.{name}: give both components and particles, or neither"
            )
        if d.get("order") is not None and d.get("resolution") is not None:
            config_error(f"datasets.{name}: give order or resolution, not both")
        if d.get("order") is None and d.get("resolution") is None:
            d["order"] = 20


_check_sources()


def _input_facts(name):
    """``(box, components, particles, voxel size in Å)`` of a dataset's input, read
    cheaply before any job runs (map headers, the .cs row count, the example's settings,
    ``apix``); each None where that is not possible (a WIGGLE bundle, the example's voxel
    size). A named input file that is missing stops the run with its key."""
    from zernike3d.scheduling.inputs import cs_row_count, mrc_box, mrc_voxel_size

    d = DATASETS[name]
    if d.get("example") is not None:
        e = d["example"]
        if e.get("particles_cs"):
            rows = (
                cs_row_count(e["particles_cs"])
                if os.path.isfile(e["particles_cs"])
                else None
            )
        else:
            from inspect import signature

            from zernike3d.synthetic import synthetic_particles

            rows = signature(synthetic_particles).parameters["count"].default
        return e["box"], e["n_components"], rows, d.get("apix")
    for key in ("map", "particles", "wiggle"):
        if d.get(key) and not os.path.isfile(d[key]):
            config_error(f"datasets.{name}.{key}: {d[key]}: file not found")
    for i, path in enumerate(d.get("components") or []):
        if not os.path.isfile(path):
            config_error(f"datasets.{name}.components.{i}: {path}: file not found")
    if d.get("job_dir"):
        from zernike3d.errors import InputError
        from zernike3d.stages.import_data import find_job_files

        try:
            map_path, components, particles = find_job_files(d["job_dir"])
        except InputError as err:
            config_error(f"datasets.{name}.job_dir: {err}")
        voxel = d.get("apix") or mrc_voxel_size(map_path)
        return mrc_box(map_path), len(components), cs_row_count(particles), voxel
    if d.get("map"):
        box, voxel = mrc_box(d["map"]), d.get("apix") or mrc_voxel_size(d["map"])
        if not d.get("components"):
            return box, 0, 0, voxel
        return box, len(d["components"]), cs_row_count(d["particles"]), voxel
    return None, None, None, d.get("apix")


def _check_against_inputs():
    """What the config asks of each dataset's input, checked before any job runs: crop
    and bin against the map's box, the resolution against the voxels, latents against
    the number of components, particle rows and k-means centres against the number of
    particles, the clusters a path names against those made. Each problem stops the run
    (also `snakemake -n`) with one line naming the key."""
    from zernike3d.maths.resolution import nyquist
    from zernike3d.stages.preprocess import MIN_BINNED_BOX

    for name, d in DATASETS.items():
        box, components, particles, voxel = _input_facts(name)
        where = f"datasets.{name}"
        p, r = d["preprocess"], d["reconstruct"]
        if box is not None:
            if p.get("crop") is not None and p["crop"] > box:
                config_error(
                    f"{where}.preprocess.crop: {p['crop']} voxels is larger than the input's box of {box}"
                )
            size = p.get("crop") or box
            if size // p["bin"] < MIN_BINNED_BOX:
                config_error(
                    f"{where}.preprocess.bin: the box of {size} voxels binned by {p['bin']} leaves "
                    f"{size // p['bin']}; a map needs at least {MIN_BINNED_BOX}"
                )
            if size % p["bin"]:
                config_error(
                    f"{where}.preprocess.bin: the box of {size} voxels is not divisible by {p['bin']}"
                )
        if voxel is not None and d.get("resolution") is not None:
            finest = nyquist(voxel * p["bin"])
            if d["resolution"] < finest:
                config_error(
                    f"{where}.resolution: {d['resolution']:g} Å is finer than the voxels resolve "
                    f"(Nyquist: 2 x {voxel * p['bin']:g} Å = {finest:g} Å"
                    + (
                        f", {voxel:g} Å voxels binned by {p['bin']})"
                        if p["bin"] > 1
                        else ")"
                    )
                )
        from zernike3d.config_checks import cluster_problems

        for problem in cluster_problems(
            f"{where}.clusters", clusters_of(name), components, particles
        ):
            raise WorkflowError(problem)
        k = clusters_of(name).get("k") or 0
        for i, pair in enumerate(clusters_of(name).get("paths") or []):
            for end in pair:
                found = re.fullmatch(r"cluster_(\d+)", str(end))
                if found and int(found[1]) >= k:
                    made = f"cluster_00 to cluster_{k - 1:02d}" if k else "none"
                    config_error(
                        f"{where}.clusters.paths.{i}: {end}, but clusters.k is {k} (clusters made: {made})"
                    )
        if (
            r.get("order") is not None
            and d["order"] is not None
            and r["order"] > d["order"]
        ):
            config_error(
                f"{where}.reconstruct.order: {r['order']} is above the dataset's order {d['order']}"
            )
        if components is not None:
            for i, point in enumerate(r.get("latents") or []):
                if len(point) != components:
                    config_error(
                        f"{where}.reconstruct.latents.{i}: {len(point)} coordinates, but the input has "
                        f"{components} components"
                    )
        if particles is not None and has_particles(name):
            rows = [
                i
                for i in r.get("particles") or []
                if isinstance(i, int) and i >= particles
            ]
            if rows:
                config_error(
                    f"{where}.reconstruct.particles: row {rows[0]} is out of range; the input has "
                    f"{particles} particles (rows 0-{particles - 1})"
                )
            if r.get("kmeans") and r["kmeans"] > particles:
                config_error(
                    f"{where}.reconstruct.kmeans: {r['kmeans']} centres for {particles} particles"
                )


def has_particles(name):
    """Does this dataset have 3DVA particles (and are per-particle results wanted)?"""
    d = DATASETS[name]
    return (
        bool(d.get("particle_invariants"))
        and (
            d.get("job_dir")
            or d.get("wiggle")
            or d.get("example")
            or d.get("particles")
        )
        is not None
    )


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


def dataset_order(d, path):
    """The dataset's order: ``order``, or the one ``resolution`` needs in the ball of the
    bundle at ``path``, chosen as `zernike3d decompose --resolution` chooses it (raises
    FileNotFoundError before the bundle exists)."""
    if d["resolution"] is None:
        return d["order"]
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.resolution import order_for_resolution
    from zernike3d.scheduling.inputs import bundle_shape
    from zernike3d.stages.common import parse_center, parse_radius

    shape = bundle_shape(path)
    center = d["center"]
    center = parse_center(
        ",".join(map(str, center)) if isinstance(center, list) else center
    )
    radius = parse_radius(str(d["radius"]))
    geometry = BallGeometry.for_box(
        shape.box, shape.voxel_size, radius=radius, center=center
    )
    return order_for_resolution(d["resolution"], geometry.radius)


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
        opt("--bin", p["bin"] if p.get("bin", 1) > 1 else None),
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
        return f"--particles {shlex.quote(input.data)} --particles-out {shlex.quote(store)}"
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
    d = DATASETS[name]
    return any(
        d.get(key) is not None for key in ("job_dir", "wiggle", "example", "particles")
    )


def clusters_of(name):
    """The dataset's clusters section; {} for a dataset without particles."""
    return (DATASETS[name].get("clusters") or {}) if is_3dva(name) else {}


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


# every check against the inputs, once all the helpers it uses are defined
_check_against_inputs()


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


def _check_match_queries():
    """Every query file exists and the stems of a dataset's queries differ (they name the
    columns and files of its match/ folder), as the stage checks them: one line naming
    the key otherwise."""
    from zernike3d.errors import InputError
    from zernike3d.stages.match import check_stems

    for name in match_datasets():
        for i, path in enumerate(DATASETS[name]["match"]):
            if not os.path.isfile(path):
                raise WorkflowError(
                    f"datasets.{name}.match.{i}: {path}: file not found"
                )
        try:
            check_stems(DATASETS[name]["match"])
        except InputError as err:
            raise WorkflowError(f"datasets.{name}.match: {err}")


_check_match_queries()
