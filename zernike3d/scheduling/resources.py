"""Resource estimates (memory, run time) for the Snakemake rules and SLURM jobs.

The workflow asks, for each job, ``rule_resources(stage, input_path, order, config)``
and declares the result as the rule's ``mem_mb`` and ``runtime`` (minutes). The estimate
is read from the *shape* of the input only: the box, number of volumes (base map + 3DVA
components) and number of particles of the dataset bundle, which are read from the
``.npy`` headers inside the uncompressed ``.npz`` (a few hundred bytes; no data is
loaded; :mod:`zernike3d.scheduling.inputs`). Before the bundle exists (a dry run)
:func:`rule_resources` raises ``FileNotFoundError`` for ``input_path``, which Snakemake
shows as ``<TBD>``.

decompose and reconstruct are sized by the hardware-aware planner
(:mod:`zernike3d.scheduling.planner`) for the node the job will get, and ask for a GPU only
when the plan runs them on one; basis and qc use the real grid tables and the planner's
reconstruction peak. The other stages: a fixed interpreter + libraries overhead, plus the
arrays each stage holds at its peak, times a safety factor, rounded up to 256 MB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from zernike3d.scheduling.inputs import BundleShape, bundle_shape

MB = 1_000_000
#: what the model leaves of each stage's peak RSS (MB) on a small input: Python, NumPy
#: and the libraries the stage imports (numba kernels, zarr, cryosparc-tools,
#: matplotlib). Fitted to benchmarks/bench_stage_memory.py (box 64, 4 volumes, order 50,
#: 20,000 and 1,000,000 particles), so that measured peak = BASE_MB + modelled arrays +
#: PARTICLE_BYTES x particles; decompose and reconstruct are the planner's
BASE_MB = {"example": 160, "import": 40, "preprocess": 40, "basis": 39, "decompose": 0,
           "invariants": 175, "reconstruct": 0, "qc": 34, "match": 260,
           "cluster": 210, "paths": 104, "cluster_maps": 60}
#: bytes per particle that a stage holds when it reads the particles (the latents, uid
#: and their transient copies; for import beside the table's own rows; for qc also its
#: check of the store's uid and the store chunks of the sampled rows), from the same fit
PARTICLE_BYTES = {"example": 200, "import": 45, "preprocess": 64, "basis": 85, "decompose": 24,
                  "invariants": 24, "reconstruct": 24, "qc": 243, "cluster": 90, "paths": 160,
                  "match": 400, "cluster_maps": 24}
#: bytes per particle and neighbour of the k-nearest-neighbour graph of `zernike3d path`
#: (the workflow's rule and resources key: paths); with PARTICLE_BYTES, chosen so that
#: the requests lie within 1.0-1.5x the peaks (VmHWM) measured at 20,000 and 200,000
#: particles (box 32; 5, 10 and 30 neighbours) and 500,000 (box 192): the cluster and
#: paths rows of benchmarks/bench_stage_memory.py
PATH_NEIGHBOUR_BYTES = 70
#: copies of a particle's .cs row that `zernike3d cluster --subsets` holds at its peak,
#: beyond PARTICLE_BYTES (fitted with the real 246-byte rows of a cryoSPARC job)
SUBSET_ROW_COPIES = 1
#: headroom on every estimate, for what the fit does not capture
SAFETY = 1.1
#: what compiling the numba kernels adds to a job that finds none cached (the first jobs
#: after installing or changing zernike3d/maths/_kernels.py): decompose peaked at 300.6 MB
#: cold against 232.0 MB warm; the planner's allowance for the interpreter covers the rest
NUMBA_COMPILE_MB = 60
NUMBA_STAGES = ("decompose", "reconstruct", "invariants", "qc", "match")
#: no job is given less (the smallest stage process measured 42 MB)
MIN_MEM_MB = 64
ROUND_MB = 8
#: voxel operations per second per thread of the stages the planner does not model
OPS_PER_SECOND = 1.0e8
MIN_RUNTIME = 10  # minutes: start-up, queueing of the step, file systems
STAGES = tuple(BASE_MB)


# --- the model ------------------------------------------------------------------------
# The transform stages (decompose, reconstruct) and the tables and reconstructions of
# basis and qc are sized by zernike3d.scheduling.planner from the real grid of the geometry; the
# other stages by the arrays they hold at their peak.


def reconstruct_count(shape: BundleShape, config: Mapping[str, Any] | None) -> int:
    """Number of maps the reconstruct stage writes for this dataset's settings."""
    spec = (config or {}).get("reconstruct") or {}
    components = max(shape.n_volumes - 1, 0)
    count = 1  # the base map
    if components and shape.n_particles:
        count += int(spec.get("series") or 0) * components
        count += int(spec.get("kmeans") or 0)
        count += len(spec.get("particles") or [])
    count += len(spec.get("latents") or [])
    return count


