"""Where to run a transform: predicted memory and time of each placement, and the choice.

Placements (the original tool's compute modes, named by where the tables live):

* ``gpu-resident``  the CuPy backend (:mod:`zernike3d.maths.backends`) with maps, grid
                    tables, radial table and work arrays on the GPU;
* ``gpu-streamed``  the same with the radial table in host RAM, its rows sent to the GPU
                    for every m block (``radial_resident=False``);
* ``cpu-ram``       everything in host RAM (``Basis`` with its radial table);
* ``cpu-zarr``      radial rows read from the zarr basis store one l at a time
                    (:class:`zernike3d.io.basis_store.StreamedBasis`);
* ``cpu-onthefly``  no radial table: R_nl recomputed for every m block.

The grid tables are always in memory (the kernels index them at random; they are small).
The CPU placements run the ``auto`` CPU backend (numba, or numpy for small work).

Memory comes from the real tables: the grid of the geometry is built (cheap) and the
per-block work arrays are :func:`zernike3d.maths.transform.workspace_bytes` of the block
of m values that fits the budget, plus the transients each block allocates (the GPU
backend's dense (fold, ring) layout is modelled from its own array shapes). Time is op
counts of each step of the transform times per-op costs: CPU costs are measured on a
real machine (:data:`CPU_RATES`, or this machine's after ``zernike3d plan --calibrate``);
GPU costs are datasheet leads (:data:`GPU_DATASHEETS`) until
:func:`zernike3d.scheduling.calibration.calibrate_gpu` (run by ``benchmarks/gpu_check.sh``) has
measured them on the GPU model in question and stored them in :data:`GPU_RATES_FILE`.
The choice is the fastest placement whose peak fits in ``HEADROOM`` of the free
memory (and, for cpu-zarr, of the free disk); predicted times within ``TIME_TOLERANCE``
are ties, won by the placement (or block of m values) that needs less memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.indexing import coefficient_count, nl_table
from zernike3d.maths.transform import block_layout, fold_group_size, legendre_table_bytes, workspace_bytes

if TYPE_CHECKING:
    from zernike3d.maths.geometry import GridTables
    from zernike3d.scheduling.hardware import MachineDescription

PLACEMENTS = ("gpu-resident", "gpu-streamed", "cpu-ram", "cpu-zarr", "cpu-onthefly")
#: plan to use at most this fraction of the free RAM, GPU memory and disk
HEADROOM = 0.8
#: RSS of a process that imported zernike3d and compiled its kernels (measured 172 MiB,
#: Python 3.11, numpy 2.4, numba 0.68, zarr 3.1), rounded up
BASE_PROCESS_BYTES = 200 * 2**20
#: reading the radial table from the zarr store (cpu-zarr): zarr and its codecs, their
#: buffers and the chunk being decompressed; the measured peaks of
#: benchmarks/bench_placements.py were up to 46 MiB above the tables alone
ZARR_READ_BYTES = 64 * 2**20
#: CUDA context + CuPy pools, host and GPU side (typical, not measured)
GPU_CONTEXT_BYTES = 512 * 2**20
#: speed-up per extra thread (assumed: not measurable on the 2 shared cores it was
#: written on); t(threads) = t(1) / (1 + (threads - 1) * PARALLEL_EFFICIENCY)
PARALLEL_EFFICIENCY = 0.8
#: predicted times within this fraction of the fastest count as ties, broken by memory:
#: for the block of m values of a placement, and between placements
TIME_TOLERANCE = 0.05
#: where `zernike3d plan --calibrate` stores this machine's rates
RATES_FILE = Path.home() / ".cache" / "zernike3d" / "cpu-rates.json"
#: where :func:`zernike3d.scheduling.calibration.calibrate_gpu` stores measured GPU rates, by GPU name
GPU_RATES_FILE = RATES_FILE.with_name("gpu-rates.json")


@dataclasses.dataclass(frozen=True)
class CpuRates:
    """Seconds per operation on one CPU thread (and bytes/s of reading the zarr store).

    ring: one (pair, xy orbit of its ring, volume, m) of the ring sums (without orbits, an
    off-lattice centre: one (pair, xy point of its ring, volume, m)); scan: one (fold, xy
    orbit) visit folding the maps into orbit channels, once (or once per m block when the
    channels are held in fold groups; without orbits: one (fold, xy point) per m block);
    sweep: one pass of an inner loop of the polar step over the m of a block, for one
    (pair, l) and m block: the Legendre recurrence and one per volume and real/imaginary
    part (loop overheads, which dominate when blocks of m are short); polar: one (pair, l, m, volume) of the polar step; legendre: one (pair, l, m)
    Legendre value; radial: one (shell, coefficient, volume) of the radial BLAS products;
    step: Python overhead per (m block, l); radial_eval: one R_nl value recomputed;
    zarr_read_seconds: fixed cost of reading one chunk from the store; zarr_bytes_per_s:
    decompressed radial-table bytes read from it (page cache warm). ``cpu_model`` names
    the machine they were measured on.
    """

    ring: float
    scan: float
    sweep: float
    polar: float
    legendre: float
    radial: float
    step: float
    radial_eval: float
    zarr_read_seconds: float
    zarr_bytes_per_s: float
    cpu_model: str = ""


#: Measured with `zernike3d plan --calibrate` (one thread: NUMBA/OMP/OPENBLAS threads = 1;
#: each case a fresh process, fastest of 3) on 2026-11-30 on an "AMD EPYC" VM with 2
#: cores, after the transforms fused the ring step into the polar step: medians of four
#: calibrations, whose single rates differed by up to 2x (the fits reproduced their runs
#: within 39-68%; the worst case is a deliberately tiny budget, blocks of 3-4 m with the
#: orbit channels in two fold groups, under-predicted about 2x). ``scan`` was not
#: separable from ``ring`` in the fits (fitted 0); it is set from the fold step timed
#: alone (``benchmarks/bench_transform.py --steps``: 0.043 s for 129 folds x 8385 orbits
#: at 256^3). The zarr rates were measured on 2026-11-30 (idle) for store format 2
#: (uncompressed, CRC32C-checked chunks): 0.9-1.1 ms a chunk, and 0.54-0.84 GB/s for the
#: radial tables that `decompose --basis` reads (benchmarks/bench_basis_cache.py at
#: (128, 50), (256, 50), (256, 150)). Recalibrate on the machine that runs the work:
#: `zernike3d plan --calibrate` stores its own rates, which load_rates() prefers.
CPU_RATES = CpuRates(
    ring=2.0e-8,
    scan=4.0e-8,
    sweep=7.0e-10,
    polar=3.0e-10,
    legendre=8.0e-10,
    radial=3.5e-10,
    step=2.3e-5,
    radial_eval=6.0e-9,
    zarr_read_seconds=1.0e-3,
    zarr_bytes_per_s=0.7e9,
    cpu_model="AMD EPYC",
)


#: fraction of the bandwidth/FLOP rate that CuPy's elementwise and sparse kernels reach
#: (assumed; measured by calibrate_gpu), and that cuBLAS reaches on the radial products
GPU_KERNEL_EFFICIENCY = 0.3
GPU_MATMUL_EFFICIENCY = 0.6
#: seconds per CuPy kernel launch (typical Python + launch overhead; measured by calibrate_gpu)
GPU_LAUNCH_SECONDS = 1e-5


@dataclasses.dataclass(frozen=True)
class GpuRates:
    """Figures of one GPU model: datasheet leads, or measured by
    :func:`zernike3d.scheduling.calibration.calibrate_gpu` (then ``measured`` says when and how).

    fp64_flops: FP64 vector FLOP/s; fp64_matmul_flops: FP64 (tensor core where present)
    matrix FLOP/s; memory_bytes_per_s: device memory bandwidth; pcie_bytes_per_s: host
    transfer bandwidth as usually achieved (pinned memory); kernel_efficiency: fraction of
    the bandwidth/FLOP rates the CuPy backend's elementwise and sparse kernels reach;
    launch_seconds: wall time per kernel launch from Python.
    """

    name: str
    fp64_flops: float
    fp64_matmul_flops: float
    memory_bytes_per_s: float
    pcie_bytes_per_s: float
    kernel_efficiency: float = GPU_KERNEL_EFFICIENCY
    launch_seconds: float = GPU_LAUNCH_SECONDS
    measured: str = ""


#: by NVML name fragment; the first match wins. Consumer and workstation cards run FP64
#: at 1/32-1/64 of FP32, which is why this float64 transform is slow on them.
GPU_DATASHEETS = (
    GpuRates("H200", 34e12, 67e12, 4.8e12, 50e9),
    GpuRates("H100", 34e12, 67e12, 3.35e12, 50e9),
    GpuRates("A100", 9.7e12, 19.5e12, 1.9e12, 25e9),
    GpuRates("V100", 7.8e12, 7.8e12, 0.9e12, 12e9),
    GpuRates("L40", 1.4e12, 1.4e12, 0.86e12, 25e9),
    GpuRates("A6000", 0.6e12, 0.6e12, 0.77e12, 25e9),
)
#: any other GPU: a workstation-class card
GPU_FALLBACK = GpuRates("unknown GPU", 0.5e12, 0.5e12, 0.5e12, 12e9)
#: kernel launches of the CuPy backend per (l, m) of the polar step and per (m block, l)
#: of the radial step (counted in zernike3d/maths/backends.py and transform.py)
GPU_LAUNCHES_PER_LM = 8
GPU_LAUNCHES_PER_STEP = 6


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One placement's prediction: peak bytes, seconds, and whether it fits (why not)."""

    placement: str
    host_bytes: int
    gpu_bytes: int
    seconds: float
    m_block: int
    max_workspace: int
    fits: bool
    why_not: str = ""
    shell_block: int = 0  # shells per block (every shell unless the numba backend takes blocks of shells)

    def transform_options(self) -> dict[str, Any]:
        """How to run it: ``backend`` for decompose/reconstruct, ``radial`` for
        :func:`zernike3d.io.basis_store.load_basis`, and ``max_workspace`` (bytes)."""
        radial = {"cpu-zarr": "stream", "cpu-onthefly": "recompute"}.get(self.placement, "memory")
        backend = "cupy" if self.placement.startswith("gpu") else "auto"
        return {"backend": backend, "radial": radial, "max_workspace": self.max_workspace}


