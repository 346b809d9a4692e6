"""--device / --gpu-id / --max-memory of the transform stages, on a machine without a usable GPU.

These run the real CLI on real MRC files. When CuPy and a GPU are present the first two
tests are skipped (they describe the CPU-only case).
"""

import numpy as np
import pytest

from zernike3d.cli import main
from zernike3d.scheduling.hardware import probe
from zernike3d.io.mrc import write_map
from zernike3d.maths.geometry import BallGeometry
from zernike3d.moments import Moments
from zernike3d.synthetic import chiral_phantom

no_gpu = pytest.mark.skipif(
    bool(probe().gpus) and probe().cupy_usable, reason="a usable GPU is present: these describe the CPU-only case"
)


@pytest.fixture
def phantom(tmp_path):
    path = tmp_path / "phantom.mrc"
    write_map(path, chiral_phantom(20), 1.0)
    return path


@no_gpu
def test_device_gpu_without_a_usable_gpu_fails_in_one_line(phantom, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["decompose", str(phantom), "--order", "6", "--out", str(out), "--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device gpu: no usable GPU" in err[0]
    assert not out.exists()


@no_gpu
def test_granted_but_unusable_gpu_falls_back_to_cpu_with_one_line(phantom, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    out = tmp_path / "m.npz"
    assert main(["decompose", str(phantom), "--order", "6", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "granted" in line]
    assert len(lines) == 1 and "running on the CPU" in lines[0]
    assert "plan: cpu-" in captured.out
    reference = Moments.from_maps(chiral_phantom(20), Moments.load(out).geometry, 6)
    np.testing.assert_allclose(Moments.load(out).moments, reference.moments, rtol=1e-12, atol=1e-15)


def test_memory_cap_too_small_for_any_placement_is_refused(phantom, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["decompose", str(phantom), "--order", "6", "--out", str(out), "--max-memory", "0.001"]) == 2
    assert "no placement fits" in capsys.readouterr().err
    assert not out.exists()


def test_reconstruct_with_forced_cpu_matches_default(phantom, tmp_path):
    moments = tmp_path / "m.npz"
    assert main(["decompose", str(phantom), "--order", "8", "--out", str(moments)]) == 0
    a, b = tmp_path / "a.mrc", tmp_path / "b.mrc"
    assert main(["reconstruct", str(moments), "--out", str(a)]) == 0
    assert main(["reconstruct", str(moments), "--out", str(b), "--device", "cpu", "--threads", "1"]) == 0
    import mrcfile

    with mrcfile.open(a) as fa, mrcfile.open(b) as fb:
        np.testing.assert_allclose(fa.data, fb.data, rtol=1e-6, atol=1e-7)


@no_gpu
def test_invariants_device_gpu_without_gpu_fails_before_writing(tmp_path, capsys):
    moments = tmp_path / "m.npz"
    Moments.from_maps(chiral_phantom(16), BallGeometry.for_box(16, 1.0), 4, names=["x"]).save(moments)
    out = tmp_path / "F.csv"
    assert main(["invariants", str(moments), "--out", str(out), "--device", "gpu"]) == 2
    assert "--device gpu" in capsys.readouterr().err and not out.exists()
