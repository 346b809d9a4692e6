"""Outputs never destroy anything: faults injected on the output side of every stage.

Each refused case asserts exit status 2, ONE line on stderr naming the file or option,
and that no input and no earlier output changed (a hash of every file under the test's
folder before and after). Also: a stage replaces its own earlier output; stale
temporaries of dead runs are cleaned, live ones kept; several outputs are written all
or none; a real full disk (tmpfs) and a read-only folder end in one line.
"""

import errno
import hashlib
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from small_job import write_small_job
from zernike3d.cli import main
from zernike3d.io import atomic
from zernike3d.io.atomic import MARKER, OutputKind, atomic_paths
from zernike3d.io.mrc import read_map, write_map
from zernike3d.maths.geometry import BallGeometry
from zernike3d.moments import Moments
from zernike3d.synthetic import chiral_phantom

BOX, ORDER = 16, 4


def tree(root):
    """{relative path: sha256} of every file (hidden ones too) under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*")) if p.is_file()
    }


def cli(*argv):
    return main([str(a) for a in argv])


def refused(capsys, root, argv, *names):
    """Run ``argv``: exit 2, one stderr line naming every one of ``names``, nothing under
    ``root`` changed, no temporaries left. Returns the line."""
    before = tree(root)
    capsys.readouterr()
    assert cli(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for name in names:
        assert str(name) in err, (name, err)
    assert tree(root) == before
    assert not [p for p in Path(root).rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    return err


def user_map(path, value=1.0):
    """An MRC map written by mrcfile alone, as a user's or another program's map is."""
    with mrcfile.new(path, overwrite=True) as mrc, warnings.catch_warnings():
        mrc.set_data(np.full((BOX, BOX, BOX), value, np.float32))
        mrc.voxel_size = 1.0
    return path


@pytest.fixture
def inputs(tmp_path):
    """A map written by zernike3d (map.mrc) and its moments (moments.npz)."""
    phantom = chiral_phantom(BOX, 1.0)
    write_map(tmp_path / "map.mrc", phantom, 1.0)
    Moments.from_maps(phantom, BallGeometry.for_box(BOX, 1.0), ORDER, names=["map"]).save(tmp_path / "moments.npz")
    return tmp_path / "map.mrc", tmp_path / "moments.npz"


@pytest.fixture
def job(tmp_path):
    """A small 3DVA dataset (dataset.npz, moments.npz) in tmp_path/job."""
    (tmp_path / "job").mkdir()
    paths, _, _ = write_small_job(tmp_path / "job")
    return paths


# --- nothing of the user's is replaced -------------------------------------------------


def test_example_job_dir_over_a_users_job_folder_is_refused(capsys, tmp_path):
    j42 = tmp_path / "J42"
    j42.mkdir()
    user_map(j42 / "J42_map.mrc")
    (j42 / "J42_particles.cs").write_bytes(b"\x93NUMPY particles")
    (j42 / "notes.txt").write_text("my notes\n")
    refused(capsys, tmp_path, ["example", "--job-dir", j42, "--box", BOX, "--components", 1], j42, MARKER)


def test_example_job_dir_holding_its_particles_is_refused(capsys, tmp_path):
    job = tmp_path / "J1"
    job.mkdir()
    particles = job / "P.cs"
    particles.write_bytes(b"particles")
    err = refused(capsys, tmp_path, ["example", "--job-dir", job, "--box", BOX, "--particles-cs", particles], job)
    assert "holds the input" in err


def test_reconstruct_out_onto_the_folder_holding_its_input_is_refused(capsys, tmp_path, inputs):
    _, moments = inputs
    err = refused(capsys, tmp_path, ["reconstruct", moments, "--out", tmp_path], tmp_path, moments)
    assert "holds the input" in err


def test_reconstruct_out_onto_a_users_folder_or_map_is_refused(capsys, tmp_path, inputs):
    _, moments = inputs
    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.txt").write_text("keep me\n")
    refused(capsys, tmp_path, ["reconstruct", moments, "--out", results], results, "refusing to replace")
    theirs = user_map(tmp_path / "theirs.mrc")
    refused(capsys, tmp_path, ["reconstruct", moments, "--out", theirs], theirs, "not an MRC map written by zernike3d")


def test_decompose_out_onto_a_users_map_or_onto_its_input_is_refused(capsys, tmp_path, inputs):
    map_path, _ = inputs
    theirs = user_map(tmp_path / "theirs.mrc")
    refused(capsys, tmp_path, ["decompose", map_path, "--order", ORDER, "--out", theirs], theirs)
    err = refused(capsys, tmp_path, ["decompose", map_path, "--order", ORDER, "--out", map_path], map_path)
    assert "is the input" in err
    link = tmp_path / "link.npz"
    link.symlink_to(map_path)
    err = refused(capsys, tmp_path, ["decompose", map_path, "--order", ORDER, "--out", link], link)
    assert "is the input" in err
    hard = tmp_path / "hard.mrc"
    os.link(map_path, hard)
    err = refused(capsys, tmp_path, ["decompose", hard, "--order", ORDER, "--out", map_path], map_path)
    assert "is the input" in err


def test_output_equal_to_an_input_or_another_output_is_refused_by_every_stage(capsys, tmp_path, job):
    d, m = job.dataset, job.moments
    for argv, named in [
        (["reconstruct", m, "--out", m], m),
        (["reconstruct", m, "--dataset", d, "--out-dir", tmp_path / "job", "--latent", "0,0"], tmp_path / "job"),
        (["preprocess", d, "--out", d], d),
        (["invariants", m, "--out", m], m),
        (["invariants", m, "--out", tmp_path / "i.csv", "--dataset", d, "--particles-out", d], d),
        (["invariants", m, "--out", tmp_path / "i.npz", "--dataset", d, "--particles-out", tmp_path / "i.npz"],
         "the other output"),
        (["qc", "--dataset", d, "--moments", m, "--out-dir", tmp_path / "job"], tmp_path / "job"),
        (["import", "--map", m, "--out", m], m),
        (["basis", d, "--order", 4, "--cache", tmp_path / "cache", "--out", d], d),
    ]:
        err = refused(capsys, tmp_path, argv, named)
        assert "the input" in err or "the other output" in err, (argv, err)


def test_the_analysis_stages_never_write_over_their_inputs(capsys, monkeypatch, tmp_path, job):
    d = job.dataset
    clusters = tmp_path / "clusters"
    assert cli("cluster", d, "--k", 2, "--out-dir", clusters) == 0
    inside = clusters / "dataset.npz"  # an input kept in an earlier output folder
    inside.write_bytes(d.read_bytes())
    refused(capsys, tmp_path, ["cluster", inside, "--k", 2, "--out-dir", clusters], clusters, "holds the input")
    refused(capsys, tmp_path, ["cluster", d, "--k", 2, "--out-dir", tmp_path / "job"], tmp_path / "job", "holds the input")
    refused(capsys, tmp_path, ["compare", tmp_path / "job", clusters, "--out-dir", tmp_path], tmp_path, "holds the input")
    refused(capsys, tmp_path, ["path", d, "--between", "index:0", "index:5", "--out", tmp_path / "p.csv",
                               "--plot", tmp_path / "p.csv"], "the other output")
    centres = clusters / "centres.csv"
    refused(capsys, tmp_path, ["path", d, "--between", "cluster_00", "index:5", "--clusters", centres, "--out", centres],
            centres, "is the input")
    refused(capsys, tmp_path, ["path", d, "--between", "index:0", "index:5", "--out", tmp_path / "q.png"], "q.png", ".csv")
    monkeypatch.chdir(clusters)
    refused(capsys, tmp_path, ["cluster", d, "--k", 2, "--out-dir", "."], "current folder")


def test_a_users_file_saved_into_an_earlier_output_folder_keeps_it_from_being_replaced(capsys, tmp_path, job):
    maps = tmp_path / "maps"
    argv = ["reconstruct", job.moments, "--dataset", job.dataset, "--out-dir", maps, "--latent", "0,0"]
    assert cli(*argv) == 0
    lines = (maps / MARKER).read_text().splitlines()
    assert lines[0] == "reconstruct --out-dir"
    assert [line.split("\t") for line in lines[1:]] == [
        [name, hashlib.sha256((maps / name).read_bytes()).hexdigest()] for name in ("base.mrc", "index.csv", "latent_00.mrc")]
    (maps / "sessions").mkdir()
    (maps / "sessions" / "my_session.cxs").write_text("a ChimeraX session\n")
    err = refused(capsys, tmp_path, argv, maps, "sessions/my_session.cxs")
    assert "1 file(s) that zernike3d did not write" in err
    (maps / "sessions" / "my_session.cxs").unlink()
    (maps / ".snakemake_timestamp").touch()  # Snakemake's stamp of a directory() output is no one's data
    assert cli(*argv) == 0  # nor is an empty folder left behind


def test_nothing_is_written_into_a_folder_written_whole(capsys, tmp_path):
    example = tmp_path / "example"
    assert cli("example", "--out", example, "--box", BOX, "--order", 2) == 0
    phantom, moments = example / "example.mrc", example / "example_moments.npz"
    # the phantom (a zernike3d map) is an input of what follows: not replaceable from outside
    refused(capsys, tmp_path, ["reconstruct", moments, "--out", phantom], phantom, "inside", "zernike3d example")
    refused(capsys, tmp_path, ["invariants", moments, "--out", example / "F.csv"], example / "F.csv", "inside")
    assert cli("reconstruct", moments, "--out", tmp_path / "rebuilt.mrc") == 0


def test_an_earlier_output_of_another_kind_is_not_replaced(capsys, tmp_path, job):
    # a moments file where the invariants .npz or a dataset is to go, a dataset where moments go
    refused(capsys, tmp_path, ["invariants", job.moments, "--out", job.dataset], job.dataset, "invariants file")
    refused(capsys, tmp_path, ["preprocess", job.dataset, "--out", job.moments], job.moments, "dataset bundle")
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}\n')
    refused(capsys, tmp_path, ["basis", job.dataset, "--order", 4, "--cache", tmp_path / "c", "--out", notes], notes)
    theirs = tmp_path / "P.zarr"
    theirs.mkdir()
    (theirs / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {"mine": 1}}\n')
    refused(capsys, tmp_path, ["invariants", job.moments, "--out", tmp_path / "i.csv", "--dataset", job.dataset,
                               "--particles-out", theirs], theirs, "particle invariants store")
    other = tmp_path / "other.npz"
    other.write_bytes(job.moments.read_bytes())
    err = refused(capsys, tmp_path, ["qc", "--dataset", job.dataset, "--moments", job.moments, "--out-dir", other], other)
    assert "not a folder written by `zernike3d qc`" in err


# --- a stage replaces its own earlier output ------------------------------------------


def test_rerunning_a_stage_replaces_its_own_earlier_output(capsys, tmp_path, inputs, job):
    map_path, _ = inputs
    out = tmp_path / "m.npz"
    assert cli("decompose", map_path, "--order", 2, "--out", out) == 0
    assert cli("decompose", map_path, "--order", ORDER, "--out", out) == 0
    assert Moments.load(out).order == ORDER
    rebuilt = tmp_path / "rebuilt.mrc"
    assert cli("reconstruct", out, "--out", rebuilt) == 0
    assert cli("reconstruct", out, "--out", rebuilt, "--box", 20) == 0
    assert read_map(rebuilt).data.shape == (20, 20, 20)
    maps = tmp_path / "maps"
    assert cli("reconstruct", job.moments, "--dataset", job.dataset, "--out-dir", maps, "--latent", "0,0") == 0
    assert cli("reconstruct", job.moments, "--dataset", job.dataset, "--out-dir", maps, "--latent", "1,0") == 0
    assert sorted(p.name for p in maps.iterdir()) == [MARKER, "base.mrc", "index.csv", "latent_00.mrc"]
    assert "1.0" in (maps / "index.csv").read_text()
    table, store = tmp_path / "inv.csv", tmp_path / "p.zarr"
    for _ in range(2):
        assert cli("invariants", job.moments, "--out", table, "--dataset", job.dataset, "--particles-out", store) == 0
    # Snakemake deletes a declared store/zarr.json before re-running the job: still ours
    (store / "zarr.json").unlink()
    assert cli("invariants", job.moments, "--out", table, "--dataset", job.dataset, "--particles-out", store) == 0
    assert (store / "zarr.json").is_file()
    job_dir = tmp_path / "J1"
    for seed in (0, 1):
        assert cli("example", "--job-dir", job_dir, "--box", BOX, "--components", 1, "--seed", seed) == 0
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_the_current_folder_is_never_an_output(capsys, monkeypatch, tmp_path):
    empty = tmp_path / "here"
    empty.mkdir()
    monkeypatch.chdir(empty)
    refused(capsys, tmp_path, ["example", "--out", ".", "--box", BOX, "--order", 2], "current folder")
    refused(capsys, tmp_path, ["example", "--out", "..", "--box", BOX, "--order", 2], "current folder")


def test_an_empty_folder_may_be_replaced(tmp_path, inputs):
    map_path, _ = inputs
    out = tmp_path / "empty.npz"
    out.mkdir()
    assert cli("decompose", map_path, "--order", 2, "--out", out) == 0
    assert out.is_file()


# --- leftovers of killed runs ------------------------------------------------------------


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_runs_are_removed_live_ones_kept(tmp_path, inputs):
    map_path, _ = inputs
    host = socket.gethostname()
    out = tmp_path / "m.npz"
    dead = tmp_path / f".m.tmp-{host}-{dead_pid()}.npz"
    dead_aside = tmp_path / f".m.old-{host}-{dead_pid()}.npz"
    live = tmp_path / f".m.tmp-{host}-{os.getppid()}.npz"
    elsewhere = tmp_path / ".m.tmp-othernode-12.npz"  # another host's job, recently touched
    other_output = tmp_path / f".n.tmp-{host}-{dead_pid()}.npz"  # not this output's
    for path in (dead, dead_aside, live, elsewhere, other_output):
        path.write_bytes(b"partial")
    old_elsewhere = tmp_path / ".m.tmp-othernode-13.npz"
    old_elsewhere.write_bytes(b"partial")
    long_ago = os.stat(old_elsewhere).st_mtime - atomic.STALE_SECONDS - 60
    os.utime(old_elsewhere, (long_ago, long_ago))
    assert cli("decompose", map_path, "--order", 2, "--out", out) == 0
    assert not dead.exists() and not dead_aside.exists() and not old_elsewhere.exists()
    assert live.exists() and elsewhere.exists() and other_output.exists()


def test_a_killed_write_leaves_no_output_and_the_next_run_cleans_up(tmp_path, inputs):
    map_path, _ = inputs
    out = tmp_path / "maps"
    code = (
        "import os, sys\n"
        "from zernike3d.io import mrc\n"
        "real = mrc.write_map\n"
        "def die(path, *a, **k):\n"
        "    real(path, *a, **k)\n"
        "    os._exit(9)\n"
        "mrc.write_map = die\n"
        "import zernike3d.stages.example as e\n"
        "e.write_map = die\n"
        "from zernike3d.cli import main\n"
        f"main(['example', '--out', {str(out)!r}, '--box', '{BOX}', '--order', '2'])\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 9
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert cli("example", "--out", out, "--box", BOX, "--order", 2) == 0
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


# --- several outputs: all or none ------------------------------------------------------


def fail_on_call(number, error=None):
    """A stand-in that raises ``error`` (default: a full disk) on its ``number``-th call."""
    calls = []

    def wrap(real):
        def writer(*args, **kwargs):
            calls.append(args)
            if len(calls) == number:
                raise error or OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*args, **kwargs)

        return writer

    return wrap


def test_reconstruct_out_dir_is_all_or_none(capsys, monkeypatch, tmp_path, job):
    import zernike3d.stages.reconstruct as stage

    maps = tmp_path / "maps"
    argv = ["reconstruct", job.moments, "--dataset", job.dataset, "--out-dir", maps, "--latent", "0,0", "1,0", "0,1"]
    assert cli(*argv) == 0
    monkeypatch.setattr(stage, "write_map", fail_on_call(3)(stage.write_map))  # the disk fills at the 3rd map
    err = refused(capsys, tmp_path, [*argv[:-3], "0.5,0", "2,0", "0,2"], maps, "no space")
    assert ".tmp-" not in err  # the final path is named, not the hidden temporary


def test_invariants_table_and_store_are_all_or_none(capsys, monkeypatch, tmp_path, job):
    import zernike3d.io.particle_invariants as stage  # the invariants stage imports its writer when it runs

    table, store = tmp_path / "inv.csv", tmp_path / "p.zarr"
    argv = ["invariants", job.moments, "--out", table, "--dataset", job.dataset, "--particles-out", store]
    monkeypatch.setattr(stage, "write_particle_invariants", fail_on_call(1)(stage.write_particle_invariants))
    refused(capsys, tmp_path, argv, "no space")
    assert not table.exists() and not store.exists()
    monkeypatch.undo()
    assert cli(*argv) == 0
    monkeypatch.setattr(stage, "write_particle_invariants", fail_on_call(1)(stage.write_particle_invariants))
    refused(capsys, tmp_path, argv, "no space")  # the earlier table and store are kept as they were


def test_qc_is_all_or_none(capsys, monkeypatch, tmp_path, job):
    from zernike3d import plots

    out = tmp_path / "qc"
    argv = ["qc", "--dataset", job.dataset, "--moments", job.moments, "--out-dir", out]
    assert cli(*argv) == 0
    # the disk fills at the invariants figure, after the tables and fsc.png: the earlier
    # folder stays exactly as it was, and nothing of the new one is left
    monkeypatch.setattr(plots, "plot_invariant_maps", fail_on_call(1)(plots.plot_invariant_maps))
    refused(capsys, tmp_path, argv, out, "no space")


def test_a_failed_rename_restores_every_earlier_output(monkeypatch, tmp_path):
    kind = OutputKind("a test output", lambda path: path.read_text().startswith("ours"))
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("ours 1")
    second.write_text("ours 1")
    real_rename = os.rename

    def rename(src, dst):
        if Path(dst) == second and ".tmp-" in Path(src).name:  # the new b.txt cannot be put in place
            raise OSError(errno.EIO, "injected", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="injected"):
        with atomic_paths([(first, kind), (second, kind)]) as (a, b):
            a.write_text("ours 2")
            b.write_text("ours 2")
    assert first.read_text() == second.read_text() == "ours 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


# --- faults of the machine ---------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (needs root and mount); yields its path, unmounts after."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_ends_in_one_line_and_keeps_the_earlier_output(capsys, small_tmpfs, inputs):
    _, moments = inputs
    out = small_tmpfs / "rebuilt.mrc"
    assert cli("reconstruct", moments, "--out", out) == 0  # 16³ floats fit
    err = refused(capsys, small_tmpfs, ["reconstruct", moments, "--out", out, "--box", 48], out, "no space")
    assert err.startswith("zernike3d reconstruct: error:")


def test_a_full_disk_during_a_zarr_store_names_the_store(capsys, small_tmpfs, job):
    table, store = small_tmpfs / "inv.csv", small_tmpfs / "p.zarr"
    ballast = small_tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (240 * 1024))
    argv = ["invariants", job.moments, "--out", table, "--dataset", job.dataset, "--particles-out", store]
    err = refused(capsys, small_tmpfs, argv, "no space")
    assert str(store) in err or str(table) in err
    assert not table.exists() and not store.exists()


def test_a_read_only_folder_ends_in_one_line(capsys, monkeypatch, small_tmpfs, inputs):
    map_path, _ = inputs
    if subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True).returncode:
        pytest.skip("cannot remount the tmpfs read-only")
    out = small_tmpfs / "sub" / "m.npz"
    # found before any work, by the option check
    refused(capsys, small_tmpfs, ["decompose", map_path, "--order", 2, "--out", out], out, small_tmpfs, "cannot write")
    # found while writing (the check passed, then the folder became read-only): the same one line
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: True)
    refused(capsys, small_tmpfs, ["decompose", map_path, "--order", 2, "--out", out], small_tmpfs, "cannot write here")


def test_file_size_limit_ends_in_one_line(tmp_path, inputs):
    """RLIMIT_FSIZE (no root needed): the write fails with EFBIG; one line, nothing left."""
    _, moments = inputs
    out = tmp_path / "rebuilt.mrc"
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))\n"
        "from zernike3d.cli import main\n"
        f"sys.exit(main(['reconstruct', {str(moments)!r}, '--out', {str(out)!r}, '--box', '48']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "no space" in lines[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.mrc", "moments.npz"]


def test_requests_that_cannot_fit_in_memory_name_the_option(capsys, tmp_path, job):
    out = tmp_path / "prep.npz"
    err = refused(capsys, tmp_path, ["preprocess", job.dataset, "--out", out, "--crop", 20000], "--crop", "GiB")
    assert not out.exists()
    refused(capsys, tmp_path, ["plan", "--box", 10**6, "--order", 10], "--box", "GiB")
    refused(capsys, tmp_path, ["reconstruct", job.moments, "--out", out, "--box", 10**5], "--box", "GiB")
    assert "available" in err


# --- round three (issue 18): stores, edited files, incomplete folders ------------------


def particle_store(tmp_path, job):
    """tmp_path/P.zarr (and F.csv): the small job's per-particle invariants."""
    argv = ["invariants", job.moments, "--out", tmp_path / "F.csv", "--dataset", job.dataset,
            "--particles-out", tmp_path / "P.zarr"]
    assert cli(*argv) == 0
    return tmp_path / "P.zarr", argv


