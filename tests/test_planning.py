"""The planner: decisions for described machines, overrides, and memory vs a real run."""

import json
import os
import subprocess
import sys

import pytest

from zernike3d.cli import main as cli_main
from zernike3d.scheduling.hardware import GpuDescription, MachineDescription
from zernike3d.maths.geometry import BallGeometry
from zernike3d.scheduling.planner import (BASE_PROCESS_BYTES, CPU_RATES, HEADROOM, CpuRates, cpu_model,
                                load_rates, plan_for)

GIB = 2**30


def machine(ram_gib=64, cores=16, gpus=(), cupy=True, disk_gib=500):
    return MachineDescription(cpu_cores=cores, ram_total_bytes=ram_gib * GIB,
                              ram_available_bytes=int(ram_gib * GIB), disk_free_bytes=disk_gib * GIB,
                              gpus=tuple(gpus), cupy_usable=cupy and bool(gpus))


def gpu(name, free_gib, total_gib=None, index=0):
    return GpuDescription(index, name, int((total_gib or free_gib) * GIB), int(free_gib * GIB))


SMALL_GPU = gpu("Tesla P4", 8)  # 8 GB, not in the datasheet table: the fallback rates
BIG_GPU = gpu("NVIDIA H100 80GB HBM3", 79, 80)


def plan(box, order, volumes, described, **options):
    return plan_for(box, order, n_volumes=volumes, machine=described, rates=CPU_RATES, **options)


def by_placement(result):
    return {e.placement: e for e in result.estimates}


def test_no_gpu_plans_on_the_cpu():
    result = plan(128, 50, 5, machine(cupy=False))
    assert result.choice.placement.startswith("cpu-")
    estimates = by_placement(result)
    assert estimates["gpu-resident"].why_not == "no GPU" and not estimates["gpu-streamed"].fits
    assert result.resources()["gpu"] == 0


def test_gpu_without_cupy_is_not_planned():
    result = plan(128, 50, 5, machine(gpus=[BIG_GPU], cupy=False))
    assert result.choice.placement.startswith("cpu-")
    assert by_placement(result)["gpu-resident"].why_not == "CuPy cannot use the GPU"


def test_small_gpu_takes_a_case_that_fits_from_one_core():
    # (two cores now beat this GPU's fallback rates at (128, 50): the CPU kernels got faster)
    result = plan(128, 50, 5, machine(cores=1, gpus=[SMALL_GPU]))
    assert result.choice.placement == "gpu-resident"
    assert result.choice.gpu_bytes <= HEADROOM * SMALL_GPU.free_bytes
    assert result.resources()["gpu"] == 1


def test_small_gpu_is_too_small_for_a_large_case():
    result = plan(256, 100, 10, machine(gpus=[SMALL_GPU]))
    for placement in ("gpu-resident", "gpu-streamed"):
        assert "of GPU memory" in by_placement(result)[placement].why_not
    assert result.choice.placement.startswith("cpu-")


def test_big_gpu_runs_the_large_case_resident():
    # against 4 cores (16 cores are now predicted faster than the CuPy array backend here)
    result = plan(256, 100, 10, machine(cores=4, gpus=[BIG_GPU]))
    assert result.choice.placement == "gpu-resident"
    assert result.choice.seconds < by_placement(result)["cpu-ram"].seconds


def test_busy_gpu_streams_the_radial_table():
    busy = gpu("NVIDIA A100-SXM4-40GB", 2.0, 40)
    estimates = by_placement(plan(256, 150, 1, machine(cores=2, gpus=[busy])))
    assert "of GPU memory" in estimates["gpu-resident"].why_not
    assert estimates["gpu-streamed"].fits


def test_little_ram_streams_or_recomputes_the_radial_table():
    result = plan(384, 150, 1, machine(ram_gib=2))
    assert "host RAM" in by_placement(result)["cpu-ram"].why_not
    assert result.choice.placement in ("cpu-zarr", "cpu-onthefly")
    assert result.choice.host_bytes <= HEADROOM * 2 * GIB


def test_little_disk_rules_out_the_store():
    result = plan(384, 150, 1, machine(ram_gib=2, disk_gib=0.5))
    assert "free disk" in by_placement(result)["cpu-zarr"].why_not


@pytest.mark.parametrize("described", [machine(cupy=False), machine(ram_gib=4), machine(ram_gib=1.5),
                                       machine(gpus=[SMALL_GPU]), machine(gpus=[BIG_GPU], ram_gib=8)])
@pytest.mark.parametrize("case", [(64, 150, 1), (128, 50, 5), (256, 50, 2), (256, 100, 10)])
def test_every_fitting_estimate_is_within_the_budgets(described, case):
    for estimate in plan(*case, described).estimates:
        if estimate.fits:
            assert estimate.host_bytes <= HEADROOM * described.ram_available_bytes
            if estimate.placement.startswith("gpu"):
                assert estimate.gpu_bytes <= HEADROOM * described.gpus[0].free_bytes


def test_nothing_fits_says_why():
    result = plan(256, 100, 10, machine(ram_gib=0.5, cupy=False))
    assert result.choice is None
    with pytest.raises(ValueError, match="no placement fits: gpu-resident: no GPU"):
        result.resources()