@dataclasses.dataclass(frozen=True)
class Plan:
    """All estimates and the chosen one (None if nothing fits)."""

    stage: str
    geometry: BallGeometry
    order: int
    n_volumes: int
    threads: int
    estimates: tuple
    choice: Estimate | None
    gpu_id: int | None = None

    def resources(self) -> dict[str, int]:
        """Batch-system resources of the choice: mem_mb (10^6 bytes, as Snakemake counts),
        runtime (minutes), gpu (0 or 1), threads."""
        if self.choice is None:
            raise ValueError(f"no placement fits: {self.why_nothing_fits()}")
        return {
            "mem_mb": math.ceil(self.choice.host_bytes / 1e6),
            "runtime": max(1, math.ceil(self.choice.seconds / 60)),
            "gpu": int(self.choice.placement.startswith("gpu")),
            "threads": self.threads,
        }

    def why_nothing_fits(self) -> str:
        return "; ".join(f"{e.placement}: {e.why_not}" for e in self.estimates)

    def table(self) -> str:
        """The estimates as text, one line per placement, then the choice."""
        lines = [f"{'placement':<14}{'host MiB':>10}{'GPU MiB':>10}{'seconds':>10}{'block m x shells':>18}  fits?"]
        for e in self.estimates:
            fits = "yes" if e.fits else f"no: {e.why_not}"
            block = f"{e.m_block} x {e.shell_block}" if e.m_block else "-"
            lines.append(f"{e.placement:<14}{e.host_bytes / 2**20:>10.0f}{e.gpu_bytes / 2**20:>10.0f}"
                         f"{e.seconds:>10.3g}{block:>18}  {fits}")
        if self.choice is None:
            lines.append("choice: none fits")
        else:
            lines.append(f"choice: {self.choice.placement}, the fastest that fits in {HEADROOM:.0%} of the free "
                         f"memory (times within {TIME_TOLERANCE:.0%} count as ties, won by less memory); "
                         f"transform max_workspace={self.choice.max_workspace}")
        return "\n".join(lines)


