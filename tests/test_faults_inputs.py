"""Bad inputs end in one line naming the file or option, exit 2, nothing written, no input
changed (issue 7, input side): damaged or hostile .npz files (moments, dataset bundles),
malformed basis.json, geometries with nothing or an infinity in the ball, truncated or
uid-less cryoSPARC .cs files (one that made cryosparc-tools segfault), and moments of one
job combined with the particles of another."""

import hashlib
import shutil
import subprocess
import sys
import tracemalloc
import zipfile

import mrcfile
import numpy as np
import numpy.lib.recfunctions as rfn
import pytest

from small_job import write_small_job
from zernike3d.cli import main
from zernike3d.io.dataset import Dataset
from zernike3d.moments import Moments

REAL_CS = "/work/shared/data/cryosparc_P12_J24_001_particles.cs"
REAL_MAP = "/work/shared/data/hand-vol.mrc"


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    directory = tmp_path_factory.mktemp("job")
    paths, dataset, moments = write_small_job(directory)
    return paths, dataset, moments


@pytest.fixture
def work(tmp_path, job):
    """A folder with copies of the small job's dataset.npz and moments.npz."""
    paths, _, _ = job
    for path in (paths.dataset, paths.moments):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(REAL_MAP, tmp_path / "map.mrc")
    return tmp_path


def snapshot(directory):
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def refused(capsys, directory, argv, *names):
    """Run the CLI in-process; assert exit 2, one stderr line naming each of ``names``,
    and that nothing in ``directory`` was written or changed. Returns the line."""
    before = snapshot(directory)
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    assert snapshot(directory) == before
    return lines[0]


def rewrite_npz(path, drop=(), **changes):
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files if key not in drop}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


# --- the moments file -------------------------------------------------------------------

@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated"),
    (lambda p: rewrite_npz(p, format_version=np.array("1")), "format_version: has dtype <U1, expected integer"),
    (lambda p: rewrite_npz(p, format_version=np.array(1.0)), "format_version: has dtype float64"),
    (lambda p: rewrite_npz(p, drop=("radius",)), "lacks radius"),
    (lambda p: rewrite_npz(p, center=np.zeros(2)), "center: has shape (2,), expected (3,)"),
    (lambda p: rewrite_npz(p, order=np.array([8, 8])), "order: has shape (2,), expected ()"),
    (lambda p: rewrite_npz(p, voxel_size=np.array(np.inf)), "voxel_size"),
    (lambda p: rewrite_npz(p, center=np.array([1e6, 0.0, 0.0])), "outside the box"),
], ids=["empty", "truncated", "version-str", "version-float", "missing-key", "center-shape",
        "order-shape", "voxel-inf", "center-outside"])
def test_damaged_moments_file(capsys, work, damage, problem):
    moments = work / "moments.npz"
    damage(moments)
    line = refused(capsys, work, ["invariants", moments, "--out", work / "F.csv"], moments)
    assert problem in line


def test_a_needed_key_whose_header_lies_is_refused_before_loading(capsys, work):
    """names.npy claims 10^12 entries in a few bytes: refused from its header alone."""
    moments = work / "moments.npz"
    with np.load(moments) as npz:
        arrays = {key: npz[key] for key in npz.files if key != "names"}
    with zipfile.ZipFile(moments, "w") as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, value)
        with archive.open("names.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<U4", "fortran_order": False, "shape": (10**12,)})
            f.write(b"\0" * 48)
    line = refused(capsys, work, ["invariants", moments, "--out", work / "F.csv"], moments)
    assert "names" in line


