"""What this machine offers: GPUs (NVML, CuPy), CPU cores, free RAM, free disk.

:func:`probe` returns a :class:`MachineDescription`; the planner
(:mod:`zernike3d.scheduling.planner`) only ever reads that dataclass, so tests and cluster
configurations can describe machines that are not this one. Nothing here raises when a
GPU, the NVML library or CuPy is missing: each absence becomes one plain line in
``MachineDescription.notes``.

Memory limits respect the container/batch system: host RAM is the smaller of what the
kernel reports free and what the cgroup (SLURM, Docker) still allows; cores are those
this process may run on (``sched_getaffinity``), not all the node's.
"""

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import psutil

GIB = 1024**3


@dataclass(frozen=True)
class GpuDescription:
    """One GPU as NVML sees it; memory in bytes."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class MachineDescription:
    """Everything the planner needs to know about a machine; memory and disk in bytes.

    ``cupy_usable`` is True only when CuPy imports *and* allocated memory on a GPU, so a
    GPU placement is planned only when it can actually run. ``disk_free_bytes`` is the
    free space where the basis store goes (``cache_dir``).
    """

    cpu_cores: int
    ram_total_bytes: int
    ram_available_bytes: int
    disk_free_bytes: int
    cache_dir: str = "."
    gpus: tuple = ()
    cupy_usable: bool = False
    driver_version: str | None = None
    cuda_version: str | None = None
    cupy_version: str | None = None
    notes: tuple = field(default=())

    def gpu(self, gpu_id: int | None = None) -> GpuDescription | None:
        """The GPU to plan for: ``gpu_id`` (NVML index), else the one with most free memory."""
        if not self.gpus:
            return None
        if gpu_id is None:
            return max(self.gpus, key=lambda g: g.free_bytes)
        for g in self.gpus:
            if g.index == gpu_id:
                return g
        return None


def cuda_ordinal(nvml_index: int, visible: str | None = None) -> int:
    """The CUDA device number (what CuPy takes) of the GPU that NVML numbers ``nvml_index``.

    NVML counts every GPU of the node; CUDA counts only those in CUDA_VISIBLE_DEVICES (as
    a batch system sets it), renumbered from 0. Device UUIDs in that variable cannot be
    matched to NVML indices here: the first visible device (0) is used then.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if not visible:
        return nvml_index
    entries = [entry.strip() for entry in visible.split(",")]
    if all(entry.isdigit() for entry in entries):
        return entries.index(str(nvml_index)) if str(nvml_index) in entries else 0
    return 0


def probe(cache_dir: str | Path = ".") -> MachineDescription:
    """Describe this machine; never raises for a missing GPU, driver or CuPy."""
    notes: list[str] = []
    gpus, driver, cuda = _probe_nvml(notes)
    cupy_version, cupy_usable = _probe_cupy(notes, have_gpu=bool(gpus))
    ram = psutil.virtual_memory()
    cgroup_limit = _cgroup_memory_available()
    available = ram.available if cgroup_limit is None else min(ram.available, cgroup_limit)
    if cgroup_limit is not None and cgroup_limit < ram.available:
        notes.append(f"host RAM: limited by the cgroup to {cgroup_limit / GIB:.1f} GiB free")
    return MachineDescription(
        cpu_cores=len(os.sched_getaffinity(0)),
        ram_total_bytes=ram.total,
        ram_available_bytes=available,
        disk_free_bytes=_disk_free(cache_dir),
        cache_dir=str(cache_dir),
        gpus=tuple(gpus),
        cupy_usable=cupy_usable,
        driver_version=driver,
        cuda_version=cuda,
        cupy_version=cupy_version,
        notes=tuple(notes),
    )


def describe(machine: MachineDescription) -> list[str]:
    """Human-readable lines, one per fact (what ``zernike3d hardware`` prints)."""
    lines = [
        f"CPU: {machine.cpu_cores} cores usable",
        f"RAM: {machine.ram_available_bytes / GIB:.1f} GiB free of "
        f"{machine.ram_total_bytes / GIB:.1f} GiB",
        f"disk: {machine.disk_free_bytes / GIB:.1f} GiB free at {machine.cache_dir}",
    ]
    if machine.driver_version:
        lines.append(f"NVIDIA driver {machine.driver_version}, CUDA {machine.cuda_version}")
    for g in machine.gpus:
        lines.append(
            f"GPU {g.index}: {g.name}, {g.free_bytes / GIB:.1f} GiB free of "
            f"{g.total_bytes / GIB:.1f} GiB"
        )
    if machine.cupy_usable:
        lines.append(f"CuPy {machine.cupy_version}: imports and allocates on the GPU")
    return lines + list(machine.notes)


def _probe_nvml(notes):
    """(gpus, driver version, CUDA driver version) from NVML; empty when unavailable."""
    try:
        import pynvml
    except ImportError:
        notes.append("no NVML: nvidia-ml-py is not installed, GPUs not probed")
        return [], None, None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        notes.append(f"no GPU: NVML unavailable ({err})")
        return [], None, None
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda_int = pynvml.nvmlSystemGetCudaDriverVersion()
        cuda = f"{cuda_int // 1000}.{cuda_int % 1000 // 10}"
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = _text(pynvml.nvmlDeviceGetName(handle))
            gpus.append(GpuDescription(index, name, int(memory.total), int(memory.free)))
        if not gpus:
            notes.append("no GPU: NVML reports no devices")
        return gpus, driver, cuda
    except pynvml.NVMLError as err:
        notes.append(f"no GPU: NVML query failed ({err})")
        return [], None, None
    finally:
        pynvml.nvmlShutdown()


def _probe_cupy(notes, have_gpu):
    """(CuPy version or None, whether it allocated on a GPU)."""
    try:
        import cupy
    except Exception as err:  # ImportError, or CUDA libraries missing at import
        notes.append(f"no CuPy: {type(err).__name__}: {err}".splitlines()[0])
        return None, False
    if not have_gpu:
        notes.append(f"CuPy {cupy.__version__} imports, but there is no GPU to use")
        return cupy.__version__, False
    try:
        cupy.zeros(1024, dtype=cupy.float64).sum().item()
    except Exception as err:  # CUDARuntimeError, CompileException, driver too old ...
        notes.append(f"CuPy {cupy.__version__} cannot allocate on the GPU ({err})".splitlines()[0])
        return cupy.__version__, False
    return cupy.__version__, True


def _cgroup_memory_available():
    """Bytes the cgroup still allows this process (v2, then v1), or None if unlimited.

    Usage counts the page cache; its inactive part is reclaimable, so it is subtracted
    (as ``docker stats`` does).
    """
    for directory, limit_name, usage_name, inactive_name in (
        ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
         "total_inactive_file"),
    ):
        try:
            limit = (Path(directory) / limit_name).read_text().strip()
            usage = int((Path(directory) / usage_name).read_text())
            stat = (Path(directory) / "memory.stat").read_text().split()
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:
            return None
        fields = dict(zip(stat[::2], stat[1::2]))
        usage -= int(fields.get(inactive_name, 0))
        return max(int(limit) - usage, 0)
    return None


def _disk_free(directory):
    """Free bytes on the file system that holds ``directory`` (or its nearest parent)."""
    path = Path(directory).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)
