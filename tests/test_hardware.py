"""The hardware probe: this machine (no GPU), and imaginary NVML / CuPy through fakes."""

import sys
import types

import pytest

from zernike3d.scheduling import hardware
from zernike3d.cli import main as cli_main
from zernike3d.scheduling.hardware import GpuDescription, MachineDescription, describe, probe

GIB = 2**30


class FakeNvmlError(Exception):
    pass


def fake_pynvml(gpus=(), init_error=None):
    """A pynvml stand-in describing ``gpus`` ((name, total, free) in bytes)."""
    module = types.SimpleNamespace(NVMLError=FakeNvmlError, shutdowns=[])

    def init():
        if init_error:
            raise FakeNvmlError(init_error)

    module.nvmlInit = init
    module.nvmlShutdown = lambda: module.shutdowns.append(True)
    module.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    module.nvmlSystemGetCudaDriverVersion = lambda: 12040
    module.nvmlDeviceGetCount = lambda: len(gpus)
    module.nvmlDeviceGetHandleByIndex = lambda index: gpus[index]
    module.nvmlDeviceGetName = lambda handle: handle[0]
    module.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(total=handle[1], free=handle[2])
    return module


def fake_cupy(allocation_error=None):
    module = types.SimpleNamespace(__version__="13.3.0", float64="float64")

    def zeros(size, dtype):
        if allocation_error:
            raise RuntimeError(allocation_error)
        return types.SimpleNamespace(sum=lambda: types.SimpleNamespace(item=lambda: 0.0))

    module.zeros = zeros
    return module


def test_this_machine_is_described_in_one_line_per_fact(tmp_path):
    machine = probe(tmp_path / "not-yet-created")
    assert machine.cpu_cores >= 1 and 0 < machine.ram_available_bytes <= machine.ram_total_bytes
    assert machine.disk_free_bytes > 0
    lines = describe(machine)
    if machine.gpus:
        assert any(line.startswith("GPU 0:") for line in lines)
    else:  # this project's CI machine: no GPU, no CuPy
        assert any(line.startswith("no GPU") for line in lines) and not machine.cupy_usable
    assert any("CuPy" in line for line in lines)
    assert all("\n" not in line for line in lines)


def test_gpus_reported_by_nvml(monkeypatch):
    nvml = fake_pynvml([("NVIDIA H100 80GB HBM3", 80 * GIB, 79 * GIB), ("NVIDIA A100-SXM4-40GB", 40 * GIB, 2 * GIB)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    machine = probe()
    assert machine.gpus == (GpuDescription(0, "NVIDIA H100 80GB HBM3", 80 * GIB, 79 * GIB),
                            GpuDescription(1, "NVIDIA A100-SXM4-40GB", 40 * GIB, 2 * GIB))
    assert (machine.driver_version, machine.cuda_version) == ("550.54.15", "12.4")
    assert machine.cupy_usable and machine.cupy_version == "13.3.0"
    assert nvml.shutdowns == [True]
    assert machine.gpu().index == 0 and machine.gpu(1).index == 1 and machine.gpu(5) is None
    assert "GPU 1: NVIDIA A100-SXM4-40GB, 2.0 GiB free of 40.0 GiB" in describe(machine)


def test_cupy_that_cannot_allocate_is_not_usable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([("Tesla P4", 8 * GIB, 8 * GIB)]))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy("cudaErrorInsufficientDriver: driver too old"))
    machine = probe()
    assert len(machine.gpus) == 1 and not machine.cupy_usable
    assert any("cannot allocate" in note and "driver too old" in note for note in machine.notes)


@pytest.mark.parametrize("error", ["Driver Not Loaded", "NVML Shared Library Not Found"])
def test_nvml_failure_is_one_line(monkeypatch, error):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=error))
    machine = probe()
    assert machine.gpus == ()
    assert f"no GPU: NVML unavailable ({error})" in machine.notes


def test_cgroup_limit_caps_free_ram(monkeypatch):
    monkeypatch.setattr(hardware, "_cgroup_memory_available", lambda: 3 * GIB)
    machine = probe()
    assert machine.ram_available_bytes <= 3 * GIB


def test_cgroup_files_are_read(tmp_path, monkeypatch):
    (tmp_path / "memory.max").write_text(f"{8 * GIB}\n")
    (tmp_path / "memory.current").write_text(f"{3 * GIB}\n")
    (tmp_path / "memory.stat").write_text(f"anon 123\ninactive_file {1 * GIB}\n")
    real_path = hardware.Path
    monkeypatch.setattr(hardware, "Path", lambda p: real_path(str(p).replace("/sys/fs/cgroup", str(tmp_path))))
    assert hardware._cgroup_memory_available() == 6 * GIB
    (tmp_path / "memory.max").write_text("max\n")
    assert hardware._cgroup_memory_available() is None


def test_machine_description_is_plain_data():
    machine = MachineDescription(cpu_cores=4, ram_total_bytes=8 * GIB, ram_available_bytes=6 * GIB,
                                 disk_free_bytes=GIB)
    assert machine.gpu() is None and machine.notes == ()


def test_hardware_command(capsys):
    assert cli_main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "CPU:" in out and "RAM:" in out and "GPU" in out
    assert cli_main(["hardware", "--json"]) == 0
    assert '"cpu_cores"' in capsys.readouterr().out


def test_cuda_ordinal_follows_cuda_visible_devices():
    from zernike3d.scheduling.hardware import cuda_ordinal

    assert cuda_ordinal(2, visible="") == 2  # every GPU visible: the numbers agree
    assert cuda_ordinal(3, visible="3") == 0  # SLURM granted GPU 3: CUDA calls it 0
    assert cuda_ordinal(5, visible="1,5,7") == 1
    assert cuda_ordinal(2, visible="GPU-8a1c,GPU-77f0") == 0  # UUIDs: the first visible one
