"""zernike3d.workflow_jobs: the rules' arguments, inputs and targets as plain functions of
the settings. Each argument string is split as the job's shell splits it and parsed by
the stage's own parser (zernike3d.cli.build_parser), so that a value the shell would
break, or an option the stage does not know, fails here and not in a job."""

import shlex

import pytest

from zernike3d import workflow_config as wc
from zernike3d import workflow_jobs as jobs
from zernike3d.cli import build_parser


def filled(config):
    """``config`` with the schema's defaults, as check_config leaves it."""
    wc.fill_defaults(config, wc.load_schema())
    return config


def dataset(**settings):
    """One dataset's settings with the schema's defaults filled in."""
    return filled({"datasets": {"d": settings}})["datasets"]["d"]


def parsed(stage, args, *required):
    """The stage's options after the shell's split of ``args`` (``required``: the
    positionals and required options the rule's shell command adds)."""
    return build_parser(stage).parse_args([stage, *required, *shlex.split(args)])


@pytest.mark.parametrize("value, expected", [
    (None, ""), (False, ""), ("", ""), ([], ""), (True, "--x"),
    (3, "--x 3"), (2.5, "--x 2.5"), ([5, 95], "--x 5,95"), ((1.0, -2, 3), "--x 1.0,-2,3"),
    ("a b;c", "--x 'a b;c'"), ("it's", "--x 'it'\"'\"'s'"),
])
def test_opt_gives_a_flag_and_its_quoted_value_or_nothing(value, expected):
    assert jobs.opt("--x", value) == expected
    if expected and value is not True:  # the shell gives the stage the value as written
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        assert shlex.split(expected) == ["--x", text]


def test_a_value_with_spaces_and_quotes_comes_through_the_shell_whole():
    path = "/data/my job's maps/J42_map.mrc"
    assert shlex.split(jobs.opt("--map", path)) == ["--map", path]
    assert shlex.split(jobs.many("--components", [path, "b c.mrc"])) == ["--components", path, "b c.mrc"]
    assert jobs.joined(["", "--a", "", "--b 1"]) == "--a --b 1"


def test_example_args_keep_a_negative_turn_from_reading_as_an_option():
    d = dataset(example={"box": 16, "n_components": 2, "seed": 3, "open_share": 0.4,
                         "turn": [-10, 20, 30], "shift": [-1.5, 0, 2]})
    args = jobs.example_args("d", d)
    assert "--turn=-10,20,30" in args and "--shift=-1.5,0,2" in args
    options = parsed("example", args, "--job-dir", "results/d/example_job")
    assert (options.box, options.components, options.seed, options.open_share) == (16, 2, 3, 0.4)
    assert options.particles_cs is None


@pytest.mark.parametrize("settings, source", [
    ({"example": {}}, ("job_dir", "results/d/example_job")),
    ({"job_dir": "/jobs/J 42"}, ("job_dir", "/jobs/J 42")),
    ({"wiggle": "/w/bundle.npz"}, ("wiggle", "/w/bundle.npz")),
    ({"map": "/m/a map.mrc", "apix": 1.2}, ("map", "/m/a map.mrc")),
])
def test_import_args_name_the_one_source(settings, source):
    options = parsed("import", jobs.import_args("d", dataset(**settings)), "--out", "x.npz")
    key, value = source
    assert str(getattr(options, key)) == value
    assert options.apix == settings.get("apix")


def test_import_args_give_a_maps_components_and_particles():
    d = dataset(map="base.mrc", components=["c 0.mrc", "c1.mrc"], particles="P.cs")
    options = parsed("import", jobs.import_args("d", d), "--out", "x.npz")
    assert [str(c) for c in options.components] == ["c 0.mrc", "c1.mrc"] and str(options.particles) == "P.cs"


def test_preprocess_args_give_what_is_set_and_no_bin_of_1():
    assert jobs.preprocess_args("d", dataset(map="m.mrc")) == ""
    d = dataset(map="m.mrc", preprocess={"crop": 48, "center": "30,30,30", "bin": 2, "mask": "sphere",
                                         "mask_radius": 20.0, "mask_edge": 3})
    options = parsed("preprocess", jobs.preprocess_args("d", d), "in.npz", "--out", "out.npz")
    assert (options.crop, options.bin, options.mask, options.mask_radius, options.mask_edge) == (48, 2, "sphere", 20.0, 3)


