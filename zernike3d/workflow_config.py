"""The workflow's configuration (config/config.yaml), checked as pure functions.

:func:`check_config` is what ``workflow/rules/common.smk`` calls once, while Snakemake
parses the workflow and before any job runs (also for ``snakemake -n``). It

1. re-reads the config files for keys given twice (Snakemake's YAML loader keeps the
   last one silently: a second dataset of the same name would replace the first);
2. validates the config against ``config/schema/config.schema.yaml`` with strict types
   (``integer`` is an int, not 16.0; a ``number`` is finite, not YAML's .inf or .nan);
3. fills in the schema's defaults (each in its own copy), then the one default the
   schema cannot state, :data:`DEFAULT_ORDER` (``order`` and ``resolution`` both null);
4. checks each dataset's sources (exactly one input, what goes with what);
5. checks the settings against what can be read cheaply of the inputs
   (:func:`input_facts`: map headers, ``.cs`` row counts, the example's settings): crop
   and bin against the box, the resolution against the voxels (Nyquist), latents,
   particle rows, k-means centres and the ``clusters`` section against the components
   and particles, ``reconstruct.order`` against ``order``;
6. checks the comparisons (``compare``) and the match queries.

Every problem is one line naming the configuration key (``datasets.J42.preprocess.bin:
...``); a phase that finds any raises :class:`ConfigError` carrying all its lines, so a
later phase never sees an inconsistent config. Where a stage makes the same check, both
call one function (:func:`zernike3d.maths.preprocessing.binning_problem`,
:func:`zernike3d.maths.resolution.resolves`, :func:`zernike3d.maths.resolution.chosen_order`,
the stages' own parsers), so that the workflow refuses exactly what the job would.

Functions that take ``dataset`` take one entry of ``config["datasets"]`` with the
schema's defaults filled in. Users' reference for every key: config/README.md.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

#: the schema every config is checked against
SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schema" / "config.schema.yaml"
#: the input keys of a dataset, exactly one of which is given
SOURCES = ("job_dir", "map", "wiggle", "example")
#: the order of a dataset that gives neither ``order`` nor ``resolution``
DEFAULT_ORDER = 20


class ConfigError(Exception):
    """The config cannot run: ``lines``, one per problem, each naming its key."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class InputFacts(NamedTuple):
    """What a dataset's input holds, read before any job runs; None where unknown."""

    box: int | None  #: voxels along the map's longest edge
    components: int | None  #: 3DVA components
    particles: int | None  #: particle rows
    voxel_size: float | None  #: Å


def check_config(config: dict, config_files: Iterable[str], schema_path: str | Path = SCHEMA) -> dict[str, InputFacts]:
    """Check ``config`` (as Snakemake read it from ``config_files``) and fill in its
    defaults in place; return each dataset's :class:`InputFacts`. Raises
    :class:`ConfigError` with every problem of the first phase that finds one (see the
    module's docstring for the phases)."""
    config_files = [str(f) for f in config_files]
    _raise_if(config_file_problems(config_files))
    schema = load_schema(schema_path)
    files = ", ".join(config_files) or "the configuration"
    _raise_if(f"{files}: {problem} (see config/README.md)" for problem in schema_problems(config, schema))
    fill_defaults(config, schema)
    datasets = config["datasets"]
    _raise_if(problem for name, dataset in datasets.items() for problem in source_problems(name, dataset))
    for dataset in datasets.values():
        if dataset["order"] is None and dataset["resolution"] is None:
            dataset["order"] = DEFAULT_ORDER
    facts = {name: input_facts(name, dataset) for name, dataset in datasets.items()}
    _raise_if(problem for name, dataset in datasets.items() for problem in input_problems(name, dataset, facts[name]))
    _raise_if(comparison_problems(config["compare"], datasets))
    _raise_if(match_problems(datasets))
    return facts


def _raise_if(problems: Iterable[str]) -> None:
    problems = list(problems)
    if problems:
        raise ConfigError(problems)


# --- the files and the schema -------------------------------------------------------


