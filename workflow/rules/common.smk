# Shared helpers: configuration checks, per-dataset settings, the stage command, and
# the resources (threads, memory, run time, GPU) of every rule.

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
from zernike3d.resources import rule_resources  # noqa: E402


def _check_config(config):
    """Validate against the schema with one short line per problem, naming the key;
    then let snakemake.utils.validate fill in the defaults."""
    import jsonschema

    with open(SCHEMA) as f:
        schema = yaml.safe_load(f)
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        hint = error.schema.get("description") if isinstance(error.schema, dict) else None
        if error.validator == "oneOf" and hint:
            message = f"{error.instance!r} is not allowed here; expected {hint}"
        else:
            message = error.message
        problems.append(f"  {where}: {message}")
    if problems:
        files = ", ".join(str(f) for f in workflow.configfiles) or "the configuration"
        raise WorkflowError(
            f"Invalid configuration ({files}); see config/README.md:\n" + "\n".join(problems)
        )
    validate(config, str(SCHEMA))  # sets the schema's defaults


_check_config(config)

SOURCES = ("job_dir", "map", "wiggle", "example")
DATASETS = config["datasets"]


def _check_sources():
    for name, d in DATASETS.items():
        given = [key for key in SOURCES if d.get(key) is not None]
        if len(given) != 1:
            raise WorkflowError(
                f"datasets.{name}: give exactly one input of {', '.join(SOURCES)} "
                f"(got {', '.join(given) or 'none'})"
            )
        if (d.get("components") or d.get("particles")) and given != ["map"]:
            raise WorkflowError(f"datasets.{name}: components/particles go with map")
        if bool(d.get("components")) != bool(d.get("particles")):
            raise WorkflowError(f"datasets.{name}: give both components and particles, or neither")
        if d.get("order") is not None and d.get("resolution") is not None:
            raise WorkflowError(f"datasets.{name}: give order or resolution, not both")
        if d.get("order") is None and d.get("resolution") is None:
            d["order"] = 20


_check_sources()


def has_particles(name):
    """Does this dataset have 3DVA particles (and are per-particle results wanted)?"""
    d = DATASETS[name]
    return bool(d.get("particle_invariants")) and (
        d.get("job_dir") or d.get("wiggle") or d.get("example") or d.get("particles")
    ) is not None


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
# zernike3d.resources.run_measured, which ends the log with the job's exact peak memory. (The prefix is formatted
# like the command, hence the doubled braces.) The multi-threaded rules set
# NUMBA_NUM_THREADS/OMP_NUM_THREADS to their threads, so that numba and BLAS use the
# job's CPUs, not every core of the node.
PYTHON = "python" if _uses_conda() else shlex.quote(sys.executable)
shell.prefix(
    "set -euo pipefail; "
    f"export PYTHONPATH={shlex.quote(str(REPO))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f'zernike3d() {{{{ {PYTHON} -m zernike3d.resources run "$@"; }}}}; '
)


def conda_env(gpu_capable=False):
    """envs/*.yaml for --sdm conda: the CuPy one for GPU-capable rules when a GPU is asked for."""
    def choose(wildcards):
        gpu = gpu_capable and settings(wildcards)["gpu"]
        return str(REPO / "envs" / ("zernike3d-gpu.yaml" if gpu else "zernike3d-cpu.yaml"))

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
    from zernike3d.resources import bundle_shape
    from zernike3d.stages.common import parse_center, parse_radius

    shape = bundle_shape(path)
    center = d["center"]
    center = parse_center(",".join(map(str, center)) if isinstance(center, list) else center)
    radius = parse_radius(str(d["radius"]))
    geometry = BallGeometry.for_box(shape.box, shape.voxel_size, radius=radius, center=center)
    return order_for_resolution(d["resolution"], geometry.radius)


def geometry_args(wildcards):
    d = settings(wildcards)
    return " ".join(filter(None, [opt("--radius", d["radius"]), opt("--center", d["center"])]))


# --- resources ----------------------------------------------------------------------

#: stages whose code can run on a GPU (CuPy): only these ever request one
GPU_STAGES = ("decompose", "reconstruct")
_SINGLE_THREADED = ("example", "import", "preprocess")


def rule_threads(stage):
    def threads(wildcards):
        override = (config["resources"].get(stage) or {}).get("threads")
        if override:
            return override
        return 1 if stage in _SINGLE_THREADED else settings(wildcards)["threads"]

    return threads


