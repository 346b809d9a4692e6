"""The decompose, reconstruct, invariants, info and example commands, run as a user would."""

import csv
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cryosparc.dataset import CSDAT_FORMAT
from cryosparc.dataset import Dataset as CsDataset
from scipy.ndimage import gaussian_filter

from zernike3d.cli import main
from zernike3d.io.dataset import Dataset
from zernike3d.io.mrc import read_map, write_map
from zernike3d.maths.geometry import BallGeometry
from zernike3d.moments import Moments
from zernike3d.synthetic import chiral_phantom

BOX, VOXEL, ORDER = 24, 1.5, 10


@pytest.fixture
def phantom(tmp_path):
    """A small phantom map with a non-zero origin."""
    path = tmp_path / "phantom.mrc"
    write_map(path, chiral_phantom(BOX, VOXEL), VOXEL, origin=(5.0, 6.0, 7.0))
    return path


@pytest.fixture
def moments_file(tmp_path, phantom):
    path = tmp_path / "phantom.npz"
    assert main(["decompose", str(phantom), "--order", str(ORDER), "--out", str(path)]) == 0
    return path


def cli(*argv):
    return main([str(arg) for arg in argv])


def assert_refused(capsys, argv, source, problem, output):
    """Exit 2, one line on stderr naming ``source`` and matching ``problem``, no output
    file and no temporary left beside it."""
    before = set(output.parent.iterdir())
    assert cli(*argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{source}: " in lines[0] and re.search(problem, lines[0]), lines[0]
    assert not output.exists()
    assert set(output.parent.iterdir()) == before


@pytest.mark.parametrize("case", ["not MRC", "missing", "non-cubic", "NaN/inf", "2D"])
def test_decompose_refuses_bad_maps(capsys, tmp_path, bad_maps, case):
    path, problem = bad_maps[case]
    out = tmp_path / "out.npz"
    assert_refused(capsys, ["decompose", path, "--order", 4, "--out", out], path, problem, out)


def test_decompose_refuses_negative_order(capsys, tmp_path, phantom):
    out = tmp_path / "out.npz"
    assert_refused(capsys, ["decompose", phantom, "--order", -1, "--out", out], "--order", "must be >= 0", out)


@pytest.mark.parametrize("box, voxel", [(BOX + 2, VOXEL), (BOX, 2 * VOXEL)])
def test_decompose_refuses_mismatched_maps(capsys, tmp_path, phantom, box, voxel):
    odd = tmp_path / "odd.mrc"
    write_map(odd, np.zeros((box,) * 3), voxel)
    out = tmp_path / "out.npz"
    argv = ["decompose", phantom, odd, "--order", 4, "--out", out]
    assert_refused(capsys, argv, odd, f"box {box} at {voxel:g} Å differs from .*phantom.mrc", out)


@pytest.mark.parametrize("stage, suffix", [("reconstruct", ".mrc"), ("invariants", ".csv")])
def test_moments_file_of_another_format_is_refused(capsys, tmp_path, stage, suffix):
    other = tmp_path / "weights.npz"
    np.savez(other, format=np.array("something-else"), moments=np.zeros((1, 1), complex))
    out = tmp_path / f"out{suffix}"
    assert_refused(capsys, [stage, other, "--out", out], other, "not a zernike3d moments file", out)


def test_reconstruct_refuses_order_above_stored(capsys, tmp_path, moments_file):
    out = tmp_path / "out.mrc"
    argv = ["reconstruct", moments_file, "--order", ORDER + 2, "--out", out]
    assert_refused(capsys, argv, moments_file, f"order {ORDER + 2} is above the stored order {ORDER}", out)


def test_reconstruct_refuses_unknown_volume(capsys, tmp_path, moments_file):
    out = tmp_path / "out.mrc"
    assert_refused(capsys, ["reconstruct", moments_file, "--volume", "loop", "--out", out], moments_file, "no volume", out)


def test_decompose_reports_outside_density_and_unresolvable_order(capsys, tmp_path, phantom):
    out = tmp_path / "m.npz"
    assert cli("decompose", phantom, "--order", 60, "--radius", 9, "--out", out) == 0
    captured = capsys.readouterr()
    assert "absolute density outside the ball (R = 9 Å)" in captured.out
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 2  # the order is checked first, then the maps against the ball
    assert "warning: order 60 exceeds what the sampling resolves (order 15 already reaches Nyquist" in warnings[0]
    assert re.search(r"warning: \d+\.\d% of the absolute density of phantom lies outside", warnings[1])
    assert Moments.load(out).radius == 9.0


def test_a_map_of_zeros_is_named_in_a_warning(capsys, tmp_path):
    write_map(tmp_path / "empty.mrc", np.zeros((BOX,) * 3), VOXEL)
    assert cli("decompose", tmp_path / "empty.mrc", "--order", 2, "--out", tmp_path / "m.npz") == 0
    assert "warning: empty is zero everywhere" in capsys.readouterr().err


def test_a_radius_beyond_every_voxel_is_warned_of(capsys, tmp_path, phantom):
    assert cli("decompose", phantom, "--order", 2, "--radius", 500, "--out", tmp_path / "m.npz") == 0
    far = np.sqrt(3) * (BOX // 2) * VOXEL  # the farthest voxel centre from voxel box // 2
    assert f"warning: --radius 500 Å reaches beyond every voxel (the farthest is {far:.4g} Å" in capsys.readouterr().err
    assert cli("decompose", phantom, "--order", 2, "--radius", "circumscribed", "--out", tmp_path / "m.npz") == 0
    assert "beyond every voxel" not in capsys.readouterr().err


def test_an_order_too_large_for_the_memory_is_refused_at_once(capsys, tmp_path, phantom):
    out = tmp_path / "m.npz"
    assert_refused(capsys, ["decompose", phantom, "--order", 100000, "--out", out], "--order",
                   r"order 100000 has 8\.33e\+13 moments per map: at least .* GiB of memory needed", out)


def test_decompose_several_maps_with_names(tmp_path, phantom):
    mirror = tmp_path / "mirror.mrc"
    # x -> -x about the ball centre (voxel BOX // 2): index i -> BOX - i
    write_map(mirror, np.roll(read_map(phantom).data[:, :, ::-1], 1, axis=2), VOXEL)
    out = tmp_path / "m.npz"
    assert cli("decompose", phantom, mirror, "--order", 6, "--names", "hand,mirror", "--out", out) == 0
    moments = Moments.load(out)
    assert moments.names == ["hand", "mirror"] and moments.moments.shape[0] == 2
    assert moments.origin == (5.0, 6.0, 7.0)  # from the first map
    assert np.allclose(moments.invariants()[0], moments.invariants()[1], rtol=1e-6)  # mirror images
    for names in ("hand,hand", "hand,"):
        assert main(["decompose", str(phantom), str(mirror), "--order", "6", "--names", names, "--out", str(tmp_path / "x.npz")]) == 2


def test_decompose_a_dataset_bundle_with_a_cached_basis(tmp_path, phantom, moments_file):
    source = read_map(phantom)
    bundle = tmp_path / "bundle.npz"
    Dataset.single_map(source.data, source.voxel_size, source.origin, provenance=[]).save(bundle)
    basis = tmp_path / "basis.json"
    assert cli("basis", bundle, "--order", ORDER, "--cache", tmp_path / "cache", "--out", basis) == 0
    out = tmp_path / "from_bundle.npz"
    assert cli("decompose", bundle, "--order", ORDER, "--basis", basis, "--out", out) == 0
    from_bundle, from_map = Moments.load(out), Moments.load(moments_file)
    assert from_bundle.names == ["base"] and from_bundle.origin == from_map.origin
    assert np.allclose(from_bundle.moments, from_map.moments, rtol=0, atol=1e-12 * np.abs(from_map.moments).max())


def test_round_trip_of_the_real_map(tmp_path, hand_map):
    """hand-vol.mrc carries white noise above ~1/5 Å^-1 that no moderate order holds: the
    reconstruction correlates ~0.79 with the raw map and ~0.99 with the map smoothed
    by a 1-voxel Gaussian (measured at order 30: 0.785 and 0.9935; order 15: 0.626, 0.831)."""
    moments = tmp_path / "hand.npz"
    assert cli("decompose", hand_map, "--order", 30, "--out", moments) == 0
    source = read_map(hand_map).data.astype(np.float64)
    inside = BallGeometry.for_box(64, 1.0).inside()

    def correlations(order):
        out = tmp_path / f"hand_{order}.mrc"
        assert cli("reconstruct", moments, "--order", order, "--out", out) == 0
        rebuilt = read_map(out)
        assert rebuilt.voxel_size == 1.0 and rebuilt.origin == (0.0, 0.0, 0.0)
        return [np.corrcoef(reference[inside], rebuilt.data[inside])[0, 1] for reference in (source, gaussian_filter(source, 1.0))]

    raw, smooth = correlations(30)
    assert raw > 0.77 and smooth > 0.985
    low_raw, low_smooth = correlations(15)
    assert low_raw < raw - 0.1 and low_smooth < smooth - 0.1


def test_reconstruct_on_a_finer_grid_keeps_the_ball_in_place(tmp_path, moments_file):
    """Half the voxel size, twice the box: the ball keeps its radius and centre in Å, so
    every other voxel of the fine map is a voxel of the stored grid."""
    coarse, fine = tmp_path / "coarse.mrc", tmp_path / "fine.mrc"
    assert cli("reconstruct", moments_file, "--out", coarse) == 0
    assert cli("reconstruct", moments_file, "--box", 2 * BOX, "--voxel-size", VOXEL / 2, "--out", fine) == 0
    coarse, fine = read_map(coarse), read_map(fine)
    assert coarse.voxel_size == VOXEL and coarse.origin == (5.0, 6.0, 7.0)
    assert fine.voxel_size == VOXEL / 2 and fine.data.shape == (2 * BOX,) * 3
    assert fine.origin == (5.0, 6.0, 7.0)  # centre voxel BOX of the fine grid = voxel BOX/2 of the coarse
    assert np.allclose(fine.data[::2, ::2, ::2], coarse.data, atol=1e-5 * np.abs(coarse.data).max())

    shifted = tmp_path / "shifted.mrc"
    assert cli("reconstruct", moments_file, "--box", BOX + 6, "--out", shifted) == 0
    assert read_map(shifted).origin == (5.0 - 3 * VOXEL, 6.0 - 3 * VOXEL, 7.0 - 3 * VOXEL)


def test_invariants_csv_and_npz_equal_moments_invariants(tmp_path, moments_file):
    expected = Moments.load(moments_file)
    assert cli("invariants", moments_file, "--out", tmp_path / "f.csv") == 0
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["n", "l", "phantom"]
    assert [[int(r[0]), int(r[1])] for r in rows[1:]] == expected.nl.tolist()
    assert np.array_equal(np.array([[float(v) for v in r[2:]] for r in rows[1:]]).T, expected.invariants())

    assert cli("invariants", moments_file, "--out", tmp_path / "f.npz") == 0
    with np.load(tmp_path / "f.npz") as npz:
        assert np.array_equal(npz["invariants"], expected.invariants())
        assert np.array_equal(npz["nl"], expected.nl) and list(npz["names"]) == ["phantom"]


def test_info_prints_stats(capsys, moments_file):
    capsys.readouterr()
    assert cli("info", moments_file) == 0
    assert capsys.readouterr().out == Moments.load(moments_file).stats() + "\n"


def test_info_describes_a_dataset_bundle(capsys, tmp_path):
    from small_job import PARTICLES, write_small_job

    paths, dataset, _ = write_small_job(tmp_path)
    capsys.readouterr()
    assert cli("info", paths.dataset) == 0
    out = capsys.readouterr().out
    assert out.startswith("Dataset of 3 volume(s): base, component_0, component_1")
    assert f"particles     {PARTICLES} with 2 latents each" in out
    low, median, high = np.percentile(dataset.latents[:, 1], [5, 50, 95])
    assert f"component_1: 5%/50%/95% at {low:.4g} / {median:.4g} / {high:.4g}" in out


def test_info_of_a_file_that_is_not_npz_is_one_line(capsys, tmp_path):
    bad = tmp_path / "notes.npz"
    bad.write_text("not a zip")
    assert cli("info", bad) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(bad) in err and "not a .npz file" in err


def test_example_writes_everything(capsys, tmp_path):
    out = tmp_path / "example"
    assert cli("example", "--out", out, "--box", 32, "--order", 16) == 0
    names = ["example.mrc", "example_moments.npz", "example_reconstructed.mrc", "example_invariants.csv"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, ".zernike3d-output"])  # the folder's owner marker
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    correlation = float(re.search(r"correlation (\d\.\d+)", printed).group(1))
    assert correlation > 0.9
    assert Moments.load(out / "example_moments.npz").order == 16


def test_example_writes_a_3dva_job_for_the_workflow(capsys, tmp_path, shared_data):
    job = tmp_path / "job"
    particles = shared_data / "cryosparc_P12_J24_001_particles.cs"
    argv = ["example", "--job-dir", job, "--box", 16, "--components", 2, "--particles-cs", particles]
    assert cli(*argv) == 0
    assert sorted(p.name for p in job.iterdir()) == sorted(
        ["J1_map.mrc", "J1_component_0.mrc", "J1_component_1.mrc", "J1_particles.cs", ".zernike3d-output"]
    )
    assert read_map(job / "J1_map.mrc").data.shape == (16, 16, 16)
    assert_refused(capsys, argv[:-1] + [tmp_path / "none.cs"], str(tmp_path / "none.cs"), "file not found", tmp_path / "other")
    (tmp_path / "text.cs").write_text("not a table\n")
    assert_refused(capsys, argv[:-1] + [tmp_path / "text.cs"], str(tmp_path / "text.cs"), "not a readable cryoSPARC .cs", tmp_path / "other")
    with open(tmp_path / "bare.cs", "wb") as f:
        np.save(f, np.zeros(3, dtype=[("uid", "<u8"), ("ctf/df1_A", "<f4")]))
    assert_refused(capsys, argv[:-1] + [tmp_path / "bare.cs"], str(tmp_path / "bare.cs"), "no blob/psize_A", tmp_path / "other")
    compressed = tmp_path / "compressed.cs"  # cryoSPARC's compressed format gives the same job
    CsDataset.load(particles).save(compressed, format=CSDAT_FORMAT)
    assert cli("example", "--job-dir", tmp_path / "job2", "--box", 16, "--components", 2, "--particles-cs", compressed) == 0
    assert np.array_equal(np.load(tmp_path / "job2" / "J1_particles.cs"), np.load(job / "J1_particles.cs"))


def test_example_job_without_a_particles_file_has_synthetic_particles(tmp_path):
    from zernike3d.io.cryosparc import read_particles

    job = tmp_path / "job"
    assert cli("example", "--job-dir", job, "--box", 16, "--components", 2) == 0
    particles = read_particles(job / "J1_particles.cs")
    assert particles.latents.shape == (2000, 2) and len(np.unique(particles.uid)) == 2000
    assert particles.psize_A == pytest.approx(read_map(job / "J1_map.mrc").voxel_size)


def test_the_examples_input_maps_are_not_labelled_as_outputs(capsys, tmp_path):
    """Only outputs carry the zernike3d label: a copy of an example's input map is the
    user's, and a command writing onto it is refused (the reconstruction is an output)."""
    from zernike3d.io.mrc import written_by_zernike3d

    job, out = tmp_path / "job", tmp_path / "example"
    assert cli("example", "--job-dir", job, "--box", 16, "--components", 1) == 0
    assert cli("example", "--out", out, "--box", 16, "--order", 6) == 0
    inputs = [job / "J1_map.mrc", job / "J1_component_0.mrc", out / "example.mrc"]
    assert not any(written_by_zernike3d(p) for p in inputs)
    assert written_by_zernike3d(out / "example_reconstructed.mrc")
    mine = tmp_path / "mine.mrc"
    shutil.copy(job / "J1_map.mrc", mine)
    before = mine.read_bytes()
    capsys.readouterr()
    assert cli("reconstruct", out / "example_moments.npz", "--out", mine) == 2
    assert str(mine) in capsys.readouterr().err and mine.read_bytes() == before


@pytest.mark.skipif(shutil.which("zernike3d") is None, reason="the zernike3d script is not installed (pip install -e .)")
def test_installed_script(tmp_path, bad_maps, phantom):
    out = tmp_path / "m.npz"
    path, problem = bad_maps["non-cubic"]
    refused = subprocess.run(["zernike3d", "decompose", str(path), "--order", "4", "--out", str(out)], capture_output=True, text=True)
    assert refused.returncode == 2 and not out.exists()
    assert re.fullmatch(f"zernike3d decompose: error: {re.escape(str(path))}: {problem}\n", refused.stderr)

    done = subprocess.run(["zernike3d", "decompose", str(phantom), "--order", "4", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Moments.load(out).order == 4


def test_stage_summaries_are_the_modules_first_docstring_lines():
    """`zernike3d --help` lists stages without importing them; its lines must not drift."""
    import importlib

    from zernike3d.cli import STAGES

    for name, (module_name, summary) in STAGES.items():
        module = importlib.import_module(f"zernike3d.stages.{module_name}")
        assert module.__doc__.strip().splitlines()[0] == summary, name


def test_help_imports_no_stage_and_no_numpy():
    """Start-up: `zernike3d --help` and `--version` import neither a stage nor numpy."""
    code = (
        "import sys; from zernike3d.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.startswith('zernike3d.stages.') or m == 'numpy']\n"
        "assert not heavy, heavy"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    version = subprocess.run([sys.executable, "-m", "zernike3d", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("zernike3d ")


def test_a_stages_help_imports_none_of_the_heavy_libraries():
    """`zernike3d STAGE --help` builds that stage's options only: numba, scipy, matplotlib,
    zarr and scikit-learn are imported when a stage runs, not for its help."""
    code = (
        "import sys; from zernike3d.cli import STAGES, main\n"
        "for stage in STAGES:\n"
        "    try:\n        main([stage, '--help'])\n    except SystemExit:\n        pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'scipy', 'matplotlib', 'zarr', 'sklearn'})\n"
        "assert not heavy, heavy"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