def test_a_store_holding_a_users_files_is_not_replaced(capsys, tmp_path, job):
    store, argv = particle_store(tmp_path, job)
    (store / "notes.txt").write_text("J43: the good half\n")
    (store / "mine").mkdir()
    (store / "mine" / "table.csv").write_text("a,b\n")
    refused(capsys, tmp_path, argv, store, "notes.txt")


def test_nothing_is_written_inside_a_store_at_any_depth(capsys, tmp_path, job):
    """The store's next write would delete it: `compare --out-dir J43/P.zarr/cmp` lost
    15 files that way."""
    store, _ = particle_store(tmp_path, job)
    for out in (store / "cmp", store / "a" / "b"):
        line = refused(capsys, tmp_path, ["reconstruct", job.moments, "--dataset", job.dataset, "--latent", "0,0",
                                          "--out-dir", out], out, store)
        assert "written whole" in line
    assert cli(*particle_store(tmp_path, job)[1]) == 0  # and the store is still ours to replace


def test_an_edited_output_file_is_not_replaced(capsys, tmp_path, job):
    maps = tmp_path / "maps"
    argv = ["reconstruct", job.moments, "--dataset", job.dataset, "--out-dir", maps, "--latent", "0,0"]
    assert cli(*argv) == 0
    with open(maps / "index.csv", "a") as f:
        f.write("# my notes on latent_00\n")
    line = refused(capsys, tmp_path, argv, maps, "index.csv")
    assert "changed since zernike3d wrote them" in line


def test_an_incomplete_earlier_folder_is_gone_after_a_refusal(capsys, tmp_path, job):
    """Snakemake deletes a job's declared outputs before running it: what it does not
    declare must not outlive the run as half a folder, whether the run then fails or
    is refused."""
    maps = tmp_path / "maps"
    assert cli("reconstruct", job.moments, "--dataset", job.dataset, "--out-dir", maps, "--latent", "0,0") == 0
    (maps / "base.mrc").unlink()  # as Snakemake does
    capsys.readouterr()
    assert cli("reconstruct", job.moments, "--dataset", job.dataset, "--out-dir", maps, "--latent", "0,0,0") == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not maps.exists()
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
