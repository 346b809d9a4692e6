"""`zernike3d cluster`: clusters with known answers, and subsets written back for cryoSPARC
from the real particles .cs (every field of every row kept exactly)."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from cryosparc.dataset import CSDAT_FORMAT, FORMAT_MAGIC_PREFIXES
from cryosparc.dataset import Dataset as CsDataset

from zernike3d.analysis import clusters as cl
from zernike3d.cli import main
from zernike3d.errors import InputError
from zernike3d.io.cryosparc import read_particles
from zernike3d.io.cryosparc_export import result_type, rows_of_uids
from zernike3d.io.dataset import Dataset
from zernike3d.synthetic import write_3dva_job


@pytest.fixture(scope="module")
def real_job(tmp_path_factory, shared_data):
    """A 3DVA job made of the real 2019-particle .cs (3 latent components added), imported."""
    directory = tmp_path_factory.mktemp("job")
    _, _, cs = write_3dva_job(directory / "J1", box=16, particles_cs=shared_data / "cryosparc_P12_J24_001_particles.cs")
    dataset = directory / "dataset.npz"
    assert main(["import", "--job-dir", str(directory / "J1"), "--out", str(dataset)]) == 0
    return dataset, cs


def read_csv(path):
    lines = Path(path).read_text().splitlines()
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


def blobs(sizes, centres, spread, seed=0):
    """Gaussian clouds of the given sizes about the given centres, and the true labels."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(c, spread, size=(n, len(c))) for n, c in zip(sizes, centres)])
    return points, np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_separated_clouds_are_found_and_numbered_by_population(method):
    points, truth = blobs([300, 500, 200], [(0, 0), (6, 0), (0, 6)], 0.5)
    result = cl.cluster(points, 3, method)
    assert result.counts.tolist() == [500, 300, 200]
    # every true cloud maps onto exactly one cluster, numbered by population
    assert {(t, c) for t, c in zip(truth, result.labels)} == {(1, 0), (0, 1), (2, 2)}
    np.testing.assert_allclose(result.fractions, [0.5, 0.3, 0.2])
    np.testing.assert_allclose(result.centres, [(6, 0), (0, 0), (0, 6)], atol=0.1)
    # snapped centres are real particles, each the nearest one to its centre
    for centre, row in zip(result.centres, result.snapped):
        distances = np.linalg.norm(points - centre, axis=1)
        assert distances[row] == distances.min()


def test_invariant_features_keep_the_separation():
    # two groups that differ in 3 of 40 noisy columns, on very different scales
    rng = np.random.default_rng(1)
    values = rng.normal(size=(400, 40)) * np.logspace(-3, 3, 40)
    values[200:, [0, 1, 2]] += 8 * np.logspace(-3, 3, 40)[[0, 1, 2]]
    result = cl.cluster(cl.invariant_features(values), 2)
    assert set(map(tuple, np.stack([np.arange(400) >= 200, result.labels], 1))) in (
        {(0, 0), (1, 1)}, {(0, 1), (1, 0)})


def test_bins_partition_and_ranges_select():
    latents = np.array([[-1.0, 0], [-0.5, 1], [0.0, 2], [0.5, 3], [1.0, 4]])
    bins = cl.component_bins(latents, 0, 4)
    assert list(bins) == ["bin_c0_00", "bin_c0_01", "bin_c0_02", "bin_c0_03"]
    assert [m.nonzero()[0].tolist() for m in bins.values()] == [[0], [1], [2], [3, 4]]
    columns = {"z_0": latents[:, 0], "z_1": latents[:, 1]}
    assert cl.range_selection("z_0=-0.5:0.5", columns).nonzero()[0].tolist() == [1, 2, 3]
    assert cl.range_selection("z_0=:0,z_1=1:", columns).nonzero()[0].tolist() == [1, 2]
    for bad in ("z_9=0:1", "z_0=1:0", "z_0=a:1", "z_0"):
        with pytest.raises(InputError, match="--range"):
            cl.range_selection(bad, columns)


def test_rows_of_uids_refuses_missing_particles():
    assert rows_of_uids([5, 3, 9], [9, 5], "t.cs").tolist() == [2, 0]
    with pytest.raises(InputError, match="1 of the dataset's 2 particles are not in this table"):
        rows_of_uids([5, 3, 9], [9, 4], "t.cs")


