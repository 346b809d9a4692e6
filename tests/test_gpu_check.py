"""benchmarks/gpu_check.sh on a machine without a usable GPU, and the GPU rates it stores.

The script's GPU steps need a GPU; here they are either skipped (no nvidia-smi) or, with
a stand-in nvidia-smi that lists a GPU, run and fail or skip for want of CuPy: both must
end with exit 0 and a table that says what happened. The calibration's storage is checked
as the planner reads it.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zernike3d.scheduling.calibration import store_gpu_rates
from zernike3d.scheduling.hardware import GpuDescription, MachineDescription
from zernike3d.maths.geometry import BallGeometry
from zernike3d.scheduling.planner import GPU_DATASHEETS, Sizes, gpu_rates, gpu_time_parts, plan_for

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def run_script(tmp_path, path_prefix=None, **env):
    environment = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
                   "GPU_CHECK_SKIP_INSTALL": "1", **env}
    if path_prefix is not None:
        environment["PATH"] = f"{path_prefix}:{environment['PATH']}"
    done = subprocess.run(["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=300)
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    raw = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    return done, table, raw


def test_without_a_gpu_every_gpu_step_is_skipped_in_one_line(tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    # PATH without nvidia-smi, even on a GPU machine: only the tools the script needs
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "date", "mkdir", "mktemp", "rm", "tee", "timeout", "grep", "sed", "head", "tr", "cat"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        (tools / tool).symlink_to(found)
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={"PATH": str(tools), "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
                               "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    skipped = [line for line in done.stdout.splitlines() if "skipped (no GPU)" in line]
    assert [line.split(":")[1].strip() for line in skipped] == ["install", "pytest", "calibrate", "placements"]
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "no GPU" in table and "Failed steps: none" in table
    raw = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert raw["gpu"] is None and {s["status"] for s in raw["steps"]} == {"skipped"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]


@pytest.mark.skipif(os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, "", "-1"), reason="a real GPU may be here")
def test_a_gpu_without_cupy_runs_every_step_and_records_the_failures(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$*" in\n  -L) echo "GPU 0: Stand-in GPU (UUID: GPU-0)";;\n'
                   '  *query*) echo "Stand-in GPU, 0.0, 1 MiB";;\n  *) echo "CUDA Version: 12.4";;\nesac\n')
    smi.chmod(0o755)
    done, table, raw = run_script(tmp_path, path_prefix=fake, GPU_CHECK_CASES="24x6", HOME=str(tmp_path),
                                  GPU_CHECK_TESTS="tests/test_backends.py",
                                  PYTHONPATH=str(SCRIPT.parents[1]))
    assert done.returncode == 0, done.stderr
    status = {s["step"]: s["status"] for s in raw["steps"]}
    assert status["install"] == "skipped"
    assert status["pytest"] == "ok"  # the GPU tests skip themselves where CuPy is missing
    assert all(test["outcome"].startswith("skipped") for test in raw["pytest"])
    assert status["calibrate"].startswith("failed (exit 1): zernike3d.maths.backends.BackendUnavailable: CuPy is not installed")
    assert status["placements-24x6"] == "ok"
    assert raw["placements"][0]["case"] == "24x6" and "skipped" in raw["placements"][0]
    assert "Stand-in GPU" in table and "Failed steps: calibrate" in table
    assert not (tmp_path / ".cache" / "zernike3d" / "gpu-rates.json").exists()


def test_measured_gpu_rates_are_what_the_planner_uses(tmp_path, monkeypatch):
    import zernike3d.scheduling.planner as planning

    monkeypatch.setattr(planning, "GPU_RATES_FILE", tmp_path / "gpu-rates.json")
    h200 = GPU_DATASHEETS[0]
    assert gpu_rates("NVIDIA H200") == h200  # nothing measured: the datasheet
    gpu = GpuDescription(index=0, name="NVIDIA H200", total_bytes=140 * 2**30, free_bytes=140 * 2**30)
    machine = MachineDescription(cpu_cores=16, ram_total_bytes=2**37, ram_available_bytes=2**37,
                                 disk_free_bytes=2**40, gpus=(gpu,), cupy_usable=True)
    datasheet = plan_for(128, 50, machine=machine).estimates[0]

    slow = dataclasses.replace(h200, name="NVIDIA H200", kernel_efficiency=h200.kernel_efficiency / 10, measured="test")
    store_gpu_rates(slow)
    other = dataclasses.replace(h200, name="NVIDIA H100 80GB HBM3", measured="test")
    store_gpu_rates(other)
    assert gpu_rates("NVIDIA H200") == slow
    assert gpu_rates("NVIDIA H100 80GB HBM3") == other  # both kept
    measured = plan_for(128, 50, machine=machine).estimates[0]
    assert measured.placement == datasheet.placement == "gpu-resident"
    sizes = Sizes.of(BallGeometry.for_box(128, 1.0), 50, 1, "decompose")
    parts = gpu_time_parts(sizes, measured.m_block, slow)
    assert measured.seconds == pytest.approx(parts["kernels"] / slow.kernel_efficiency + parts["matmul"]
                                             + parts["launches"] + parts["transfers"])
    assert measured.seconds > datasheet.seconds


def test_a_file_that_is_not_a_rates_file_is_not_replaced(tmp_path):
    from zernike3d.errors import InputError

    path = tmp_path / "gpu-rates.json"
    path.write_text("not json\n")
    with pytest.raises((InputError, OSError, ValueError)):
        store_gpu_rates(GPU_DATASHEETS[0], path)
    assert path.read_text() == "not json\n"