def _mb(nbytes: float, stage: str, particles: int = 0) -> int:
    """The request (MB) for a stage holding ``nbytes`` of arrays and ``particles``
    particles at its peak: (process floor + arrays + particles) x SAFETY, rounded up."""
    total = SAFETY * (BASE_MB[stage] + (nbytes + PARTICLE_BYTES[stage] * particles) / MB)
    total += NUMBA_COMPILE_MB if stage in NUMBA_STAGES else 0
    return max(MIN_MEM_MB, int(math.ceil(total / ROUND_MB) * ROUND_MB))


def _minutes(seconds: float) -> int:
    return int(MIN_RUNTIME + math.ceil(2 * seconds / 60))


#: what a qc that reuses reconstruct's maps holds beyond BASE_MB (fitted with the planner's
#: interpreter allowance included, which the rebuild counts and the reuse does not): the
#: libraries it loads (matplotlib, scipy.fft, numba's kernels). .test's qc peaked at
#: 210 MB against 168 MB asked without it; with it box 64 asks 1.18-1.26x and 192^3 1.37x
#: the peaks of benchmarks/bench_stage_memory.py and bench_real_job.py
QC_REUSE_PROCESS_MB = 56
#: particles drawn for the PCA plot of qc (its --pca-sample default)
QC_PCA_SAMPLE = 20000
#: stages whose resources (memory, time, GPU or not) are the planner's choice
PLANNED_STAGES = ("decompose", "reconstruct")
#: GPU memory assumed for the cluster's GPUs when the config does not say (GiB)
DEFAULT_GPU_MEMORY_GB = 40
#: headroom on the planner's predicted peak, which includes the interpreter and libraries
#: and was 3-12% above the measured peaks of benchmarks/bench_placements.py (the particles
#: and the compile allowance are added to it)
PLANNED_SAFETY = 1.0


def _geometry(shape: BundleShape, config: Mapping[str, Any]) -> Any:
    from zernike3d.maths.geometry import BallGeometry

    center = config.get("center")
    center = None if not center else tuple(float(v) for v in str(center).split(","))
    return BallGeometry.for_box(shape.box, shape.voxel_size or 1.0, config.get("radius") or "inscribed", center)


def _plan(stage: str, geometry: Any, order: int, volumes: int, config: Mapping[str, Any]) -> Any:
    """The planner's estimates for the node a job gets: ``threads`` cores, host memory as
    needed (``node_mem_mb`` where the partition's nodes are known) and, when the dataset
    allows GPUs (and ``node_gpus`` is not 0), one GPU of ``gpu_memory_gb`` GiB."""
    from zernike3d.scheduling.hardware import GpuDescription, MachineDescription
    from zernike3d.scheduling.planner import plan_for

    threads = int(config.get("threads") or 1)
    gpus: tuple[GpuDescription, ...] = ()
    if config.get("gpu") and config.get("node_gpus", 1):
        gpu_bytes = int(float(config.get("gpu_memory_gb") or DEFAULT_GPU_MEMORY_GB) * 2**30)
        gpus = (GpuDescription(0, config.get("slurm_gpu_model") or "cluster GPU", gpu_bytes, gpu_bytes),)
    unlimited = 2**50
    # the node's memory when the partition's nodes are known (SLURM's MB are MiB)
    ram = int(config["node_mem_mb"]) * 2**20 if config.get("node_mem_mb") else unlimited
    node = MachineDescription(threads, ram, ram, unlimited, gpus=gpus, cupy_usable=bool(gpus))
    return plan_for(
        geometry.box, int(order), n_volumes=volumes, voxel_size=geometry.voxel_size, radius=geometry.radius,
        center=geometry.center, stage=stage, machine=node, threads=threads,
    )