def add_bomb(path, mebibytes=256):
    """Add an ignored key ``junk`` of zeros, deflated: a few hundred kB that inflate to
    ``mebibytes`` MiB."""
    zeros = np.zeros(2**20 // 8)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("junk.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (mebibytes * zeros.size,)})
            for _ in range(mebibytes):
                f.write(zeros.tobytes())


def traced_peak(load):
    """(what ``load()`` returns, the peak of Python-traced memory while it ran, bytes)."""
    tracemalloc.start()
    try:
        result = load()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_decompression_bomb_in_an_ignored_key_is_never_inflated(work, job):
    _, _, original = job
    moments = work / "moments.npz"
    add_bomb(moments)
    assert moments.stat().st_size < 4 * 2**20
    loaded, peak = traced_peak(lambda: Moments.load(moments))
    assert np.array_equal(loaded.moments, original.moments)
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB while reading"


def test_a_member_larger_than_the_free_memory_is_refused_before_reading(capsys, work, monkeypatch):
    from zernike3d.io import npz

    monkeypatch.setattr(npz, "available_memory", lambda: 1000)
    line = refused(capsys, work, ["invariants", work / "moments.npz", "--out", work / "F.csv"], work / "moments.npz")
    assert "needs" in line and "MiB of memory to read" in line


def test_dataset_bundle_damaged_or_with_a_bomb(capsys, work, job):
    dataset = work / "dataset.npz"
    out = work / "m.npz"
    dataset.write_bytes(dataset.read_bytes()[:-100])
    assert "truncated" in refused(capsys, work, ["decompose", dataset, "--order", 2, "--out", out], dataset)
    shutil.copy(job[0].dataset, dataset)
    rewrite_npz(dataset, uid=np.arange(3, dtype=np.uint64))
    assert "uid: has shape (3,), expected (200,)" in refused(
        capsys, work, ["decompose", dataset, "--order", 2, "--out", out], dataset)
    shutil.copy(job[0].dataset, dataset)
    add_bomb(dataset, 64)
    loaded, peak = traced_peak(lambda: Dataset.load(dataset))
    assert np.array_equal(loaded.maps, job[1].maps)
    assert peak < 3 * loaded.maps.nbytes + 8 * 2**20


def test_an_edited_bundle_is_refused(capsys, work):
    """maps_sha256 is checked against the maps when the bundle is read."""
    dataset = work / "dataset.npz"
    with np.load(dataset) as npz:
        maps = npz["maps"].copy()
    maps[0, 0, 0, 0] += 1
    rewrite_npz(dataset, maps=maps)
    line = refused(capsys, work, ["decompose", dataset, "--order", 2, "--out", work / "m.npz"], dataset)
    assert "maps_sha256 does not match" in line


# --- basis.json -------------------------------------------------------------------------

@pytest.mark.parametrize("text, problem", [
    ("{not json", "not JSON"),
    ("[1, 2]", "a JSON list"),
    ('{"store": "x.zarr", "order": 2}', "lacks geometry"),
    ('{"store": "x.zarr", "order": "2", "geometry": {}}', "order must be an integer"),
    ('{"store": "x.zarr", "order": 2, "geometry": {"box": 64, "voxel_size": "1", "radius": 32, '
     '"center": [32, 32, 32]}}', "geometry needs"),
    ('{"store": "x.zarr", "order": 2, "geometry": {"box": 64, "voxel_size": 1, "radius": 1e999, '
     '"center": [32, 32, 32]}}', "radius"),
], ids=["not-json", "list", "missing", "order-type", "voxel-type", "radius-inf"])
def test_malformed_basis_json(capsys, work, text, problem):
    record = work / "basis.json"
    record.write_text(text)
    line = refused(capsys, work, ["decompose", work / "map.mrc", "--order", 2, "--basis", record,
                                  "--out", work / "m.npz"], record)
    assert problem in line


# --- geometry ---------------------------------------------------------------------------

@pytest.mark.parametrize("options, source", [
    (["--center", "1000,32,32"], "--center"),
    (["--center", "nan,32,32"], "--center"),
    (["--center", "inf,32,32"], "--center"),
    (["--radius", "inf"], "--radius"),
    (["--radius", "nan"], "--radius"),
    (["--center", "0.5,0.5,0.5", "--radius", "0.1"], "--radius"),  # no voxel centre inside
    (["--voxel-size", "inf"], "--voxel-size"),
], ids=["center-outside", "center-nan", "center-inf", "radius-inf", "radius-nan", "empty-ball", "voxel-inf"])
def test_geometry_with_nothing_or_an_infinity_in_the_ball(capsys, work, options, source):
    refused(capsys, work, ["decompose", work / "map.mrc", "--order", 2, "--out", work / "m.npz", *options], source)


def test_geometry_options_of_basis(capsys, work):
    refused(capsys, work, ["basis", work / "map.mrc", "--order", 2, "--cache", work / "cache",
                           "--out", work / "basis.json", "--center=-40,0,0"], "--center")


@pytest.mark.parametrize("options, source", [
    (["--center=1000,0,0"], "--center"),
    (["--voxel-size", "inf"], "--voxel-size"),
    (["--radius", "0.01", "--center=0.5,0.5,0.5"], "--radius"),
], ids=["center-outside", "voxel-inf", "empty-ball"])
def test_geometry_options_of_plan(capsys, tmp_path, options, source):
    refused(capsys, tmp_path, ["plan", "--box", 32, "--order", 6, *options], source)


@pytest.mark.parametrize("center", ["1e9,0,0", "-20,24,24", "nan,0,0"])
def test_preprocess_crop_wholly_outside_the_input(capsys, work, center):
    """A crop box that does not meet the input would hold only zeros (box 24 of 2 Å voxels)."""
    refused(capsys, work, ["preprocess", work / "dataset.npz", "--crop", 16, f"--center={center}",
                           "--out", work / "p.npz"], "--center")


def test_reconstruct_voxel_size_inf(capsys, work):
    refused(capsys, work, ["reconstruct", work / "moments.npz", "--voxel-size", "inf", "--out", work / "r.mrc"],
            "--voxel-size")


@pytest.mark.parametrize("header, problem", [
    ({"voxel_size": float("inf")}, "not finite"),
    ({"voxel_size": float("nan")}, "not finite"),
    ({"dimensions": 0}, "0 voxels"),
    ({"origin": float("inf")}, "origin in the header is not finite"),
], ids=["voxel-inf", "voxel-nan", "zero-dims", "origin-inf"])
def test_mrc_header_geometry(capsys, work, header, problem):
    path = work / "map.mrc"
    if "voxel_size" in header:
        with mrcfile.open(path, "r+") as mrc:
            mrc.voxel_size = header["voxel_size"]
    elif "origin" in header:
        with mrcfile.open(path, "r+") as mrc:
            mrc.header.origin = (header["origin"], 0.0, 0.0)
    else:
        with open(path, "r+b") as f:
            f.write(np.zeros(3, "<i4").tobytes())
    line = refused(capsys, work, ["decompose", path, "--order", 2, "--out", work / "m.npz"], path)
    assert problem in line


# --- cryoSPARC .cs ----------------------------------------------------------------------

def job_files(directory, dataset, particles):
    """MRC maps of the small job's base and components beside a particles table."""
    names = ["base.mrc", "c0.mrc", "c1.mrc"]
    for name, data in zip(names, dataset.maps):
        with mrcfile.new(directory / name) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = dataset.voxel_size
    return ["import", "--map", directory / names[0], "--components", *(directory / n for n in names[1:]),
            "--particles", particles, "--out", directory / "imported.npz"]


def real_table_with_latents(drop_uid=False):
    table = np.load(REAL_CS)
    latents = np.random.default_rng(0).normal(size=(len(table), 2)).astype(np.float32)
    table = rfn.append_fields(table, ["components_mode_0/value", "components_mode_1/value"],
                              [latents[:, 0], latents[:, 1]], usemask=False)
    return rfn.drop_fields(table, ["uid"], usemask=False) if drop_uid else table


def test_truncated_compressed_cs_ends_in_one_line_not_a_segfault(tmp_path, job):
    """cryosparc-tools segfaulted (exit 139) freeing a half-decoded CSDAT file."""
    from cryosparc.dataset import CSDAT_FORMAT
    from cryosparc.dataset import Dataset as CsDataset

    whole = tmp_path / "whole.cs"
    CsDataset(real_table_with_latents()).save(whole, format=CSDAT_FORMAT)
    data = whole.read_bytes()
    argv = None
    for cut in (len(data) // 3, len(data) * 3 // 4):
        particles = tmp_path / "particles.cs"
        particles.write_bytes(data[:cut])
        argv = argv or job_files(tmp_path, job[1], particles)
        before = snapshot(tmp_path)
        run = subprocess.run([sys.executable, "-m", "zernike3d", *map(str, argv)], capture_output=True, text=True)
        assert run.returncode == 2, (run.returncode, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and str(particles) in lines[0] and "truncated" in lines[0], run.stderr
        assert snapshot(tmp_path) == before
    # the whole file is read, latents as written
    particles.write_bytes(data)
    assert main([str(a) for a in argv]) == 0
    assert Dataset.load(tmp_path / "imported.npz").latents.shape == (len(np.load(REAL_CS)), 2)


def test_cs_without_uid_is_refused(capsys, tmp_path, job):
    particles = tmp_path / "particles.cs"
    with open(particles, "wb") as f:
        np.save(f, real_table_with_latents(drop_uid=True))
    line = refused(capsys, tmp_path, job_files(tmp_path, job[1], particles), particles)
    assert "no uid field" in line


# --- moments and particles of different jobs --------------------------------------------

def other_job(directory, job):
    """The same job with its second component changed: same names, same K."""
    _, dataset, _ = job
    maps = dataset.maps.copy()
    maps[2] *= 1.5
    Dataset(maps, dataset.latents, dataset.uid, dataset.voxel_size, dataset.origin, []).save(directory / "other.npz")
    return directory / "other.npz"


def test_moments_of_another_job_are_refused_naming_both_files(capsys, work, job):
    other = other_job(work, job)
    moments = work / "moments.npz"
    line = refused(capsys, work, ["invariants", moments, "--out", work / "F.csv", "--dataset", other,
                                  "--particles-out", work / "P.zarr"], moments, other)
    assert "component_1 differ" in line
    refused(capsys, work, ["reconstruct", moments, "--dataset", other, "--out-dir", work / "maps"], moments, other)


def test_moments_decomposed_from_the_job_mrc_files_match_its_bundle(work, job):
    """The fingerprint is of the maps: decomposing the MRC files a bundle was imported
    from gives the bundle's fingerprints."""
    _, dataset, _ = job
    argv = job_files(work, dataset, "unused.cs")
    maps = [str(a) for a in (argv[2], argv[4], argv[5])]
    assert main(["decompose", *maps, "--order", "2", "--names", "base,component_0,component_1",
                 "--out", str(work / "m.npz")]) == 0
    assert Moments.load(work / "m.npz").maps_sha256 == Dataset.load(work / "dataset.npz").maps_sha256


def test_moments_without_fingerprint_are_accepted_with_one_warning(recwarn, work):
    """Files written before the fingerprint was recorded still work; the warning (one
    line, as the CLI formats it) says they were not checked."""
    moments = work / "moments.npz"
    rewrite_npz(moments, drop=("maps_sha256",))
    assert main(["invariants", str(moments), "--out", str(work / "F.csv"), "--dataset",
                 str(work / "dataset.npz"), "--particles-out", str(work / "P.zarr")]) == 0
    messages = [str(w.message) for w in recwarn if "fingerprint" in str(w.message)]
    assert len(messages) == 1 and str(moments) in messages[0] and "\n" not in messages[0]


# --- round three (issue 18): nothing silently wrong, no traceback, bounds ---------------

@pytest.fixture
def store(work):
    """work/P.zarr: the small job's per-particle invariants (one chunk of 200 rows)."""
    assert main(["invariants", str(work / "moments.npz"), "--out", str(work / "F.csv"), "--dataset",
                 str(work / "dataset.npz"), "--particles-out", str(work / "P.zarr")]) == 0
    return work / "P.zarr"


def cluster_on(store, work):
    return ["cluster", work / "dataset.npz", "--k", 2, "--space", "invariants", "--particle-invariants", store,
            "--out-dir", work / "clusters"]


@pytest.mark.parametrize("damage, problem", [
    ("delete", "chunks of invariants are missing"),
    ("truncate", "a chunk of invariants is damaged"),
])
def test_a_missing_or_truncated_store_chunk_is_an_error_not_zeros(capsys, work, store, damage, problem):
    """zarr reads a missing chunk as its fill value: 200 all-zero particles, silently."""
    (chunk,) = [p for p in (store / "invariants" / "c").rglob("*") if p.is_file()]
    if damage == "delete":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:-7])
    line = refused(capsys, work, cluster_on(store, work), store)
    assert problem in line


def test_compare_reading_a_truncated_store_chunk_ends_in_one_line(capsys, tmp_path, job):
    from zernike3d.synthetic import write_results_folder

    _, dataset, moments = job
    folders = [write_results_folder(tmp_path / name, dataset.maps, dataset.latents, dataset.uid,
                                    dataset.voxel_size, 4) for name in ("A", "B")]
    store = folders[1] / "particle_invariants.zarr"
    (chunk,) = [p for p in (store / "invariants" / "c").rglob("*") if p.is_file()]
    chunk.write_bytes(chunk.read_bytes()[:-7])
    line = refused(capsys, tmp_path, ["compare", *folders, "--clusters", 2, "--bootstrap", 2,
                                      "--out-dir", tmp_path / "cmp"], store)
    assert "damaged" in line


def test_non_finite_particle_invariants_are_refused(capsys, work, job):
    from zernike3d.io.particle_invariants import write_particle_invariants
    from zernike3d.maths.invariants import particle_invariant_forms

    _, dataset, moments = job
    latents = dataset.latents.copy()
    latents[3, 0] = np.nan
    write_particle_invariants(work / "P.zarr", particle_invariant_forms(moments.moments, moments.order), latents,
                              dataset.uid, moments.nl, order=moments.order, names=moments.names)
    line = refused(capsys, work, cluster_on(work / "P.zarr", work), work / "P.zarr")
    assert "not finite" in line
    line = refused(capsys, work, ["qc", "--dataset", work / "dataset.npz", "--moments", work / "moments.npz",
                                  "--particle-invariants", work / "P.zarr", "--out-dir", work / "qc"], work / "P.zarr")
    assert "not finite" in line


def latents_only_job(directory, width=None):
    """A job folder whose J1_particles.cs holds uid and latents only (a job's own output)
    and, with ``width``, a J1_passthrough_particles.cs whose blob/path is |S<width>, each
    path exactly that long. Returns the imported dataset."""
    from zernike3d.synthetic import write_3dva_job

    job = directory / "J1"
    write_3dva_job(job, box=16, n_components=2, particles_cs=REAL_CS)
    whole = np.load(job / "J1_particles.cs")
    own = [f for f in whole.dtype.names if f == "uid" or f.startswith("components_mode_")]
    with open(job / "J1_particles.cs", "wb") as f:
        np.save(f, rfn.repack_fields(whole[own]))
    if width is not None:
        rest = rfn.repack_fields(whole[["uid"] + [f for f in whole.dtype.names if f not in own]])
        paths = [f"{i:06d}_".encode().ljust(width, b"x") for i in range(len(rest))]
        rest = rfn.drop_fields(rest, ["blob/path"], usemask=False)
        rest = rfn.append_fields(rest, "blob/path", np.array(paths, dtype=f"S{width}"), usemask=False)
        with open(job / "J1_passthrough_particles.cs", "wb") as f:
            np.save(f, rest)
    assert main(["import", "--job-dir", str(job), "--out", str(directory / "imported.npz")]) == 0
    return directory / "imported.npz", job


def test_subsets_without_the_passthrough_file_are_refused_unless_asked_for(capsys, tmp_path):
    dataset, job = latents_only_job(tmp_path)
    argv = ["cluster", dataset, "--bins", "0:2", "--out-dir", tmp_path / "clusters"]
    line = refused(capsys, tmp_path, argv, job / "J1_particles.cs", "J1_passthrough_particles.cs",
                   "--latents-only-subsets")
    assert "no particle images, CTF or poses" in line
    assert main([str(a) for a in argv + ["--latents-only-subsets"]]) == 0
    assert "hold only uid and the latents" in capsys.readouterr().err


def test_subsets_keep_every_dtype_exactly(tmp_path):
    """cryosparc-tools would save |S112 paths 112 long as |S113 (and shorter ones narrower)."""
    dataset, job = latents_only_job(tmp_path, width=112)
    assert main(["cluster", str(dataset), "--bins", "0:2", "--out-dir", str(tmp_path / "clusters")]) == 0
    expected = dict(np.load(job / "J1_particles.cs").dtype.fields) | dict(np.load(job / "J1_passthrough_particles.cs").dtype.fields)
    for subset in (tmp_path / "clusters" / "subsets").glob("*.cs"):
        fields = np.load(subset).dtype.fields
        assert {name: value[0] for name, value in fields.items()} == {name: value[0] for name, value in expected.items()}
        assert np.load(subset)["blob/path"].dtype == np.dtype("S112")


@pytest.mark.parametrize("text, problem", [
    ("name,kind,z_0,z_1\nkmeans_00,x,0,0\n", "name of another map"),
    ("name,kind,z_0,z_1\na,x,0,0\na,x,1,1\n", "given twice"),
    ("name,kind,z_0,z_1,z_2\na,x,0,0,0\n", "has column z_2, but the job has 2 components"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not a CSV text file"),
])
def test_reconstruct_points_that_would_be_lost_or_misread(capsys, work, text, problem):
    points = work / "points.csv"
    points.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = refused(capsys, work, ["reconstruct", work / "moments.npz", "--dataset", work / "dataset.npz",
                                  "--kmeans", 2, "--points", points, "--out-dir", work / "maps"], points)
    assert problem in line


def test_qc_of_another_jobs_moments_is_refused(capsys, work, job):
    other = other_job(work, job)
    line = refused(capsys, work, ["qc", "--dataset", other, "--moments", work / "moments.npz",
                                  "--out-dir", work / "qc"], work / "moments.npz", other)
    assert "fingerprint" in line


@pytest.mark.parametrize("argv, option", [
    (["reconstruct", "MOMENTS", "--dataset", "DATASET", "--latent=1e308,0", "--out-dir", "OUT"], "--latent"),
    (["cluster", "DATASET", "--range", "z_0=nan:1", "--out-dir", "OUT"], "--range"),
])
def test_non_finite_requests_are_refused_and_never_written(capsys, work, argv, option):
    names = {"MOMENTS": work / "moments.npz", "DATASET": work / "dataset.npz", "OUT": work / "out"}
    refused(capsys, work, [names.get(a, a) for a in argv], option)


def test_moments_too_large_to_align_are_refused_not_written_as_nan(capsys, work):
    big = work / "big.npz"
    shutil.copy(work / "moments.npz", big)
    with np.load(big) as npz:
        moments = npz["moments"] * 1e300
    rewrite_npz(big, moments=moments)
    line = refused(capsys, work, ["align", big, work / "moments.npz", "--out", work / "a.json"], big)
    assert "too large" in line


def test_a_latent_field_of_two_values_per_particle_is_one_line(capsys, tmp_path, job):
    table = real_table_with_latents()
    fields = [(name, ("<f4", (2,)) if name == "components_mode_0/value" else table.dtype[name]) for name in table.dtype.names]
    wide = np.zeros(len(table), dtype=fields)
    for name in table.dtype.names:
        wide[name] = table[name] if name != "components_mode_0/value" else table[name][:, None]
    particles = tmp_path / "particles.cs"
    with open(particles, "wb") as f:
        np.save(f, wide)
    line = refused(capsys, tmp_path, job_files(tmp_path, job[1], particles), particles)
    assert "components_mode_0/value has shape (2,)" in line


@pytest.mark.parametrize("argv, option", [
    (["path", "DATASET", "--between", "index:0", "index:1", "--neighbours", 1000000, "--out", "OUT.csv"], "--neighbours"),
    (["path", "DATASET", "--between", "index:0", "index:1", "--frames", 100000000, "--out", "OUT.csv"], "--frames"),
    (["cluster", "DATASET", "--bins", "0:100000", "--out-dir", "OUT"], "--bins"),
    (["cluster", "DATASET", "--k", 1000, "--out-dir", "OUT"], "--k"),
    (["compare", "DATASET", "DATASET", "--clusters", 1000, "--out-dir", "OUT"], "--clusters"),
])
def test_requests_beyond_what_makes_sense_are_refused_naming_the_option(capsys, work, argv, option):
    names = {"DATASET": work / "dataset.npz", "OUT": work / "out", "OUT.csv": work / "out.csv"}
    refused(capsys, work, [names.get(a, a) for a in argv], option)


def test_a_rewritten_file_of_a_job_dir_dataset_reruns_import(tmp_path):
    """The files import reads are the job's inputs, not only the folder (whose time
    does not change when a file in it is rewritten)."""
    from test_workflow import snakemake, write_config
    from zernike3d.synthetic import write_3dva_job

    write_3dva_job(tmp_path / "J7", box=16, n_components=2, seed=0)
    write_config(tmp_path / "work", {"datasets": {"j7": {"job_dir": str(tmp_path / "J7"), "order": 4}}})
    target = "results/j7/dataset.npz"
    snakemake(tmp_path / "work", "--cores", "1", target)
    assert "Nothing to be done" in snakemake(tmp_path / "work", "-n", target)[1]
    particles = tmp_path / "J7" / "J1_particles.cs"
    table = np.load(particles)
    table["components_mode_0/value"] *= 2
    with open(particles, "wb") as f:  # in place: the folder's time stays as it was
        np.save(f, table)
    assert "import_data" in snakemake(tmp_path / "work", "-n", target)[1]
