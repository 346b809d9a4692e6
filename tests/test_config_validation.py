"""zernike3d.workflow_config: the workflow's config checks as plain functions, without
Snakemake (the workflow's own runs are in test_workflow_config.py), and the defaults of
the schema against those of the library and the stages."""

import argparse
import inspect
import math
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import write_raw

from zernike3d import workflow_config as wc
from zernike3d.errors import InputError
from zernike3d.workflow_config import ConfigError, InputFacts


def filled(config):
    """``config`` with the schema's defaults, as check_config leaves it."""
    wc.fill_defaults(config, wc.load_schema())
    return config


def one_map_dataset(path, **settings):
    return {"map": str(path), **settings}


@pytest.fixture
def small_map(tmp_path):
    """A 32-voxel map of 2 Å voxels, written by mrcfile."""
    return write_raw(tmp_path / "small.mrc", np.zeros((32, 32, 32), np.float32), voxel_size=2.0)


# --- the files and the schema ---------------------------------------------------------


def test_keys_given_twice_are_found_with_both_lines(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("datasets:\n  a:\n    map: x.mrc\n  b:\n    map: y.mrc\n    order: 3\n    order: 4\n  a:\n    map: z.mrc\n")
    assert list(wc.duplicate_keys(yaml.compose(path.read_text()))) == [("datasets.b.order", 6, 7), ("datasets.a", 2, 8)]
    problems = wc.config_file_problems([str(path)])
    assert problems[1] == (f"{path}: datasets.a: given twice (lines 2 and 8); "
                           "the second would silently replace the first (see config/README.md)")


def test_a_file_that_is_not_yaml_is_one_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("datasets: [unclosed\n")
    (problem,) = wc.config_file_problems([str(path)])
    assert problem.startswith(f"{path}: not valid YAML")


@pytest.mark.parametrize("key, value, message", [
    ("order", 16.0, "datasets.d.order: 16.0 is not of type 'integer'"),
    ("order", True, "datasets.d.order: True is not of type 'integer'"),
    ("apix", math.nan, "datasets.d.apix: nan is not of type 'number', 'null'"),
    ("radius", math.inf, "datasets.d.radius: inf is not allowed here; expected ball radius in Å"),
    ("ordr", 3, "datasets.d: Additional properties are not allowed ('ordr' was unexpected)"),
])
def test_strict_types_name_the_key(key, value, message):
    config = {"datasets": {"d": {"map": "m.mrc", key: value}}}
    (problem,) = wc.schema_problems(config, wc.load_schema())
    assert problem.startswith(message), problem


def test_a_good_config_has_no_schema_problems_and_gets_every_default():
    config = {"datasets": {"a": {"map": "a.mrc"}, "b": {"map": "b.mrc", "preprocess": {"bin": 2}}}}
    assert wc.schema_problems(config, wc.load_schema()) == []
    filled(config)
    a, b = config["datasets"]["a"], config["datasets"]["b"]
    assert config["temperature"] == 277.15 and config["compare"] == {} and config["threads"] == 4
    assert a["preprocess"] == {"crop": None, "center": None, "bin": 1, "mask": None, "mask_radius": None, "mask_edge": None}
    assert b["preprocess"]["bin"] == 2 and b["preprocess"]["crop"] is None
    assert a["reconstruct"]["percentiles"] == [5, 95] and a["clusters"]["path_frames"] == 10
    assert a["radius"] == "inscribed" and a["order"] is None
    # each dataset holds its own copy of a default: changing one changes no other
    a["reconstruct"]["percentiles"].append(99)
    a["clusters"]["bins"].append("0:2")
    assert b["reconstruct"]["percentiles"] == [5, 95] and b["clusters"]["bins"] == []
    assert wc.load_schema()["$defs"]["dataset"]["properties"]["clusters"]["properties"]["bins"]["default"] == []


# --- check_config as the workflow calls it --------------------------------------------


def test_check_config_fills_defaults_reads_the_inputs_and_names_the_first_problem(tmp_path, small_map):
    files = [str(tmp_path / "config.yaml")]
    (tmp_path / "config.yaml").write_text("datasets: {}\n")
    config = {"datasets": {"m": one_map_dataset(small_map)}}
    facts = wc.check_config(config, files)
    assert facts == {"m": InputFacts(box=32, components=0, particles=0, voxel_size=2.0)}
    assert config["datasets"]["m"]["order"] == wc.DEFAULT_ORDER
    assert config["datasets"]["m"]["preprocess"]["bin"] == 1

    with pytest.raises(ConfigError) as err:
        wc.check_config({"datasets": {"m": one_map_dataset(small_map, threads=0)}}, files)
    assert err.value.lines == [f"{files[0]}: datasets.m.threads: 0 is less than the minimum of 1 (see config/README.md)"]
    with pytest.raises(ConfigError) as err:
        wc.check_config({"datasets": {"m": one_map_dataset(small_map, preprocess={"crop": 40})}}, files)
    assert err.value.lines == ["datasets.m.preprocess.crop: 40 voxels is larger than the input's box of 32"]
    with pytest.raises(ConfigError) as err:
        wc.check_config({"datasets": {"m": one_map_dataset(tmp_path / "absent.mrc")}}, files)
    assert err.value.lines == [f"datasets.m.map: {tmp_path / 'absent.mrc'}: file not found"]
    with pytest.raises(ConfigError) as err:  # a source problem stops before the inputs are read
        wc.check_config({"datasets": {"m": one_map_dataset(tmp_path / "absent.mrc", wiggle="w.npz")}}, files)
    assert err.value.lines == ["datasets.m: give exactly one input of job_dir, map, wiggle, example (got map, wiggle)"]


@pytest.mark.parametrize("dataset, problems", [
    ({"map": "m.mrc", "job_dir": "J1"}, ["datasets.d: give exactly one input of job_dir, map, wiggle, example (got job_dir, map)"]),
    ({}, ["datasets.d: give exactly one input of job_dir, map, wiggle, example (got none)"]),
    ({"wiggle": "w.npz", "components": ["c.mrc"]},
     ["datasets.d: components/particles go with map", "datasets.d: give both components and particles, or neither"]),
    ({"map": "m.mrc", "order": 10, "resolution": 8.0}, ["datasets.d: give order or resolution, not both"]),
    ({"map": "m.mrc", "components": ["c.mrc"], "particles": "p.cs"}, []),
])
def test_source_problems(dataset, problems):
    assert wc.source_problems("d", dataset) == problems


def test_the_example_counts_its_synthetic_particles():
    from zernike3d.synthetic import SYNTHETIC_PARTICLE_COUNT

    dataset = filled({"datasets": {"e": {"example": {"box": 24, "n_components": 2}}}})["datasets"]["e"]
    assert wc.input_facts("e", dataset) == InputFacts(24, 2, SYNTHETIC_PARTICLE_COUNT, None)


# --- checks against the inputs --------------------------------------------------------


def dataset_with(**settings):
    dataset = filled({"datasets": {"d": {"map": "m.mrc", **settings}}})["datasets"]["d"]
    if dataset["order"] is None and dataset["resolution"] is None:
        dataset["order"] = wc.DEFAULT_ORDER
    return dataset


@pytest.mark.parametrize("settings, facts, problems", [
    ({"preprocess": {"bin": 3}}, InputFacts(64, 0, 0, 1.0), ["datasets.d.preprocess.bin: the box of 64 voxels is not divisible by 3"]),
    ({"preprocess": {"bin": 16}}, InputFacts(64, 0, 0, 1.0),
     ["datasets.d.preprocess.bin: the box of 64 voxels binned by 16 leaves 4; a map needs at least 8"]),
    ({"preprocess": {"crop": 48, "bin": 2}}, InputFacts(64, 0, 0, 1.0), []),
    ({"preprocess": {"bin": 2}}, InputFacts(None, None, None, None), []),  # a WIGGLE bundle: unknown
    ({"resolution": 3.0, "preprocess": {"bin": 2}}, InputFacts(64, 0, 0, 1.0),
     ["datasets.d.resolution: 3 Å is finer than the voxels resolve (Nyquist: 2 x 2 Å = 4 Å, 1 Å voxels binned by 2)"]),
    ({"resolution": 4.0, "preprocess": {"bin": 2}}, InputFacts(64, 0, 0, 1.0), []),
    ({"reconstruct": {"order": 21}}, InputFacts(64, 0, 0, 1.0), ["datasets.d.reconstruct.order: 21 is above the dataset's order 20"]),
    ({"reconstruct": {"latents": [[0.0, 1.0], [1.0]]}}, InputFacts(64, 2, 10, 1.0),
     ["datasets.d.reconstruct.latents.1: 1 coordinates, but the input has 2 components"]),
])
def test_input_problems(settings, facts, problems):
    assert wc.input_problems("d", dataset_with(**settings), facts) == problems


def test_particle_rows_and_kmeans_are_checked_for_a_3dva_dataset():
    dataset = dataset_with(components=["c.mrc"], particles="p.cs", reconstruct={"particles": [0, 12, "uid:5"], "kmeans": 11})
    assert wc.input_problems("d", dataset, InputFacts(32, 1, 10, 1.0)) == [
        "datasets.d.reconstruct.particles: row 12 is out of range; the input has 10 particles (rows 0-9)",
        "datasets.d.reconstruct.kmeans: 11 centres for 10 particles",
    ]
    dataset["particle_invariants"] = False  # no per-particle results: nothing to check
    assert wc.input_problems("d", dataset, InputFacts(32, 1, 10, 1.0)) == []


@pytest.mark.parametrize("clusters, problems", [
    ({"k": 3, "paths": [["cluster_00", "cluster_07"]]},
     ["c.paths.0: cluster_07, but clusters.k is 3 (clusters made: cluster_00 to cluster_02)"]),
    ({"paths": [["cluster_00", "index:3"]]}, ["c.paths.0: cluster_00, but clusters.k is 0 (clusters made: none)"]),
    ({"k": 2, "paths": [["z:0,0,0", "index:40"]]},
     ["c.paths.0: z:0,0,0 has 3 finite values; the input has 2 components", "c.paths.0: index:40: particle index out of range 0..39"]),
    ({"k": 41}, ["c.k: 41 clusters, but at most 40 can be made (40 particles)"]),
    ({"k": 2, "bins": ["2:4"], "ranges": ["F_2_0=0:", "q=1:2"]},
     ["c.bins.0: component 2 out of range 0..1", "c.ranges.0: F_2_0 is an invariant: it needs space: invariants",
      "c.ranges.1: unknown quantity 'q' (z_K or F_n_l)"]),
    ({"k": 2, "paths": [["cluster_00", "cluster_01"]], "path_neighbours": 40}, ["c.path_neighbours: need 1..39 neighbours (fewer than the 40 particles, and at most 100), got 40"]),
    ({"k": 2, "paths": [["cluster_00", "cluster_01"], ["z:1,1", "index:39"]]}, []),
])
def test_cluster_problems(clusters, problems):
    section = dataset_with(components=["c.mrc"], particles="p.cs", clusters=clusters)["clusters"]
    assert wc.cluster_problems("c", section, 2, 40) == problems


def test_comparisons_name_members_that_cannot_be_compared():
    datasets = {"first": dataset_with(components=["c.mrc"], particles="p.cs"), "single": dataset_with()}
    assert wc.comparison_problems({"pair": ["first", "thrid", "single"]}, datasets) == [
        "compare.pair: no dataset 'thrid' (datasets: first, single)",
        ("compare.pair: single is not a 3D Variability job with per-particle invariants "
         "(compare reads each job's particle_invariants.zarr)"),
    ]
    assert wc.comparison_problems({"pair": ["first", "first"]}, {**datasets, "compare": datasets["first"]})[0] == (
        "datasets.compare: rename this dataset; results/compare/ holds the comparisons")
    assert wc.comparison_problems({}, {"compare": datasets["first"]}) == []


def test_match_queries_exist_and_their_stems_differ(tmp_path):
    (tmp_path / "a").mkdir()
    for path in (tmp_path / "model.pdb", tmp_path / "a" / "model.cif"):
        path.write_text("")
    assert wc.match_problems({"d": {"match": [str(tmp_path / "absent.pdb")]}}) == [
        f"datasets.d.match.0: {tmp_path / 'absent.pdb'}: file not found"]
    (problem,) = wc.match_problems({"d": {"match": [str(tmp_path / "model.pdb"), str(tmp_path / "a" / "model.cif")]}})
    assert problem.startswith("datasets.d.match: ") and "model" in problem
    assert wc.match_problems({"d": {"match": [str(tmp_path / "model.pdb")]}, "e": {}}) == []


# --- one rule for the stage and the workflow ------------------------------------------


@pytest.mark.parametrize("box, crop, factor", [(64, None, 3), (64, None, 16), (50, None, 4), (64, 48, 2), (40, None, 5),
                                               (64, 60, 8), (16, None, 2), (17, None, 2)])
def test_the_workflow_refuses_a_bin_exactly_when_preprocess_does(box, crop, factor):
    from zernike3d.stages.preprocess import _check_options

    args = SimpleNamespace(crop=crop, bin=factor, center=None, mask=None, mask_radius=None, mask_edge=None)
    try:
        _check_options(args, box)
        stage_refuses = False
    except InputError:
        stage_refuses = True
    workflow = wc.input_problems("d", dataset_with(preprocess={"crop": crop, "bin": factor}), InputFacts(box, 0, 0, 1.0))
    assert bool(workflow) == stage_refuses


@pytest.mark.parametrize("resolution, radius, center", [(8.0, "inscribed", None), (5.5, 20.0, None),
                                                         (12.0, "circumscribed", [30.0, 32.0, 34.0]), (4.0, "inscribed", "30,32,34")])
def test_the_workflow_chooses_the_order_that_decompose_chooses(tmp_path, resolution, radius, center):
    """dataset_order on the preprocessed bundle (32 voxels of 2 Å) against decompose's
    own choice in the geometry its options give."""
    from zernike3d.io.dataset import Dataset
    from zernike3d.stages.common import (
        ball_geometry,
        order_for,
        parse_center,
        parse_radius,
    )

    bundle = tmp_path / "preprocessed.npz"
    Dataset.single_map(np.zeros((32, 32, 32), np.float32), 2.0, (0.0, 0.0, 0.0), []).save(bundle)
    dataset = dataset_with(resolution=resolution, radius=radius, center=center)
    text = ",".join(map(str, center)) if isinstance(center, list) else center
    geometry = ball_geometry(32, 2.0, parse_radius(str(radius)), parse_center(text))
    assert wc.dataset_order(dataset, bundle) == order_for(SimpleNamespace(order=None, resolution=resolution), geometry)
    assert wc.dataset_order(dataset_with(order=7), "not read") == 7


@pytest.mark.parametrize("resolution, voxel_size", [(3.9, 2.0), (4.0, 2.0), (math.inf, 1.0), (math.nan, 1.0)])
def test_the_workflow_refuses_a_resolution_exactly_when_decompose_does(resolution, voxel_size):
    from zernike3d.stages.common import ball_geometry, order_for

    geometry = ball_geometry(32, voxel_size)
    try:
        order_for(SimpleNamespace(order=None, resolution=resolution), geometry)
        stage_refuses = False
    except InputError:
        stage_refuses = True
    from zernike3d.maths.resolution import resolves

    assert (not resolves(resolution, voxel_size)) == stage_refuses


# --- one definition of each default ---------------------------------------------------


def stage_default(stage, dest):
    """The default of the option ``dest`` of `zernike3d stage`, from its own parser."""
    import importlib

    from zernike3d.cli import STAGES

    parser = argparse.ArgumentParser()
    importlib.import_module(f"zernike3d.stages.{STAGES[stage][0]}").add_arguments(parser)
    return parser.get_default(dest)


def schema_default(*path):
    """The schema's default of a top-level key, or of ("dataset", key, ...) in a dataset."""
    schema = wc.load_schema()
    node = schema["$defs"]["dataset"] if path[0] == "dataset" else schema["properties"][path[0]]
    for key in path[1:]:
        node = node["properties"][key]
    return node["default"]


def test_the_schema_defaults_are_the_library_and_stage_defaults():
    from zernike3d.maths.geometry import DEFAULT_RADIUS, BallGeometry

    assert schema_default("dataset", "radius") == DEFAULT_RADIUS == stage_default("decompose", "radius")
    assert stage_default("basis", "radius") == DEFAULT_RADIUS
    assert BallGeometry.for_box(10, 1.0).radius == BallGeometry.for_box(10, 1.0, DEFAULT_RADIUS).radius == 5.0
    assert schema_default("temperature") == stage_default("compare", "temperature")
    clusters = ("dataset", "clusters")
    assert schema_default(*clusters, "path_frames") == stage_default("path", "frames")
    assert schema_default(*clusters, "path_neighbours") == stage_default("path", "neighbours")
    assert schema_default(*clusters, "method") == stage_default("cluster", "method")
    assert schema_default(*clusters, "space") == stage_default("cluster", "space")
    assert schema_default("dataset", "example", "n_components") == stage_default("example", "components")
    assert schema_default("dataset", "example", "seed") == stage_default("example", "seed")
    percentiles = stage_default("reconstruct", "percentiles")
    assert schema_default("dataset", "reconstruct", "percentiles") == [float(p) for p in percentiles.split(",")]


def test_the_defaults_the_schema_cannot_hold_are_one_constant_each():
    """order (null: DEFAULT_ORDER, or the one resolution needs) and the example's
    synthetic particles are stated in the schema's words from the constants."""
    from zernike3d.synthetic import SYNTHETIC_PARTICLE_COUNT, synthetic_particles

    schema = wc.load_schema()["$defs"]["dataset"]["properties"]
    assert schema["order"]["default"] is None and f"null = {wc.DEFAULT_ORDER}," in schema["order"]["description"]
    assert inspect.signature(synthetic_particles).parameters["count"].default == SYNTHETIC_PARTICLE_COUNT
    assert f"{SYNTHETIC_PARTICLE_COUNT} synthetic particles" in schema["example"]["properties"]["particles_cs"]["description"]
    assert len(synthetic_particles()) == SYNTHETIC_PARTICLE_COUNT