def duplicate_keys(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, int, int]]:
    """``(key path, first line, second line)`` of every key given twice in a mapping of
    the composed YAML ``node`` (:func:`yaml.compose`; lines count from 1)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                yield ".".join(path + (key,)), seen[key], line
            seen.setdefault(key, line)
            yield from duplicate_keys(value, path + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from duplicate_keys(item, path + (str(i),))


def config_file_problems(paths: Iterable[str]) -> list[str]:
    """A line for each file of ``paths`` that is not YAML and for each key given twice."""
    import yaml

    problems = []
    for path in paths:
        try:
            with open(path) as f:
                node = yaml.compose(f)
        except yaml.YAMLError as err:
            problems.append(f"{path}: not valid YAML ({err})")
            continue
        problems += [f"{path}: {key}: given twice (lines {first} and {second}); "
                     "the second would silently replace the first (see config/README.md)"
                     for key, first, second in duplicate_keys(node)]
    return problems


def load_schema(path: str | Path = SCHEMA) -> dict:
    """The config schema (YAML) at ``path``."""
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def strict_validator(schema: dict, fill: bool = False) -> Any:
    """jsonschema's validator for ``schema``, except that ``integer`` means an int (JSON
    Schema counts 16.0 as an integer, the stages' options do not) and a ``number`` is
    finite (YAML's .inf and .nan are floats). With ``fill``, validating an instance also
    sets each absent property that has a default to a copy of it."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    checker = base.TYPE_CHECKER.redefine_many({
        "integer": lambda _, value: isinstance(value, int) and not isinstance(value, bool),
        "number": lambda _, value: isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value),
    })
    validators = {}
    if fill:
        properties = base.VALIDATORS["properties"]

        def fill_then_validate(validator, props, instance, subschema):
            if isinstance(instance, dict):
                for key, sub in props.items():
                    if "default" in sub and key not in instance:
                        instance[key] = copy.deepcopy(sub["default"])
            yield from properties(validator, props, instance, subschema)

        validators["properties"] = fill_then_validate
    return jsonschema.validators.extend(base, validators, type_checker=checker)(schema)


def schema_problems(config: dict, schema: dict) -> list[str]:
    """One line per way ``config`` breaks ``schema``: ``key.path: message``, the key
    ``(top level)`` for the config itself; a ``oneOf`` with a description says what
    was expected in its words."""
    problems = []
    errors = strict_validator(schema).iter_errors(config)
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        hint = error.schema.get("description") if isinstance(error.schema, dict) else None
        if error.validator == "oneOf" and hint:
            message = f"{error.instance!r} is not allowed here; expected {hint}"
        else:
            message = error.message
        problems.append(f"{where}: {message}")
    return problems


def fill_defaults(config: dict, schema: dict) -> None:
    """Set every key of ``config`` (valid against ``schema``) that is absent and has a
    default in the schema, nested sections included."""
    strict_validator(schema, fill=True).validate(config)


# --- each dataset's sources -----------------------------------------------------------


def source_problems(name: str, dataset: dict) -> list[str]:
    """What is wrong with the inputs ``dataset`` names: exactly one of :data:`SOURCES`,
    components and particles together and only with a map, order or resolution."""
    where = f"datasets.{name}"
    given = [key for key in SOURCES if dataset.get(key) is not None]
    problems = []
    if len(given) != 1:
        problems.append(f"{where}: give exactly one input of {', '.join(SOURCES)} (got {', '.join(given) or 'none'})")
    if (dataset.get("components") or dataset.get("particles")) and given != ["map"]:
        problems.append(f"{where}: components/particles go with map")
    if bool(dataset.get("components")) != bool(dataset.get("particles")):
        problems.append(f"{where}: give both components and particles, or neither")
    if dataset.get("order") is not None and dataset.get("resolution") is not None:
        problems.append(f"{where}: give order or resolution, not both")
    return problems


def is_3dva(dataset: dict) -> bool:
    """Does the dataset have particles (a 3DVA job), whether or not per-particle
    invariants are computed?"""
    return any(dataset.get(key) is not None for key in ("job_dir", "wiggle", "example", "particles"))


def has_particles(dataset: dict) -> bool:
    """Does this dataset have 3DVA particles, and are per-particle results wanted?"""
    return bool(dataset.get("particle_invariants")) and is_3dva(dataset)


def clusters_of(dataset: dict) -> dict:
    """The dataset's clusters section; {} for a dataset without particles."""
    return (dataset.get("clusters") or {}) if is_3dva(dataset) else {}


# --- checks against the inputs --------------------------------------------------------