def plan_for(box: int, order: int, *, n_volumes: int = 1, voxel_size: float = 1.0, radius: float | str | None = None,
             center: Sequence[float] | None = None, stage: str = "decompose",
             machine: MachineDescription | None = None, device: str | None = None, gpu_id: int | None = None,
             threads: int | None = None, max_memory_bytes: int | None = None, rates: CpuRates | None = None) -> Plan:
    """Predict every placement of ``stage`` ('decompose' or 'reconstruct') and choose one.

    box: voxels per edge; voxel_size: Å; radius, center: as
    :meth:`zernike3d.maths.geometry.BallGeometry.for_box`; n_volumes: maps transformed
    together (1 + K for a 3DVA job). machine: a
    :class:`zernike3d.scheduling.hardware.MachineDescription` (default: probe this one). device:
    'cpu' or 'gpu' to force; gpu_id: the NVML index to plan for (default: most free
    memory); threads: CPU threads (default: all usable cores); max_memory_bytes: hard
    cap on the host memory, used as is (e.g. the batch job's limit). rates:
    :class:`CpuRates` (default: :func:`load_rates`). Seconds are predictions without
    any safety margin.
    """
    if stage not in ("decompose", "reconstruct"):
        raise ValueError(f"stage must be 'decompose' or 'reconstruct', got {stage!r}")
    if device not in (None, "cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if machine is None:
        from zernike3d.scheduling.hardware import probe

        machine = probe()
    geometry = BallGeometry.for_box(box, voxel_size, radius=radius, center=center)
    sizes = Sizes.of(geometry, order, n_volumes, stage)
    threads = threads or machine.cpu_cores
    host_budget = HEADROOM * machine.ram_available_bytes
    if max_memory_bytes is not None:
        host_budget = min(host_budget, max_memory_bytes)
    gpu = machine.gpu(gpu_id)
    rates = rates or load_rates()
    estimates = []
    for placement in PLACEMENTS:
        if placement.startswith("gpu"):
            estimate = _gpu_estimate(placement, sizes, machine, gpu, gpu_id, host_budget)
            if device == "cpu" and estimate.fits:
                estimate = dataclasses.replace(estimate, fits=False, why_not="--device cpu")
        else:
            estimate = _cpu_estimate(placement, sizes, machine, threads, host_budget, rates)
            if device == "gpu" and estimate.fits:
                estimate = dataclasses.replace(estimate, fits=False, why_not="--device gpu")
        estimates.append(estimate)
    fitting = [(e.seconds, e.host_bytes, e) for e in estimates if e.fits]
    choice = _fast_and_small(fitting)[2] if fitting else None
    return Plan(stage, geometry, order, n_volumes, threads, tuple(estimates), choice,
                None if gpu is None else gpu.index)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Table sizes and op counts of one transform (see :mod:`zernike3d.maths.transform`)."""

    grid: GridTables
    stage: str
    order: int
    n_volumes: int
    box: int
    n_visits: int
    rows_of_l: tuple

    @classmethod
    def of(cls, geometry: BallGeometry, order: int, n_volumes: int, stage: str) -> Sizes:
        grid = geometry.grid
        # ring-step visits per pair: the xy orbits of its ring, or without orbits its points
        members = grid.orbit_ring if grid.orbit_ring.size else grid.point_ring
        ring_size = np.bincount(members, minlength=grid.pair_of.shape[1])
        nl = nl_table(order)
        return cls(
            grid=grid,
            stage=stage,
            order=order,
            n_volumes=n_volumes,
            box=geometry.box,
            n_visits=int(ring_size[grid.pair_ring].sum()),
            rows_of_l=tuple(int((nl[:, 1] == l).sum()) for l in range(order + 1)),
        )

    @property
    def map_voxels(self) -> int:
        return self.n_volumes * self.box**3

    @property
    def moment_bytes(self) -> int:
        return self.n_volumes * coefficient_count(self.order) * 16

    @property
    def data_bytes(self) -> int:
        """Maps and moments in host RAM: decompose reads float32 maps and returns the
        moments scaled by the voxel volume (a second array beside the sums: 161 MiB each at
        order 500); reconstruct makes float64 maps and converts one at a time to float32
        for its MRC file."""
        if self.stage == "decompose":
            return self.map_voxels * 4 + 2 * self.moment_bytes
        return self.map_voxels * 8 + self.box**3 * 4 + self.moment_bytes

    @property
    def n_lm(self) -> int:
        return (self.order + 1) * (self.order + 2) // 2

    @property
    def radial_bytes(self) -> int:
        return sum(self.rows_of_l) * self.grid.n_shells * 8

    @property
    def slab_bytes(self) -> int:
        """One l of the stored radial table, (order // 2 + 1) x shells float64."""
        return (self.order // 2 + 1) * self.grid.n_shells * 8

    @property
    def point_columns_bytes(self) -> int:
        """The GPU backend's folded maps: (xy points, V x 2 x folds) float64."""
        return self.grid.n_points * self.n_volumes * 2 * self.grid.fold_dz.size * 8

    def lm_count(self, m_block: int) -> int:
        """(l, m) columns of the first (largest) block of ``m_block`` m values."""
        return sum(self.order + 1 - m for m in range(min(m_block, self.order + 1)))

    def blocks(self, m_block: int) -> list[tuple[int, int]]:
        return [(m0, min(m0 + m_block, self.order + 1)) for m0 in range(0, self.order + 1, m_block)]

    def block_sizes(self) -> Iterator[int]:
        """Candidate m-block sizes, largest first (the sequence the transform tries)."""
        size = self.order + 1
        while True:
            yield size
            if size == 1:
                return
            size = max(1, size * 3 // 4)

    def cpu_block_sizes(self) -> Iterator[tuple[int, int]]:
        """(m_block, peak bytes of the blocks) of the numba backend, largest first, where
        m_block sets the budget (``workspace_bytes``) within which the backend lays out its
        blocks (:meth:`cpu_layout`).

        The worst block of: its ring sums and exp(-i m phi), or with xy orbits the orbit
        channels and tables (the transform's work arrays), its shell sums, and transients:
        building exp(-i m phi) (24 B per point and m) and the radial step's copy of one
        (shell, m, volume) slice and its product, or with orbits building the orbit tables
        (80 B per orbit and m) and one radial product. A block's shell sums are freed
        before the next block's are made.
        """
        g, v = self.grid, self.n_volumes
        for m_block in self.block_sizes():
            m_layout, shell_block, _ = self.cpu_layout(m_block)
            if shell_block < g.n_shells:  # every m, in blocks of shells
                m_count = self.order + 1
                work = (workspace_bytes(g, self.order, v, m_count) - g.n_shells * self.n_lm * v * 16
                        + shell_block * self.n_lm * v * 16 + 80 * g.orbit_ring.size * m_count
                        + shell_block * m_count * v * 16)
                yield m_block, work + self.legendre_table_bytes(m_block)
                continue
            fixed = workspace_bytes(g, self.order, v, m_block) - g.n_shells * self.lm_count(m_block) * v * 16
            if g.orbit_ring.size:  # the orbit tables and their temporaries; one radial product
                fixed += 80 * g.orbit_ring.size * m_block + g.n_shells * m_block * v * 16
            else:
                fixed += 24 * g.n_points * m_block + 2 * g.n_shells * m_block * v * 16
            shells = [g.n_shells * sum(self.order + 1 - m for m in range(m0, m1)) * v * 16
                      for m0, m1 in self.blocks(m_block)]
            yield m_block, fixed + max(shells) + self.legendre_table_bytes(m_block)

    def legendre_table_bytes(self, m_block: int) -> int:
        """decompose's table of Pbar_lm at the pairs (one map at low order) within the
        budget of ``m_block`` (:func:`zernike3d.maths.transform.legendre_table_bytes`)."""
        if self.stage != "decompose":
            return 0
        g, v = self.grid, self.n_volumes
        return legendre_table_bytes(g, self.order, v, workspace_bytes(g, self.order, v, m_block))

    def gpu_block_sizes(self) -> Iterator[tuple[int, int]]:
        """(m_block, peak GPU bytes beyond the fixed arrays) of the CuPy backend.

        Per block: one (fold, ring) cell array per m, the shell sums, two point-column
        temporaries of the ring step and a few cell-sized ones of the polar step; at the
        start, folding the maps (float64 copy, padded copy, +dz/-dz gathers, folded).
        """
        g, v = self.grid, self.n_volumes
        cells = g.pair_of.size
        load = 2 * self.map_voxels * 8 + 3 * self.point_columns_bytes
        for m_block in self.block_sizes():
            rings = m_block * cells * v * 2 * 16
            shells = g.n_shells * self.lm_count(m_block) * v * 16
            temporaries = 2 * self.point_columns_bytes + 3 * cells * v * 16 + 6 * cells * 8
            yield m_block, max(load, rings + shells + temporaries)

    def cpu_layout(self, m_block: int) -> tuple[int, int, int]:
        """(m values, shells, folds of channels) of a block of the numba backend when it
        runs within the budget of ``m_block`` (:func:`zernike3d.maths.transform.block_layout`:
        it may take every m in blocks of shells instead)."""
        g = self.grid
        return block_layout(g, self.order, self.n_volumes, workspace_bytes(g, self.order, self.n_volumes, m_block))

    def op_counts(self, m_block: int, shell_blocks: bool = True) -> dict[str, float]:
        """Operations of each step of the numba backend (see :class:`CpuRates`) within the
        budget of ``m_block``; ``shell_blocks`` False: blocks of m only, as the CuPy backend."""
        g, v = self.grid, self.n_volumes
        if shell_blocks:
            m_block, shell_block, group = self.cpu_layout(m_block)
        else:
            shell_block, group = g.n_shells, fold_group_size(g, v, workspace_bytes(g, self.order, v, m_block))
        blocks = self.blocks(m_block)
        if g.orbit_ring.size:  # maps folded into orbit channels once, or once per block in fold groups
            scan = (1 if group >= g.fold_dz.size else len(blocks)) * g.fold_dz.size * g.orbit_ring.size
        else:
            scan = len(blocks) * g.fold_dz.size * g.n_points
        steps = sum(self.order + 1 - m0 for m0, _ in blocks)
        return {
            "ring": self.n_visits * v * (self.order + 1),
            "scan": scan,
            "sweep": g.n_pairs * (1 + 2 * v) * steps,
            "polar": g.n_pairs * self.n_lm * v,
            "legendre": g.n_pairs * self.n_lm,
            "radial": g.n_shells * coefficient_count(self.order) * v,
            "step": -(-g.n_shells // shell_block) * steps,
        }

    def gpu_op_counts(self, m_block: int) -> dict[str, float]:
        """Device bytes moved, FLOPs and kernel launches of the CuPy backend."""
        g, v = self.grid, self.n_volumes
        cells, m_count = g.pair_of.size, self.order + 1
        steps = self.op_counts(m_block, shell_blocks=False)["step"]
        return {
            "bytes": m_count * 6 * self.point_columns_bytes + self.n_lm * cells * (5 * 8 + 4 * v * 16),
            "flops": m_count * 8 * self.point_columns_bytes // 8 + self.n_lm * cells * (6 + 8 * v),
            "matmul_flops": 4 * g.n_shells * coefficient_count(self.order) * v,
            "launches": self.n_lm * GPU_LAUNCHES_PER_LM + steps * GPU_LAUNCHES_PER_STEP + m_count * 8,
        }

    def radial_rows_read(self, m_block: int) -> int:
        """R_nl rows (of every shell) that the radial steps of all blocks of the numba
        backend use within the budget of ``m_block`` (each l >= m0 per block of m)."""
        return sum(sum(self.rows_of_l[m0:]) for m0, _ in self.blocks(self.cpu_layout(m_block)[0]))


def _fast_and_small(options):
    """The (seconds, bytes, ...) option using least memory among those within
    ``TIME_TOLERANCE`` of the fastest: near-ties in time are not worth memory."""
    fastest = min(option[0] for option in options)
    return min((o for o in options if o[0] <= fastest * (1 + TIME_TOLERANCE)), key=lambda o: o[1])


def _choose_block(candidates, fixed_bytes, budget, seconds_for):
    """(m_block, block bytes, seconds) of the block that fits ``budget`` beside
    ``fixed_bytes`` (:func:`_fast_and_small`); m_block 0 (with the smallest block's
    bytes and time) when none fits."""
    candidates = list(candidates)
    fitting = [(m_block, work, seconds_for(m_block)) for m_block, work in candidates
               if fixed_bytes + work <= budget]
    if not fitting:
        m_block, work = candidates[-1]
        return 0, work, seconds_for(m_block)
    seconds, work, m_block = _fast_and_small([(t, w, b) for b, w, t in fitting])
    return m_block, work, seconds


def _cpu_estimate(placement, sizes, machine, threads, budget, rates):
    g = sizes.grid
    # cpu-ram: the table and one l's rows beside it (measured on 2026-11-30, when
    # Basis.radial still copied them out: 512^3 at order 100 peaked 50 MiB above the model
    # without this term; kept as headroom now that it returns a view)
    radial_resident = {"cpu-ram": sizes.radial_bytes + sizes.slab_bytes, "cpu-zarr": 2 * sizes.slab_bytes + ZARR_READ_BYTES,
                       "cpu-onthefly": 3 * sizes.slab_bytes}[placement]
    fixed = BASE_PROCESS_BYTES + sizes.data_bytes + g.nbytes + radial_resident
    parallel = 1 + (max(threads, 1) - 1) * PARALLEL_EFFICIENCY

    def seconds_for(m_block: int) -> float:
        counts = sizes.op_counts(m_block)
        compute = sum(getattr(rates, name) * counts[name] for name in counts if name != "step")
        seconds = compute / parallel + rates.step * counts["step"]
        if placement == "cpu-ram":
            return seconds + rates.radial_eval * sum(sizes.rows_of_l) * g.n_shells
        if placement == "cpu-zarr":
            reads = counts["step"] + sizes.order + 1 + len(g.arrays())  # + the check on open
            return seconds + reads * rates.zarr_read_seconds + (
                (counts["step"] + sizes.order + 1) * sizes.slab_bytes / rates.zarr_bytes_per_s)
        return seconds + rates.radial_eval * sizes.radial_rows_read(m_block) * g.n_shells

    m_block, work, seconds = _choose_block(sizes.cpu_block_sizes(), fixed, budget, seconds_for)
    why_not = ""
    if m_block == 0:
        why_not = f"needs {(fixed + work) / 2**20:.0f} MiB of host RAM, budget {budget / 2**20:.0f} MiB"
    elif placement == "cpu-zarr" and g.nbytes + sizes.radial_bytes > HEADROOM * machine.disk_free_bytes:
        why_not = f"store of {sizes.radial_bytes / 2**20:.0f} MiB exceeds the free disk"
    layout = sizes.cpu_layout(max(m_block, 1))
    return Estimate(placement, fixed + work, 0, seconds, m_block and layout[0],
                    workspace_bytes(g, sizes.order, sizes.n_volumes, max(m_block, 1)), not why_not, why_not, layout[1])


def _gpu_estimate(placement, sizes, machine, gpu, gpu_id, host_budget):
    """Prediction for the CuPy backend (:class:`zernike3d.maths.backends.ArrayBackend`) from
    the GPU's rates (:func:`gpu_rates`: measured by calibrate_gpu, else datasheet leads)."""
    g, v = sizes.grid, sizes.n_volumes
    rates = gpu_rates(gpu.name) if gpu is not None else GPU_FALLBACK
    resident = placement == "gpu-resident"
    radial_gpu = sizes.radial_bytes if resident else 2 * sizes.slab_bytes
    tables = g.nbytes + g.pair_of.size * 16 + (g.n_points + g.n_pairs) * 24  # + cos/sin, CSR
    fixed_gpu = GPU_CONTEXT_BYTES + sizes.moment_bytes + tables + radial_gpu + sizes.point_columns_bytes
    if sizes.stage == "reconstruct":
        fixed_gpu += sizes.map_voxels * 8
    host = BASE_PROCESS_BYTES + GPU_CONTEXT_BYTES + sizes.data_bytes + g.nbytes
    host += 0 if resident else sizes.radial_bytes
    gpu_budget = HEADROOM * gpu.free_bytes if gpu is not None else 0

    def seconds_for(m_block: int) -> float:
        parts = gpu_time_parts(sizes, m_block, rates, resident)
        return parts["kernels"] / rates.kernel_efficiency + parts["matmul"] + parts["launches"] + parts["transfers"]

    m_block, work, seconds = _choose_block(sizes.gpu_block_sizes(), fixed_gpu, gpu_budget, seconds_for)
    why_not = ""
    if gpu is None:
        why_not = "no GPU" if gpu_id is None else f"no GPU with NVML index {gpu_id}"
    elif not machine.cupy_usable:
        why_not = "CuPy cannot use the GPU"
    elif m_block == 0:
        why_not = f"needs {(fixed_gpu + work) / 2**20:.0f} MiB of GPU memory, budget {gpu_budget / 2**20:.0f} MiB"
    elif host > host_budget:
        why_not = f"needs {host / 2**20:.0f} MiB of host RAM, budget {host_budget / 2**20:.0f} MiB"
    return Estimate(placement, host, fixed_gpu + work, seconds, m_block,
                    workspace_bytes(g, sizes.order, v, max(m_block, 1)), not why_not, why_not, g.n_shells)


def gpu_time_parts(sizes: Sizes, m_block: int, rates: GpuRates, resident: bool = True) -> dict[str, float]:
    """Predicted seconds of the CuPy backend by part: ``kernels`` (elementwise and sparse
    kernels at the full bandwidth/FLOP rates: divide by ``rates.kernel_efficiency``),
    ``matmul`` (the radial products), ``launches`` and ``transfers`` (host to GPU: maps,
    radial table whole or the rows each block reads)."""
    counts = sizes.gpu_op_counts(m_block)
    sent = sizes.data_bytes + (sizes.radial_bytes if resident else
                               sizes.radial_rows_read(m_block) * sizes.grid.n_shells * 8)
    return {
        "kernels": counts["bytes"] / rates.memory_bytes_per_s + counts["flops"] / rates.fp64_flops,
        "matmul": counts["matmul_flops"] / (rates.fp64_matmul_flops * GPU_MATMUL_EFFICIENCY),
        "launches": counts["launches"] * rates.launch_seconds,
        "transfers": sent / rates.pcie_bytes_per_s,
    }


def gpu_rates(name: str, path: str | Path | None = None) -> GpuRates:
    """Rates measured for the GPU model ``name`` (stored in ``path``, default
    :data:`GPU_RATES_FILE`, by :func:`zernike3d.scheduling.calibration.calibrate_gpu`), else the
    datasheet entry whose name fragment occurs in ``name``, else GPU_FALLBACK."""
    try:
        measured = json.loads(Path(GPU_RATES_FILE if path is None else path).read_text())
        return GpuRates(**measured[name])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    for rates in GPU_DATASHEETS:
        if rates.name.lower() in name.lower():
            return rates
    return GPU_FALLBACK


def load_rates(path: str | Path = RATES_FILE) -> CpuRates:
    """The rates ``plan --calibrate`` stored for this CPU model, else :data:`CPU_RATES`."""
    try:
        rates = CpuRates(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return CPU_RATES
    return rates if rates.cpu_model == cpu_model() else CPU_RATES


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('' where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def radial_table_source(grid: GridTables, order: int, rates: CpuRates | None = None) -> tuple[bool, str]:
    """``(read, why)``: whether a radial table to be held in memory is predicted faster to
    read from the basis store (``read`` True) than to recompute, and a phrase saying why.

    Reading costs one chunk per radial index (``order // 2 + 1`` rows a chunk, see
    :mod:`zernike3d.io.basis_store`) at ``zarr_read_seconds`` each, plus the bytes at
    ``zarr_bytes_per_s``; recomputing costs ``radial_eval`` per value. The grid tables are
    not part of the choice: the planner has built them already.
    """
    rates = rates or load_rates()
    rows = len(nl_table(order))
    chunks = -(-rows // (order // 2 + 1))
    read = chunks * rates.zarr_read_seconds + rows * grid.n_shells * 8 / rates.zarr_bytes_per_s
    build = rates.radial_eval * rows * grid.n_shells
    if read < build:
        return True, f"reading ({read:.2g} s predicted) is faster than recomputing ({build:.2g} s)"
    return False, f"recomputing ({build:.2g} s predicted) is faster than reading the store ({read:.2g} s)"