def test_order_args_prefer_the_resolution_and_geometry_args_the_ball():
    assert jobs.order_args("d", dataset(map="m.mrc", order=12)) == "--order 12"
    assert jobs.order_args("d", dataset(map="m.mrc", resolution=8.5)) == "--resolution 8.5"
    assert jobs.geometry_args("d", dataset(map="m.mrc")) == "--radius inscribed"
    assert jobs.geometry_args("d", dataset(map="m.mrc", radius=30.0, center=[1, -2, 3])) == "--radius 30.0 --center 1,-2,3"


def test_reconstruct_args_of_a_3dva_job_and_of_a_single_map():
    reconstruct = {"order": 10, "series": 3, "percentiles": [10, 90], "kmeans": 2, "particles": [0, "uid:77"],
                   "latents": [[-0.5, 0.5]], "movie": True}
    job = dataset(example={}, reconstruct=reconstruct)
    options = parsed("reconstruct", jobs.reconstruct_args("d", job), "m.npz", "--dataset", "d.npz", "--out-dir", "maps")
    assert (options.order, options.series, options.kmeans, options.movie, options.mapspace) == (10, 3, 2, True, False)
    assert options.particle == ["0", "uid:77"] and "--latent=-0.5,0.5" in jobs.reconstruct_args("d", job)
    assert "--percentiles 10,90" in jobs.reconstruct_args("d", job)
    # a single map has no particles: the series, centres and particles are not asked for
    single = jobs.reconstruct_args("d", dataset(map="m.mrc", reconstruct=reconstruct))
    assert single == "--order 10 --latent=-0.5,0.5 --movie"
    assert jobs.map_extra_args("d", job) == "--movie"


def test_cluster_args_of_the_invariant_space_name_the_datasets_store():
    d = dataset(example={}, clusters={"k": 3, "method": "gmm", "space": "invariants", "bins": ["0:2"],
                                      "ranges": ["z_0=0:", "F_2_0=-1:1"], "particles_cs": "/p/J9_particles.cs"})
    options = parsed("cluster", jobs.cluster_args("d", d), "d.npz", "--out-dir", "c")
    assert (options.k, options.method, options.space, options.subsets) == (3, "gmm", "invariants", True)
    assert str(options.particle_invariants) == "results/d/particle_invariants.zarr"
    assert str(options.particles_cs) == "/p/J9_particles.cs"
    latent = dataset(example={}, clusters={"k": 2, "export_subsets": False})
    assert jobs.cluster_args("d", latent) == "--k 2 --method kmeans --space latent"


def test_path_args_give_every_path_and_its_settings():
    d = dataset(example={}, clusters={"paths": [["index:0", "index:1"], ["cluster_00", "z:-0.5,0.5"]],
                                      "path_frames": 4, "path_neighbours": 5, "path_density": True})
    options = parsed("path", jobs.path_args("d", d), "d.npz", "--out", "p.csv")
    assert options.between == [["index:0", "index:1"], ["cluster_00", "z:-0.5,0.5"]]
    assert (options.frames, options.neighbours, options.density) == (4, 5, True)


@pytest.mark.parametrize("settings, subsets", [
    ({"example": {}, "clusters": {"particles_cs": "/p/J9_particles.cs"}}, True),
    ({"map": "m.mrc"}, False),  # a single map: no particles
    ({"wiggle": "w.npz"}, False),  # particles, but no cryoSPARC table to take subsets of
])
def test_match_args_ask_for_subsets_only_of_a_cryosparc_job(settings, subsets):
    d = dataset(match=["/q/adk open.pdb", "b.mrc"], **settings)
    options = parsed("match", jobs.match_args("d", d), "results/d", "--out-dir", "m")
    assert [str(q) for q in options.query] == ["/q/adk open.pdb", "b.mrc"] and options.subsets is subsets
    assert (options.particles_cs is not None) is subsets