def planned(stage: str, shape: BundleShape, order: int, config: Mapping[str, Any]) -> dict[str, int]:
    """Resources of a decompose/reconstruct job: the planner's choice for its node.

    The job asks for a GPU only when the planner would run it there. Returns ``{"mem_mb",
    "runtime", "gpu"}``; the stage is then run with ``--max-memory`` = ``mem_mb``, so its
    own plan stays inside the allocation.
    """
    from zernike3d.analysis.latents import MAPS_BUDGET
    from zernike3d.maths.geometry import BallGeometry

    geometry = _geometry(shape, config)
    volumes = max(shape.n_volumes, 1)
    if stage == "reconstruct":  # the ball keeps its radius in Å on the output grid
        spec = config.get("reconstruct") or {}
        box = int(spec.get("box") or geometry.box)
        voxel_size = float(spec.get("voxel_size") or geometry.voxel_size)
        if (box, voxel_size) != (geometry.box, geometry.voxel_size):
            geometry = BallGeometry.for_box(box, voxel_size, geometry.radius)
        # the volumes transformed at once, as `zernike3d reconstruct` batches them: every
        # map is a combination of the base and the K components, so at most 1 + K
        # (zernike3d.analysis.latents.transforms_needed), within MAPS_BUDGET; counting
        # every map written instead asked 1.9x (box 64) to 2.6x (192^3) the peak
        transforms = min(reconstruct_count(shape, config), volumes)
        volumes = max(1, min(transforms, MAPS_BUDGET // (8 * box**3)))
    chosen = _plan(stage, geometry, order, volumes, config).resources()
    mem_mb = (SAFETY * PARTICLE_BYTES[stage] * shape.n_particles / MB + PLANNED_SAFETY * chosen["mem_mb"]
              + NUMBA_COMPILE_MB)
    mem_mb = max(MIN_MEM_MB, int(math.ceil(mem_mb / ROUND_MB) * ROUND_MB))
    if config.get("node_mem_mb"):  # the plan fits the node; the headroom may not
        mem_mb = min(mem_mb, int(config["node_mem_mb"]))
    return {"mem_mb": mem_mb, "runtime": MIN_RUNTIME + 2 * chosen["runtime"], "gpu": chosen["gpu"]}


def estimate(stage: str, shape: BundleShape, order: int | None, config: Mapping[str, Any] | None = None) -> dict[str, int]:
    """``{"mem_mb": int, "runtime": int minutes, "gpu": 0|1}`` for ``stage`` on data of ``shape``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    config = config or {}
    if stage in PLANNED_STAGES:
        return planned(stage, shape, int(order or 0), config)
    if stage == "cluster_maps" and not reuses_reconstructed_maps(shape, int(order or 0), config):
        # `zernike3d reconstruct --points`, its volumes rebuilt as by a reconstruct job (on
        # the CPU: the rule declares no GPU)
        order = (config.get("reconstruct") or {}).get("order") or order
        return planned("reconstruct", shape, int(order or 0), dict(config, gpu=False))
    from zernike3d.maths.indexing import coefficient_count, nl_table

    threads = int(config.get("threads") or 1)
    order = int(order or 0)
    box, volumes, particles = shape.box, max(shape.n_volumes, 1), shape.n_particles
    voxels = box**3
    nl = len(nl_table(order))
    seconds = 0.0
    if stage == "example":
        spec = config.get("example") or {}
        b = int(spec.get("box", 32))
        nbytes = 4 * b**3 * (int(spec.get("n_components", 3)) + 1) * 3
        particles = 2000
    elif stage == "import":
        # the maps stacked as read (float32) and the particles table as read: 376 MB
        # measured against 361 MB modelled for 192^3 x 7 volumes and 500,000 rows of 246
        # bytes (a second copy of the maps, modelled before, is not held)
        nbytes = 4 * voxels * volumes + shape.row_bytes * particles
        seconds = voxels * volumes * 10 / OPS_PER_SECOND
    elif stage == "preprocess":
        # input maps + float64 working copies + FFTs for Fourier binning
        nbytes = 4 * voxels * volumes + 3 * 16 * voxels
        seconds = voxels * volumes * 50 / OPS_PER_SECOND
    elif stage == "basis":
        # the maps (for the geometry), the grid tables and the rows of the radial table
        # that the store is written in (zernike3d.io.basis_store: one l at a time, chunks
        # of order // 2 + 1 float64 rows): one l's rows, the chunk and its compressed
        # copy. The whole table, counted twice before, was 992 MB of the 1480 MB asked
        # against a peak of 392 MB (192^3 x 7 volumes at order 50: 91,770 shells)
        grid = _geometry(shape, config).grid
        nbytes = 4 * voxels * volumes + grid.nbytes + 3 * 8 * (order // 2 + 1) * grid.n_shells
    elif stage == "invariants":
        # the dataset as loaded (its maps: 198 MB of a 192^3 job of 7 volumes, which the
        # fit at box 64 did not see), the moments and forms, and one chunk of particles'
        # invariants: float64 and float32, and zarr's compressed copy
        # (zernike3d.io.particle_invariants)
        from zernike3d.io.particle_invariants import DEFAULT_CHUNK

        coefs = coefficient_count(order)
        nbytes = 4 * voxels * volumes + 16 * coefs * volumes + 8 * nl * volumes**2 + DEFAULT_CHUNK * nl * 24
        seconds = particles * nl * volumes**2 / (OPS_PER_SECOND * threads)
    elif stage == "qc":
        # the dataset's maps (float32), the FSC of zero-padded maps through rfftn, the PCA
        # of a sample of the per-particle invariants (float32 rows, float64 centred copy
        # and SVD work), and the expansions: where reconstruct's maps hold them
        # (reuses_reconstructed_maps) they are solved from 1 + K of them; otherwise every volume is
        # reconstructed (see qc_reconstruction_bytes)
        from zernike3d.maths.fsc import oversampling_for

        maps = 4 * voxels * volumes
        padded = (box * oversampling_for(box)) ** 3 if box else 0
        fsc, pca = 60 * padded, min(particles, QC_PCA_SAMPLE) * nl * 20
        if reuses_reconstructed_maps(shape, order, config):
            # beside the dataset's maps, the largest of: the maps read and the stack solved
            # from them (zernike3d.analysis.latents.job_volumes_from_maps), the expansions
            # with the FSC work, the FSC work with the PCA (at box 64 these two are most
            # of the peak, as if held at once): 1.15x (box 64, K = 3, 200,000 particles)
            # and 1.30x (192^3, K = 6, 500,000) the measured peaks at order 50, where
            # counting the reconstruction asked 1.73x and 3.7x
            nbytes = maps + max(2 * maps, maps + fsc, fsc + pca)
            nbytes += QC_REUSE_PROCESS_MB * MB
            seconds = padded * 30 / OPS_PER_SECOND
        else:
            reconstruction, reconstruction_bytes = qc_reconstruction_bytes(shape, order, config)
            nbytes = maps + fsc + reconstruction_bytes + pca
            seconds = reconstruction.seconds + padded * 30 / OPS_PER_SECOND
    elif stage == "cluster_maps":
        # `zernike3d reconstruct --points --maps-index`: the dataset's maps as loaded, the
        # maps read from reconstruct's folder and the job's volumes solved from them
        # (zernike3d.analysis.latents.job_volumes_from_maps), each centre's map combined
        # and written one at a time
        nbytes = 3 * 4 * voxels * volumes + 4 * voxels
        seconds = voxels * volumes * 20 / OPS_PER_SECOND
    elif stage == "match":
        # the bundle's maps, the decomposition of one query map at a time (the planner's
        # peak for one volume, interpreter included) and float64 working maps of the query
        # (its density, the resampling); per fit round one decomposition and one alignment
        # (about 5 s at the fit order); the particles' latents, scores and table rows
        from zernike3d.analysis.match import MAX_ROUNDS

        queries = max(1, len(config.get("match") or ()))
        one = _plan("decompose", _geometry(shape, config), order, 1, dict(config, gpu=False)).choice
        nbytes = 4 * voxels * volumes + one.host_bytes + 6 * 8 * voxels
        seconds = queries * MAX_ROUNDS * (one.seconds + MATCH_ALIGN_SECONDS)
    elif stage == "cluster":
        # the dataset as loaded (maps and latents) and, with the subsets for cryoSPARC, the
        # particles' .cs rows (config["table_row_bytes"]: the table and its passthrough file)
        spec = config.get("clusters") or {}
        rows = SUBSET_ROW_COPIES * int(config.get("table_row_bytes") or 0) if spec.get("export_subsets") else 0
        nbytes = 4 * voxels * volumes + rows * particles
        seconds = particles * 2000 / OPS_PER_SECOND  # a million: about 20 s
    elif stage == "paths":  # zernike3d path
        # the dataset as loaded and the k-nearest-neighbour graph of the particles' latents
        neighbours = int((config.get("clusters") or {}).get("path_neighbours") or 10)
        nbytes = 4 * voxels * volumes + PATH_NEIGHBOUR_BYTES * neighbours * particles
        seconds = particles * neighbours * 300 / OPS_PER_SECOND
    return {"mem_mb": _mb(nbytes, stage, particles), "runtime": _minutes(seconds), "gpu": 0}


def reuses_reconstructed_maps(shape: BundleShape, order: int, config: Mapping[str, Any]) -> bool:
    """Will the qc and cluster_maps jobs take the expansions of the job's volumes from
    reconstruct's maps, not rebuild them (:func:`zernike3d.stages.qc.job_expansions`,
    `zernike3d reconstruct --maps-index`)? Where the dataset has particles and
    components, reconstruct writes its maps at the stored order, box and voxel size
    (``reconstruct.order`` null or the dataset's order, ``box`` and ``voxel_size`` null)
    and its series has at least 2 frames per component: the base and the frames along
    each component are 1 + K independent points. Other choices of points (k-means
    centres, particles) may give them too; they are counted as a rebuild, the larger
    request."""
    spec = config.get("reconstruct") or {}
    return (shape.n_particles > 0 and shape.n_volumes > 1 and spec.get("order") in (None, order)
            and spec.get("box") is None and spec.get("voxel_size") is None and int(spec.get("series") or 0) >= 2)


def qc_reconstruction_bytes(shape: BundleShape, order: int, config: Mapping[str, Any]) -> tuple[Any, int]:
    """The planner's cpu-ram estimate of reconstructing every volume in qc, and its bytes
    (interpreter included) with the work blocks qc's reconstruct uses:
    zernike3d.maths.transform.reconstruct without a basis keeps the radial table in RAM
    and works in blocks of at most DEFAULT_WORKSPACE, not in the largest blocks a
    reconstruct job on an unlimited node would plan (15.8 GB asked against 2.3 GB used,
    192^3 x 7 volumes at order 50)."""
    from zernike3d.maths.transform import DEFAULT_WORKSPACE

    volumes = max(shape.n_volumes, 1)
    estimates = _plan("reconstruct", _geometry(shape, config), order, volumes, dict(config, gpu=False)).estimates
    reconstruction = next(e for e in estimates if e.placement == "cpu-ram")
    return reconstruction, reconstruction.host_bytes - max(reconstruction.max_workspace - DEFAULT_WORKSPACE, 0)


#: a generous time (s) of one alignment of `zernike3d match` at its fit order
MATCH_ALIGN_SECONDS = 10.0


def rule_resources(stage: str, input_path: str | None, order: int | None, config: Mapping[str, Any] | None) -> dict[str, int]:
    """Resources for one job of ``stage`` reading ``input_path``.

    input_path: the dataset bundle the stage works on (``preprocessed.npz`` for basis,
    decompose, invariants, reconstruct and qc; ``dataset.npz`` for preprocess; the raw
    input for import). order: Zernike order. config: the dataset's settings (keys used:
    ``threads``, ``radius``, ``reconstruct``, ``example``, ``preprocess``, and the
    optional caps ``max_mem_mb``/``max_runtime``).
    Returns ``{"mem_mb": int, "runtime": int, "gpu": 0|1}`` (MB, minutes): decompose and
    reconstruct from the planner (:func:`planned`), the other stages from
    :func:`estimate` (no GPU).
    Raises ``FileNotFoundError`` naming ``input_path`` when it does not exist yet.
    """
    config = config or {}
    if stage == "example" or input_path is None:
        shape = BundleShape(0, 1, 0, 1.0)
    else:
        shape = bundle_shape(input_path)
    result = estimate(stage, shape, order, config)
    if config.get("max_runtime"):
        result["runtime"] = min(result["runtime"], int(config["max_runtime"]))
    return result