def test_subsets_partition_the_job_and_keep_every_field(real_job, tmp_path):
    dataset_path, cs = real_job
    out = tmp_path / "clusters"
    argv = ["cluster", str(dataset_path), "--k", "3", "--threads", "1", "--subsets", "--bins", "1:4",
            "--range", "z_0=-0.5:0.5,z_2=0:", "--out-dir", str(out)]
    assert main(argv) == 0
    dataset = Dataset.load(dataset_path)
    original = np.load(cs)  # the job's rows as NumPy reads them, independently of cryosparc-tools

    labels = read_csv(out / "labels.csv")
    assert [int(r["uid"]) for r in labels] == dataset.uid.tolist()
    populations = read_csv(out / "populations.csv")
    counts = [int(r["count"]) for r in populations]
    assert sum(counts) == len(original) and counts == sorted(counts, reverse=True)
    assert [r["cluster"] for r in populations] == ["cluster_00", "cluster_01", "cluster_02"]
    centres = read_csv(out / "centres.csv")
    for row in centres:  # a real particle, with its own latents
        (index,) = np.flatnonzero(dataset.uid == np.uint64(row["uid"]))
        np.testing.assert_array_equal([float(row[f"z_{k}"]) for k in range(3)], dataset.latents[index])

    def subset(name):
        path = out / "subsets" / f"{name}.cs"
        table = np.load(path)
        assert table.dtype == original.dtype  # same fields, same order, same dtypes
        wanted = np.isin(original["uid"], table["uid"])
        assert len(table) == wanted.sum()
        np.testing.assert_array_equal(table, original[wanted])  # every field of every row, exactly
        assert len(CsDataset.load(path)) == len(table)  # cryosparc-tools reads it back
        group = yaml.safe_load((out / "subsets" / f"{name}.csg").read_text())
        assert group["group"]["type"] == "particle" and group["group"]["name"] == name
        prefixes = {f.split("/")[0] for f in original.dtype.names if "/" in f}
        assert set(group["results"]) == prefixes
        for prefix, result in group["results"].items():
            kind = "components" if prefix.startswith("components_mode_") else prefix  # cryoSPARC's result types
            assert result == {"metafile": f">{name}.cs", "num_items": len(table), "type": f"particle.{kind}"}
        return set(table["uid"].tolist())

    clusters = [subset(f"cluster_{c:02d}") for c in range(3)]
    assert [len(s) for s in clusters] == counts
    assert set().union(*clusters) == set(original["uid"].tolist())  # a partition: all, and ...
    assert sum(map(len, clusters)) == len(original)  # ... no particle twice
    for c, members in enumerate(clusters):
        assert members == {int(r["uid"]) for r in labels if r["cluster"] == str(c)}
    bins = [subset(f"bin_c1_{b:02d}") for b in range(4)]
    assert set().union(*bins) == set(original["uid"].tolist()) and sum(map(len, bins)) == len(original)
    z = dataset.latents
    expected = dataset.uid[(z[:, 0] >= -0.5) & (z[:, 0] <= 0.5) & (z[:, 2] >= 0)]
    assert subset("range_00") == set(expected.tolist())
    selections = read_csv(out / "selections.csv")
    assert [r["name"] for r in selections] == [f"cluster_{c:02d}" for c in range(3)] + [f"bin_c1_{b:02d}" for b in range(4)] + ["range_00"]
    assert (out / "latents.png").stat().st_size > 0

    # a rerun replaces its own output
    assert main(argv[:3] + ["2", *argv[4:]]) == 0  # now --k 2
    assert len(read_csv(out / "populations.csv")) == 2 and not (out / "subsets" / "cluster_02.cs").exists()


def test_compressed_source_gives_compressed_subsets(real_job, tmp_path):
    dataset_path, cs = real_job
    compressed = tmp_path / "compressed.cs"
    CsDataset.load(cs).save(compressed, format=CSDAT_FORMAT)
    out = tmp_path / "out"
    assert main(["cluster", str(dataset_path), "--bins", "0:2", "--particles-cs", str(compressed), "--out-dir", str(out)]) == 0
    written = out / "subsets" / "bin_c0_00.cs"
    assert written.read_bytes()[:6] == FORMAT_MAGIC_PREFIXES[CSDAT_FORMAT]
    source = CsDataset.load(compressed)
    subset = CsDataset.load(written)
    rows = np.isin(source["uid"], subset["uid"])
    for field in source.fields():
        np.testing.assert_array_equal(subset[field], source[field][rows])