def input_facts(name: str, dataset: dict) -> InputFacts:
    """What the input of dataset ``name`` holds, read cheaply before any job runs (map
    headers, the .cs row count, the example's settings, ``apix``); None where that is
    not possible (a WIGGLE bundle, the example's voxel size). A named input file that is
    missing, or a job folder that is not one, raises :class:`ConfigError` with its key."""
    from zernike3d.scheduling.inputs import cs_row_count, mrc_box, mrc_voxel_size

    where, apix = f"datasets.{name}", dataset.get("apix")
    if dataset.get("example") is not None:
        example = dataset["example"]
        if example.get("particles_cs"):
            rows = cs_row_count(example["particles_cs"]) if os.path.isfile(example["particles_cs"]) else None
        else:
            from zernike3d.synthetic import SYNTHETIC_PARTICLE_COUNT

            rows = SYNTHETIC_PARTICLE_COUNT
        return InputFacts(example["box"], example["n_components"], rows, apix)
    missing = [f"{where}.{key}: {dataset[key]}: file not found" for key in ("map", "particles", "wiggle")
               if dataset.get(key) and not os.path.isfile(dataset[key])]
    missing += [f"{where}.components.{i}: {path}: file not found"
                for i, path in enumerate(dataset.get("components") or []) if not os.path.isfile(path)]
    _raise_if(missing)
    if dataset.get("job_dir"):
        from zernike3d.errors import InputError
        from zernike3d.io.cryosparc import find_job_files

        try:
            map_path, components, particles = find_job_files(dataset["job_dir"])
        except InputError as err:
            raise ConfigError([f"{where}.job_dir: {err}"]) from None
        return InputFacts(mrc_box(map_path), len(components), cs_row_count(particles), apix or mrc_voxel_size(map_path))
    if dataset.get("map"):
        box, voxel_size = mrc_box(dataset["map"]), apix or mrc_voxel_size(dataset["map"])
        if not dataset.get("components"):
            return InputFacts(box, 0, 0, voxel_size)
        return InputFacts(box, len(dataset["components"]), cs_row_count(dataset["particles"]), voxel_size)
    return InputFacts(None, None, None, apix)


def input_problems(name: str, dataset: dict, facts: InputFacts) -> list[str]:
    """What ``dataset`` (named ``name``) asks of its input that the input (``facts``)
    cannot give: crop and bin against the box, the resolution against the voxels,
    the clusters section, the reconstruction's order, latents, particle rows and
    k-means centres."""
    from zernike3d.maths.preprocessing import MIN_BINNED_BOX, binning_problem
    from zernike3d.maths.resolution import nyquist, resolves

    where = f"datasets.{name}"
    preprocess, reconstruct = dataset["preprocess"], dataset["reconstruct"]
    crop, factor = preprocess.get("crop"), preprocess["bin"]
    problems = []
    if facts.box is not None:
        if crop is not None and crop > facts.box:
            problems.append(f"{where}.preprocess.crop: {crop} voxels is larger than the input's box of {facts.box}")
        size = crop or facts.box
        broken = binning_problem(size, factor)
        if broken == "too small":
            problems.append(f"{where}.preprocess.bin: the box of {size} voxels binned by {factor} leaves "
                            f"{size // factor}; a map needs at least {MIN_BINNED_BOX}")
        elif broken == "not divisible":
            problems.append(f"{where}.preprocess.bin: the box of {size} voxels is not divisible by {factor}")
    resolution = dataset.get("resolution")
    if facts.voxel_size is not None and resolution is not None and not resolves(resolution, facts.voxel_size * factor):
        binned = f", {facts.voxel_size:g} Å voxels binned by {factor})" if factor > 1 else ")"
        problems.append(f"{where}.resolution: {resolution:g} Å is finer than the voxels resolve (Nyquist: "
                        f"2 x {facts.voxel_size * factor:g} Å = {nyquist(facts.voxel_size * factor):g} Å{binned}")
    problems += cluster_problems(f"{where}.clusters", clusters_of(dataset), facts.components, facts.particles)
    if reconstruct.get("order") is not None and dataset["order"] is not None and reconstruct["order"] > dataset["order"]:
        problems.append(f"{where}.reconstruct.order: {reconstruct['order']} is above the dataset's order {dataset['order']}")
    if facts.components is not None:
        problems += [f"{where}.reconstruct.latents.{i}: {len(point)} coordinates, but the input has "
                     f"{facts.components} components"
                     for i, point in enumerate(reconstruct.get("latents") or []) if len(point) != facts.components]
    particles = facts.particles
    if particles is not None and has_particles(dataset):
        rows = [i for i in reconstruct.get("particles") or [] if isinstance(i, int) and i >= particles]
        if rows:
            problems.append(f"{where}.reconstruct.particles: row {rows[0]} is out of range; the input has "
                            f"{particles} particles (rows 0-{particles - 1})")
        if reconstruct.get("kmeans") and reconstruct["kmeans"] > particles:
            problems.append(f"{where}.reconstruct.kmeans: {reconstruct['kmeans']} centres for {particles} particles")
    return problems