def test_device_override():
    described = machine(cores=2, gpus=[SMALL_GPU])
    assert plan(128, 50, 5, described, device="cpu").choice.placement.startswith("cpu-")
    forced = plan(128, 50, 5, machine(cupy=False), device="gpu")
    assert forced.choice is None and "no GPU" in forced.why_nothing_fits()


def test_gpu_id_picks_that_gpu():
    described = machine(cores=2, gpus=[gpu("Tesla P4", 1, 8, index=0), gpu("Tesla P4", 8, 8, index=1)])
    assert plan(128, 50, 5, described).gpu_id == 1  # default: most free memory
    assert "of GPU memory" in by_placement(plan(128, 50, 5, described, gpu_id=0))["gpu-resident"].why_not
    assert by_placement(plan(128, 50, 5, described, gpu_id=7))["gpu-resident"].why_not == "no GPU with NVML index 7"


def test_max_memory_caps_the_host_budget():
    free = plan(128, 100, 4, machine(cupy=False))
    cap = free.choice.host_bytes * 3 // 4
    capped = plan(128, 100, 4, machine(cupy=False), max_memory_bytes=cap)
    assert capped.choice.host_bytes <= cap
    smaller = (capped.choice.m_block, capped.choice.shell_block) < (free.choice.m_block, free.choice.shell_block)
    assert smaller or capped.choice.placement != free.choice.placement


def test_threads_shorten_the_cpu_time():
    one = plan(128, 50, 1, machine(cupy=False), threads=1).choice
    many = plan(128, 50, 1, machine(cupy=False), threads=8).choice
    assert many.seconds < one.seconds / 3


def test_resources_for_the_workflow():
    resources = plan(64, 20, 2, machine(cupy=False), threads=4).resources()
    assert set(resources) == {"mem_mb", "runtime", "gpu", "threads"}
    assert resources["threads"] == 4 and resources["runtime"] >= 1
    assert resources["mem_mb"] * 2**20 >= BASE_PROCESS_BYTES


def test_rates_file_applies_only_to_its_cpu(tmp_path):
    path = tmp_path / "rates.json"
    mine = CpuRates(**{**CPU_RATES.__dict__, "ring": 1e-6, "cpu_model": cpu_model()})
    path.write_text(json.dumps(mine.__dict__))
    assert load_rates(path) == mine
    path.write_text(json.dumps({**mine.__dict__, "cpu_model": "another CPU"}))
    assert load_rates(path) is CPU_RATES
    path.write_text("{}")
    assert load_rates(path) is CPU_RATES


def test_plan_command(capsys):
    assert cli_main(["plan", "--box", "32", "--order", "10", "--volumes", "2", "--n-particles", "1000"]) == 0
    out = capsys.readouterr().out
    assert "cpu-ram" in out and "choice: " in out and "particle invariants" in out


#: measured peak RSS of a fresh process running one decompose, as the stages do. The peak
#: is VmHWM, which starts afresh at exec (ru_maxrss would inherit the parent's, pytest's)
MEASURE = r"""
import json, sys
import numpy as np, psutil
def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
from zernike3d.maths.basis import Basis
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.transform import decompose
box, order, volumes, max_workspace = json.loads(sys.argv[1])
decompose(np.ones((12, 12, 12), np.float32), BallGeometry.for_box(12, 1.0), 3)
baseline = psutil.Process().memory_info().rss
geometry = BallGeometry.for_box(box, 1.0)
maps = np.random.default_rng(0).standard_normal((volumes, box, box, box), dtype=np.float32)
basis = Basis.build(geometry, order, radial_table=True)
decompose(maps, geometry, order, basis=basis, max_workspace=max_workspace)
print(json.dumps([baseline, peak_rss()]))
"""


@pytest.mark.parametrize("cap_mib", [None, 300], ids=["one block", "several blocks"])
def test_predicted_peak_memory_matches_a_real_run(cap_mib):
    """Predicted peak of cpu-ram vs the measured peak RSS of a fresh process.

    Compared above the process baseline (imports + compiled kernels): within 20%, and the
    prediction as a whole (with its fixed baseline allowance) never below the measurement.
    """
    box, order, volumes = 96, 40, 3
    cap = None if cap_mib is None else cap_mib * 2**20
    estimate = by_placement(plan(box, order, volumes, machine(cupy=False), max_memory_bytes=cap))["cpu-ram"]
    several = estimate.m_block < order + 1 or estimate.shell_block < BallGeometry.for_box(box, 1.0).grid.n_shells
    assert estimate.fits and (cap is None or several)
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    argument = json.dumps([box, order, volumes, estimate.max_workspace])
    child = subprocess.run([sys.executable, "-c", MEASURE, argument], env=env, capture_output=True,
                           text=True, check=True)
    baseline, peak = json.loads(child.stdout.strip().splitlines()[-1])
    predicted = estimate.host_bytes - BASE_PROCESS_BYTES
    assert predicted == pytest.approx(peak - baseline, rel=0.20)
    assert estimate.host_bytes >= peak


def test_transform_options_follow_the_placement():
    estimates = by_placement(plan(64, 20, 1, machine(gpus=[BIG_GPU])))
    assert estimates["cpu-zarr"].transform_options()["radial"] == "stream"
    assert estimates["cpu-onthefly"].transform_options()["radial"] == "recompute"
    options = estimates["gpu-resident"].transform_options()
    assert options["backend"] == "cupy" and options["radial"] == "memory"
    assert options["max_workspace"] == estimates["gpu-resident"].max_workspace