def test_refuses_a_folder_it_did_not_write(real_job, tmp_path, capsys):
    dataset_path, _ = real_job
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["cluster", str(dataset_path), "--k", "2", "--out-dir", str(out)]) == 2
    assert "is not a folder written by `zernike3d cluster`" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_wrong_particles_file_is_one_line_and_writes_nothing(real_job, tmp_path, shared_data, capsys):
    dataset_path, _ = real_job
    out = tmp_path / "out"
    other = shared_data / "cryosparc_J2_particles_exported.cs"
    assert main(["cluster", str(dataset_path), "--k", "2", "--subsets", "--particles-cs", str(other), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "are not in this table" in err and str(other) in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_invariants_space_needs_the_store(real_job, tmp_path, capsys):
    dataset_path, _ = real_job
    assert main(["cluster", str(dataset_path), "--k", "2", "--space", "invariants", "--out-dir", str(tmp_path / "o")]) == 2
    assert "needs --particle-invariants" in capsys.readouterr().err


@pytest.mark.slow
def test_workflow_clusters_subsets_paths_and_report(tmp_path, shared_data):
    """A real Snakemake run of a tiny 3DVA job (the real .cs rows) with clusters, subsets
    and a path, then the report: every rule of rules/clusters.smk runs."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    config = {
        "datasets": {"job": {
            "example": {"box": 16, "n_components": 2, "seed": 0,
                        "particles_cs": str(shared_data / "cryosparc_P12_J24_001_particles.cs")},
            "order": 6, "qc": False,
            "reconstruct": {"series": 2, "mapspace": True},
            "clusters": {"k": 2, "method": "gmm", "bins": ["1:2"], "paths": [["cluster_00", "cluster_01"]], "path_frames": 3},
        }},
        "threads": 1, "basis_cache": None,
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args):
        run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"),
                              "-d", str(tmp_path), *args], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]

    snakemake("--cores", "2")
    results = tmp_path / "results" / "job"
    original = np.load(shared_data / "cryosparc_P12_J24_001_particles.cs")
    uids = [np.load(results / "clusters" / "subsets" / f"cluster_{c:02d}.cs")["uid"] for c in range(2)]
    assert sorted(np.concatenate(uids).tolist()) == sorted(original["uid"].tolist())
    assert (results / "clusters" / "subsets" / "bin_c1_01.csg").is_file()
    assert (results / "cluster_maps" / "clusters.py").is_file() and (results / "cluster_maps" / "mapspace_clusters.py").is_file()
    assert len(list((results / "path_maps").glob("path_cluster_00_cluster_01_f*.mrc"))) == 3
    assert (results / "maps" / "series_c0.py").is_file()
    snakemake("--report", str(tmp_path / "report.html"))
    assert "latent space, paths" in (tmp_path / "report.html").read_text(errors="replace")


def test_fit_on_a_sample_still_labels_every_particle(monkeypatch):
    points, truth = blobs([3000, 2000], [(0, 0, 0), (5, 5, 0)], 0.7, seed=4)
    monkeypatch.setattr(cl, "FIT_SAMPLE", 500)
    for method in cl.METHODS:
        result = cl.cluster(points, 2, method)
        assert result.counts.tolist() == [3000, 2000] and len(result.labels) == 5000
        assert (result.labels == truth).all()


@pytest.mark.parametrize("compressed", [False, True], ids=["numpy", "csdat"])
def test_truncated_particles_file_is_one_line(real_job, tmp_path, capsys, compressed):
    dataset_path, cs = real_job
    whole = tmp_path / "whole.cs"
    if compressed:
        CsDataset.load(cs).save(whole, format=CSDAT_FORMAT)
    else:
        whole.write_bytes(cs.read_bytes())
    cut = tmp_path / "cut.cs"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    out = tmp_path / "out"
    assert main(["cluster", str(dataset_path), "--bins", "0:2", "--particles-cs", str(cut), "--out-dir", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(cut) in line and "truncated" in line
    assert not out.exists()


def test_clusters_on_per_particle_invariants_find_two_states(tmp_path):
    """Two groups of particles at z_0 = -2 and +2 have different maps, hence different
    invariants: clustering the invariants (read from a real zarr store) separates them,
    and an invariant range selects by F_n_l."""
    from small_job import write_small_job

    paths, dataset, _ = write_small_job(tmp_path)
    rng = np.random.default_rng(5)
    group = np.arange(len(dataset.uid)) % 3 == 0  # a third of the particles in the second state
    latents = np.stack([np.where(group, 2.0, -2.0) + 0.1 * rng.normal(size=group.size),
                        0.1 * rng.normal(size=group.size)], axis=1)
    shuffled = rng.permutation(group.size)  # the store's particle order differs from the dataset's
    Dataset(dataset.maps, latents, dataset.uid, dataset.voxel_size, dataset.origin, []).save(paths.dataset)
    other = Dataset(dataset.maps, latents[shuffled], dataset.uid[shuffled], dataset.voxel_size, dataset.origin, [])
    other.save(tmp_path / "shuffled.npz")
    store = tmp_path / "p.zarr"
    assert main(["invariants", str(paths.moments), "--out", str(tmp_path / "F.csv"), "--dataset",
                 str(tmp_path / "shuffled.npz"), "--particles-out", str(store)]) == 0
    table = np.zeros(group.size, dtype=[("uid", "<u8"), ("blob/idx", "<u4")])  # the job's particles .cs
    table["uid"], table["blob/idx"] = dataset.uid, np.arange(group.size)
    with open(tmp_path / "P.cs", "wb") as f:
        np.save(f, table)
    from zernike3d.io.particle_invariants import read_particle_invariants

    stored = read_particle_invariants(store)
    column = [i for i, (n, l) in enumerate(stored.nl) if (n, l) == (2, 0)][0]
    f20 = np.asarray(stored.invariants[:, column])
    threshold = float(np.median(f20))
    out = tmp_path / "clusters"
    assert main(["cluster", str(paths.dataset), "--k", "2", "--threads", "1", "--space", "invariants",
                 "--particle-invariants", str(store), "--range", f"F_2_0={threshold!r}:", "--particles-cs", str(tmp_path / "P.cs"), "--out-dir", str(out)]) == 0
    labels = np.array([int(r["cluster"]) for r in read_csv(out / "labels.csv")])
    assert [int(r["uid"]) for r in read_csv(out / "labels.csv")] == dataset.uid.tolist()
    np.testing.assert_array_equal(labels, group.astype(int))  # cluster_00 = the larger state
    selected = np.load(out / "subsets" / "range_00.cs")
    assert set(selected["uid"].tolist()) == set(stored.uid[f20 >= threshold].tolist())


@pytest.mark.parametrize("components", [1, 3])
def test_latent_figure_for_one_or_several_components(tmp_path, components):
    from zernike3d.analysis.latent_plots import plot_latent_pairs

    latents, labels = blobs([300, 200], [(0,) * components, (4,) * components], 0.5)
    centres = {"cluster_00": latents[0], "cluster_01": latents[-1]}
    path = tmp_path / "latents.png"
    plot_latent_pairs(path, latents, "test", labels=labels, centres=centres, series=latents[:5],
                      paths={"path_a_b": latents[[0, 100, 400]]})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def save_cs(path, records):
    """``records`` (a NumPy structured array) as a NumPy-format .cs, fields packed."""
    from numpy.lib.recfunctions import repack_fields

    with open(path, "wb") as f:
        np.save(f, repack_fields(records))


def test_a_jobs_own_particles_file_is_joined_with_its_passthrough_file(tmp_path, shared_data, capsys):
    """cryoSPARC writes a 3DVA job's J<n>_particles.cs with uid and components_mode_* only,
    and the blob, ctf and alignments3D fields in J<n>_passthrough_particles.cs: import reads
    the pixel size there, and the subsets carry every field of both, row by uid."""
    job = tmp_path / "J1"
    _, _, cs = write_3dva_job(job, box=16, particles_cs=shared_data / "cryosparc_P12_J24_001_particles.cs")
    whole = np.load(cs)
    made = [f for f in whole.dtype.names if f == "uid" or f.startswith("components_mode_")]
    inherited = [f for f in whole.dtype.names if not f.startswith("components_mode_")]
    save_cs(cs, whole[made])
    assert read_particles(cs).psize_A is None  # the job's own file alone has no pixel size
    passthrough = job / "J1_passthrough_particles.cs"
    save_cs(passthrough, whole[inherited][::-1])  # rows in another order: joined by uid, not by row
    particles = read_particles(cs)
    assert (particles.psize_A, particles.blob_box) == (float(whole["blob/psize_A"][0]), int(whole["blob/shape"][0][0]))

    dataset = tmp_path / "dataset.npz"
    assert main(["import", "--job-dir", str(job), "--out", str(dataset)]) == 0
    out = tmp_path / "clusters"
    assert main(["cluster", str(dataset), "--k", "2", "--threads", "1", "--subsets", "--out-dir", str(out)]) == 0
    assert "joined by uid" in capsys.readouterr().out
    for c in range(2):
        table = np.load(out / "subsets" / f"cluster_{c:02d}.cs")
        wanted = whole[np.isin(whole["uid"], table["uid"])]  # the job's order
        assert sorted(table.dtype.names) == sorted(whole.dtype.names)
        for field in whole.dtype.names:  # every field of every row, exactly, with its dtype
            assert table.dtype[field] == whole.dtype[field], field
            np.testing.assert_array_equal(table[field], wanted[field], err_msg=field)
        group = yaml.safe_load((out / "subsets" / f"cluster_{c:02d}.csg").read_text())
        assert group["results"]["components_mode_2"]["type"] == "particle.components"
        assert group["results"]["blob"]["type"] == "particle.blob"
        assert group["results"]["alignments3D"]["type"] == "particle.alignments3D"

    save_cs(passthrough, whole[inherited][1:])  # a particle missing from the passthrough file
    assert main(["cluster", str(dataset), "--k", "2", "--threads", "1", "--subsets", "--out-dir", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"error: {passthrough}: 1 of the dataset's 2019 particles are not in this table" in error and "\n" not in error
    assert error.endswith("not the passthrough file of J1_particles.cs, or a damaged one")
    assert len(np.load(out / "subsets" / "cluster_01.cs")) == len(table)  # the earlier output stands


def test_result_types_follow_cryosparc():
    assert [result_type(p) for p in ("components_mode_0", "components_mode_12", "alignments_class_3", "blob",
                                     "ctf", "alignments3D", "location", "components_mode")] == [
        "components", "components", "alignments3D", "blob", "ctf", "alignments3D", "location", "components_mode"]


@pytest.mark.slow
def test_cluster_and_paths_requests_cover_their_measured_peaks(tmp_path, shared_data):
    """The workflow's requests for `cluster` (with subsets) and `path` come from the
    inputs (zernike3d.scheduling.resources) and lie between the measured peak and 1.5 times it."""
    import re
    import subprocess
    import sys

    from zernike3d.scheduling import resources
    from zernike3d.scheduling.inputs import table_row_bytes
    from zernike3d.scheduling.resources import rule_resources

    real = np.load(shared_data / "cryosparc_P12_J24_001_particles.cs")
    rows = real[np.resize(np.arange(len(real)), 30_000)]
    rows["uid"] = np.arange(10**9, 10**9 + len(rows), dtype=np.uint64)
    table = tmp_path / "rows.cs"
    with open(table, "wb") as f:
        np.save(f, rows)
    write_3dva_job(tmp_path / "J1", box=16, n_components=2, particles_cs=table)
    dataset = tmp_path / "dataset.npz"
    assert main(["import", "--job-dir", str(tmp_path / "J1"), "--out", str(dataset)]) == 0

    def peak(*argv):
        done = subprocess.run([sys.executable, "-m", "zernike3d.measured", "run", *map(str, argv)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return float(re.findall(r"peak memory ([0-9.]+) MB", done.stderr)[-1])

    settings = {"threads": 1, "clusters": {"k": 3, "export_subsets": True, "path_neighbours": 10},
                "table_row_bytes": table_row_bytes(dataset)}
    assert settings["table_row_bytes"] >= real.dtype.itemsize  # the job's .cs rows, as the subsets read them
    measured = {
        "cluster": peak("cluster", dataset, "--k", 3, "--subsets", "--out-dir", tmp_path / "clusters"),
        "paths": peak("path", dataset, "--between", "cluster_00", "cluster_01", "--clusters",
                      tmp_path / "clusters" / "centres.csv", "--out", tmp_path / "paths.csv", "--plot", tmp_path / "p.png"),
    }
    for stage, used in measured.items():
        asked = rule_resources(stage, dataset, 0, settings)
        assert used <= asked["mem_mb"] <= 1.5 * used + resources.ROUND_MB, (stage, used, asked)
        assert asked["runtime"] < 30  # minutes: not the old fixed 30