def _estimate(stage, wildcards, path, attempt):
    d = settings(wildcards)
    d["threads"] = rule_threads(stage)(wildcards)
    d["gpu_memory_gb"] = config.get("gpu_memory_gb")
    d["slurm_gpu_model"] = config.get("slurm_gpu_model")
    order = d["order"] if stage in ("example", "import", "preprocess") else dataset_order(d, path)
    if stage == "reconstruct" and d["reconstruct"].get("order") is not None:
        order = d["reconstruct"]["order"]
    override = config["resources"].get(stage) or {}
    if override.get("mem_mb") and override.get("runtime"):
        est = {"gpu": 1}  # no need to look at the input: a GPU when the dataset allows one
    else:
        est = rule_resources(stage, path, order, d)
    mem_mb = override.get("mem_mb") or est["mem_mb"] * attempt  # more memory on a retry
    runtime = override.get("runtime") or est["runtime"] * attempt
    if d.get("max_runtime"):
        runtime = min(runtime, d["max_runtime"])
    gpu = d["gpu"] == "always" or (d["gpu"] is True and est["gpu"])
    return {"mem_mb": int(mem_mb), "runtime": int(runtime), "gpu": int(gpu)}


def max_memory_arg(wildcards, resources):
    """``--max-memory`` (GiB) of a transform job: its allocation, so that the job's own
    plan stays inside it (nothing while the allocation is still <TBD>, in a dry run)."""
    if not isinstance(resources.mem_mb, (int, float)):
        return ""
    return f"--max-memory {resources.mem_mb * 1e6 / 2**30:.3f}"


#: does any dataset ask for a GPU? If none does, no rule declares GPU resources at all
ANY_GPU = any(settings(name)["gpu"] for name in DATASETS)


def rule_resources_for(stage, input_key):
    """Resource callables for a rule of ``stage``, sized from ``input[input_key]``.

    ``mem_mb``/``runtime`` come from zernike3d.resources.rule_resources (the input's box,
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
        res["gpu_model"] = lambda wc, input, attempt: (
            (config.get("slurm_gpu_model") or "") if estimate(wc, input, attempt)["gpu"] else ""
        )
        if config.get("slurm_gpu_partition"):
            cpu_partition = config.get("slurm_partition") or ""
            res["slurm_partition"] = lambda wc, input, attempt: (
                config["slurm_gpu_partition"] if estimate(wc, input, attempt)["gpu"] else cpu_partition
            )
    return res


# --- command-line arguments and inputs of the rules ---


def import_inputs(wildcards):
    d = DATASETS[wildcards.dataset]
    if d.get("example") is not None:
        return {"source": f"results/{wildcards.dataset}/example_job"}
    if d.get("job_dir"):
        return {"source": d["job_dir"]}
    if d.get("wiggle"):
        return {"source": d["wiggle"]}
    files = {"source": d["map"]}
    if d.get("components"):
        files["components"] = d["components"]
        files["particles"] = d["particles"]
    return files


def import_args(wildcards, input):
    d = DATASETS[wildcards.dataset]
    if d.get("example") is not None or d.get("job_dir"):
        args = [opt("--job-dir", input.source)]
    elif d.get("wiggle"):
        args = [opt("--wiggle", input.source)]
    else:
        args = [opt("--map", input.source)]
        if d.get("components"):
            args.append("--components " + " ".join(shlex.quote(c) for c in input.components))
            args.append(opt("--particles", input.particles))
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


def preprocess_args(wildcards, input):
    p = DATASETS[wildcards.dataset]["preprocess"]
    mask = input.mask if "mask" in input.keys() else p.get("mask")
    center = input.markers if "markers" in input.keys() else p.get("center")
    args = [
        opt("--crop", p.get("crop")),
        opt("--center", center),
        opt("--bin", p["bin"] if p.get("bin", 1) > 1 else None),
        opt("--mask", mask),
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
            args += [opt("--series", r["series"]), opt("--percentiles", r["percentiles"])]
        args.append(opt("--kmeans", r.get("kmeans") or None))
        if r.get("particles"):
            args.append("--particle " + " ".join(shlex.quote(str(p)) for p in r["particles"]))
    if r.get("latents"):
        # --latent=z0,z1: a first value that is negative must not read as an option
        args.extend(shlex.quote("--latent=" + ",".join(map(str, z))) for z in r["latents"])
    args.append(map_extra_args(wildcards))  # --mapspace, --movie: rules/clusters.smk
    return " ".join(filter(None, args))


def qc_particle_args(wildcards, input):
    if "particle_invariants" in input.keys():
        return " ".join([
            opt("--particle-invariants", os.path.dirname(input.particle_invariants)),
            opt("--maps-index", os.path.join(input.maps, "index.csv")),
        ])
    return ""


def qc_inputs(wildcards):
    files = {
        "data": f"results/{wildcards.dataset}/preprocessed.npz",
        "moments": f"results/{wildcards.dataset}/moments.npz",
    }
    if has_particles(wildcards.dataset):
        files["particle_invariants"] = f"results/{wildcards.dataset}/particle_invariants.zarr/zarr.json"
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
        files += [f"results/{name}/qc/particle_invariants_pca.png", f"results/{name}/qc/series_maps.png"]
    return files


def all_targets():
    return [t for name in DATASETS for t in dataset_targets(name)]