def cluster_problems(where: str, clusters: dict, components: int | None, particles: int | None) -> list[str]:
    """The problems of ``clusters`` (a dataset's ``clusters`` section, defaults filled
    in) at key ``where`` (e.g. ``datasets.J42.clusters``), for an input of
    ``components`` latent components and ``particles`` particles (None: unknown), as
    the cluster and path stages would find them."""
    from zernike3d.analysis.clusters import MAX_CLUSTERS, parse_bins, parse_range
    from zernike3d.errors import InputError
    from zernike3d.analysis.paths import check_counts

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
        for quantity, _, _ in conditions:
            latent = re.fullmatch(r"z_(\d+)", quantity)
            invariant = re.fullmatch(r"F_(\d+)_(\d+)", quantity)
            if latent and components is not None and int(latent[1]) >= components:
                problems.append(f"{where}.ranges.{i}: {quantity}, but the input has {components} components")
            elif invariant and clusters.get("space") != "invariants":
                problems.append(f"{where}.ranges.{i}: {quantity} is an invariant: it needs space: invariants")
            elif not latent and not invariant:
                problems.append(f"{where}.ranges.{i}: unknown quantity {quantity!r} (z_K or F_n_l)")
    paths = [tuple(str(end) for end in pair) for pair in clusters.get("paths") or []]
    for i, pair in enumerate(paths):
        if pair in paths[:i]:
            problems.append(f"{where}.paths.{i}: {pair[0]} to {pair[1]} is given twice")
        for end in pair:
            problems += [f"{where}.paths.{i}: {problem}" for problem in _state_problems(end, k, components, particles)]
    if paths and particles is not None:
        try:
            check_counts(clusters["path_frames"], clusters["path_neighbours"], particles,
                         names=(f"{where}.path_frames", f"{where}.path_neighbours"))
        except InputError as err:
            problems.append(str(err))
    return problems


def _state_problems(end: str, k: int, components: int | None, particles: int | None) -> list[str]:
    """What is wrong with the path end ``end`` (cluster_NN of ``k`` clusters, z:z0,..,
    index:ROW) for the input."""
    cluster = re.fullmatch(r"cluster_(\d+)", end)
    if cluster and int(cluster[1]) >= k:
        made = f"cluster_00 to cluster_{k - 1:02d}" if k else "none"
        return [f"{end}, but clusters.k is {k} (clusters made: {made})"]
    kind, _, value = end.partition(":")
    if kind == "z" and components is not None:
        try:
            z = [float(v) for v in value.split(",")]
        except ValueError:
            return [f"{end}: expected z:z0,z1,.. numbers"]
        if len(z) != components or not all(math.isfinite(v) for v in z):
            return [f"{end} has {len(z)} finite values; the input has {components} components"]
    if kind == "index" and particles is not None and (not value.isdigit() or int(value) >= particles):
        return [f"{end}: particle index out of range 0..{particles - 1}"]
    return []


# --- comparisons and match queries ----------------------------------------------------


def comparison_problems(comparisons: dict, datasets: dict) -> list[str]:
    """Each comparison's members are datasets with per-particle invariants, and no
    dataset is called ``compare`` (results/compare/ holds the comparisons)."""
    problems = []
    if comparisons and "compare" in datasets:
        problems.append("datasets.compare: rename this dataset; results/compare/ holds the comparisons")
    for name, members in comparisons.items():
        for member in members:
            if member not in datasets:
                problems.append(f"compare.{name}: no dataset {member!r} (datasets: {', '.join(datasets)})")
            elif not has_particles(datasets[member]):
                problems.append(f"compare.{name}: {member} is not a 3D Variability job with per-particle "
                                "invariants (compare reads each job's particle_invariants.zarr)")
    return problems


def match_problems(datasets: dict) -> list[str]:
    """Every query file exists and the stems of a dataset's queries differ (they name the
    columns and files of its match/ folder), checked as the match stage checks them."""
    from zernike3d.errors import InputError
    from zernike3d.io.match_files import check_stems

    problems = []
    for name, dataset in datasets.items():
        queries = dataset.get("match") or []
        missing = [f"datasets.{name}.match.{i}: {path}: file not found"
                   for i, path in enumerate(queries) if not os.path.isfile(path)]
        problems += missing
        if queries and not missing:
            try:
                check_stems(queries)
            except InputError as err:
                problems.append(f"datasets.{name}.match: {err}")
    return problems


# --- what the settings mean -----------------------------------------------------------


def dataset_order(dataset: dict, bundle_path: str | Path) -> int:
    """The dataset's order: ``order``, or the one ``resolution`` needs in the ball of the
    dataset bundle at ``bundle_path``, chosen as `zernike3d decompose --resolution`
    chooses it (raises FileNotFoundError before the bundle exists)."""
    if dataset["resolution"] is None:
        return dataset["order"]
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.resolution import chosen_order
    from zernike3d.scheduling.inputs import bundle_shape
    from zernike3d.stages.common import parse_center, parse_radius

    shape = bundle_shape(bundle_path)
    center = dataset["center"]
    center = parse_center(",".join(map(str, center)) if isinstance(center, list) else center)
    geometry = BallGeometry.for_box(shape.box, shape.voxel_size, parse_radius(str(dataset["radius"])), center)
    return chosen_order(None, dataset["resolution"], geometry.radius)