def test_compare_folders_are_the_members_results_folders_quoted():
    assert shlex.split(jobs.compare_folders(["a", "b c"])) == ["results/a", "results/b c"]
    assert jobs.compare_inputs(["a"]) == ["results/a/preprocessed.npz", "results/a/moments.npz",
                                          "results/a/particle_invariants.zarr/zarr.json"]


def test_import_inputs_list_every_file_of_a_job_folder(tmp_path):
    for name in ("J7_map.mrc", "J7_component_0.mrc", "J7_component_1.mrc", "J7_particles.cs",
                 "J7_passthrough_particles.cs", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    inputs = jobs.import_inputs("d", dataset(job_dir=str(tmp_path)))
    assert inputs["source"] == str(tmp_path)
    assert [p.rsplit("/", 1)[1] for p in inputs["files"]] == [
        "J7_map.mrc", "J7_component_0.mrc", "J7_component_1.mrc", "J7_particles.cs", "J7_passthrough_particles.cs"]
    assert jobs.import_inputs("d", dataset(example={})) == {"source": "results/d/example_job"}
    assert jobs.import_inputs("d", dataset(map="m.mrc", components=["c.mrc"], particles="P.cs")) == {
        "source": "m.mrc", "components": ["c.mrc"], "particles": "P.cs"}


def test_preprocess_inputs_are_the_mask_and_marker_files():
    assert jobs.preprocess_inputs("d", dataset(map="m.mrc", preprocess={"mask": "sphere", "center": "1,2,3"})) == {}
    assert jobs.preprocess_inputs("d", dataset(map="m.mrc", preprocess={"mask": "mask.mrc", "center": "c.cmm"})) == {
        "mask": "mask.mrc", "markers": "c.cmm"}


def test_cluster_inputs_take_the_particles_passthrough_file_when_it_is_there(tmp_path):
    cs = tmp_path / "J9_particles.cs"
    cs.write_bytes(b"")
    d = dataset(example={}, clusters={"k": 2, "particles_cs": str(cs)})
    assert jobs.cluster_inputs("d", d)["particles_cs"] == [str(cs)]
    (tmp_path / "J9_passthrough_particles.cs").write_bytes(b"")
    assert jobs.cluster_inputs("d", d)["particles_cs"] == [str(cs), str(tmp_path / "J9_passthrough_particles.cs")]
    assert "particle_invariants" not in jobs.cluster_inputs("d", d)
    assert jobs.path_inputs("d", d)["centres"] == "results/d/clusters/centres.csv"


def test_qc_reads_the_particles_results_only_where_there_are_some():
    assert set(jobs.qc_inputs("d", dataset(map="m.mrc"))) == {"data", "moments"}
    assert set(jobs.qc_inputs("d", dataset(example={}))) == {"data", "moments", "particle_invariants", "maps"}
    assert set(jobs.qc_inputs("d", dataset(example={}, particle_invariants=False))) == {"data", "moments"}


def test_the_workflow_targets_follow_the_settings():
    config = filled({
        "datasets": {
            "one": {"map": "m.mrc", "qc": False},
            "job": {"example": {}, "clusters": {"k": 2, "maps": False, "paths": [["index:0", "index:1"]]},
                    "match": ["q.pdb"]},
            "two": {"example": {}},
        },
        "compare": {"pair": ["job", "two"]},
    })
    targets = jobs.workflow_targets(config)
    assert len(targets) == len(set(targets))
    assert [t for t in targets if t.startswith("results/one/")] == [
        "results/one/moments.npz", "results/one/invariants.csv", "results/one/maps"]
    job = {t.removeprefix("results/job/") for t in targets if t.startswith("results/job/")}
    assert {"particle_invariants.zarr/zarr.json", "qc/series_maps.png", "clusters/populations.csv",
            "paths/paths.csv", "path_maps", "match/scores.csv"} <= job
    assert "cluster_maps" not in job  # clusters.maps: false
    assert not any("/clusters/" in t or "/match/" in t for t in targets if t.startswith("results/two/"))
    assert {f"results/compare/pair/{figure}.png" for figure in jobs.COMPARE_FIGURES} | {
        "results/compare/pair/landscape.npz"} == {t for t in targets if t.startswith("results/compare/")}
