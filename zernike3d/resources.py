"""Resource estimates (memory, run time) for the Snakemake rules and SLURM jobs.

The workflow asks, for each job, ``rule_resources(stage, input_path, order, config)``
and declares the result as the rule's ``mem_mb`` and ``runtime`` (minutes). The estimate
is read from the *shape* of the input only: the box, number of volumes (base map + 3DVA
components) and number of particles of the dataset bundle, which are read from the
``.npy`` headers inside the uncompressed ``.npz`` (a few hundred bytes; no data is
loaded). Before the bundle exists (a dry run) :func:`rule_resources` raises
``FileNotFoundError`` for ``input_path``, which Snakemake shows as ``<TBD>``.

decompose and reconstruct are sized by the hardware-aware planner
(:mod:`zernike3d.planning`) for the node the job will get, and ask for a GPU only when
the plan runs them on one; basis and qc use the real grid tables and the planner's
reconstruction peak. The other stages: a fixed interpreter + libraries overhead, plus the
arrays each stage holds at its peak, times a safety factor, rounded up to 256 MB.
"""

import ast
import json
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

MB = 1_000_000
#: what the model leaves of each stage's peak RSS (MB) on a small input: Python, NumPy
#: and the libraries the stage imports (numba kernels, zarr, cryosparc-tools,
#: matplotlib). Fitted to benchmarks/bench_stage_memory.py (box 64, 4 volumes, order 50,
#: 20,000 and 1,000,000 particles), so that measured peak = BASE_MB + modelled arrays +
#: PARTICLE_BYTES x particles; decompose and reconstruct are the planner's
BASE_MB = {"example": 160, "import": 40, "preprocess": 57, "basis": 39, "decompose": 0,
           "invariants": 187, "reconstruct": 0, "qc": 34, "match": 260,
           "cluster": 210, "paths": 104}
#: bytes per particle that a stage holds when it reads the particles (the latents, uid
#: and their transient copies; for import beside the table's own rows; for qc also its
#: check of the store's uid and the store chunks of the sampled rows), from the same fit
PARTICLE_BYTES = {"example": 200, "import": 45, "preprocess": 64, "basis": 85, "decompose": 24,
                  "invariants": 24, "reconstruct": 24, "qc": 243, "cluster": 90, "paths": 160,
                  "match": 400}
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


@dataclass(frozen=True)
class BundleShape:
    """What the estimate needs to know about the data: read cheaply, never the arrays."""

    box: int
    n_volumes: int
    n_particles: int
    voxel_size: float
    #: bytes per row of the particles table (import only; 0 when not known)
    row_bytes: int = 0


def read_npy_header(stream):
    """``(shape, descr)`` from the header of a ``.npy`` stream, leaving it at the data.

    Plain Python (no NumPy), so that the Snakefile can size jobs from a Snakemake
    installation that has no NumPy (e.g. with ``--sdm conda``).
    """
    magic = stream.read(8)
    if magic[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy stream")
    major = magic[6]
    length_bytes = 2 if major == 1 else 4
    length = int.from_bytes(stream.read(length_bytes), "little")
    header = ast.literal_eval(stream.read(length).decode("latin1"))
    return tuple(header["shape"]), header["descr"]


def npz_member_shapes(path):
    """``{key: (shape, descr)}`` of the arrays in an ``.npz``, reading only the headers."""
    shapes = {}
    with open(str(path), "rb") as raw, zipfile.ZipFile(raw) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                with archive.open(info) as member:
                    shapes[info.filename[: -len(".npy")]] = read_npy_header(member)
    return shapes


def _npz_scalar(path, key, default=1.0):
    """A float64 scalar member of an ``.npz`` (e.g. ``voxel_size``) without NumPy."""
    with open(str(path), "rb") as raw, zipfile.ZipFile(raw) as archive:
        if f"{key}.npy" not in archive.namelist():
            return default
        with archive.open(f"{key}.npy") as member:
            shape, descr = read_npy_header(member)
            if shape != () or descr not in ("<f8", "<f4"):
                return default
            data = member.read(8 if descr == "<f8" else 4)
    return struct.unpack("<d" if descr == "<f8" else "<f", data)[0]


def bundle_shape(path):
    """Shape of the data behind ``path``: a dataset bundle ``.npz`` (import/preprocess
    output), a moments ``.npz``, an ``.mrc`` map, a cryoSPARC job directory or a
    ``.cs`` table. Raises ``FileNotFoundError(path)`` if it does not exist yet."""
    path_str = str(path)
    p = Path(path_str)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", path_str)
    if p.is_dir():
        return _job_dir_shape(p)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        shapes = npz_member_shapes(p)
        if "maps" in shapes:  # dataset bundle
            maps = shapes["maps"][0]
            latents = shapes.get("latents", ((0, 0),))[0]
            return BundleShape(int(maps[-1]), int(maps[0]), int(latents[0]) if latents else 0,
                               _npz_scalar(p, "voxel_size"))
        if "moments" in shapes:  # moments file: no box; the caller should pass the bundle
            rows = shapes["moments"][0]
            return BundleShape(0, int(rows[0]) if len(rows) == 2 else 1, 0, 1.0)
        # a WIGGLE bundle or another npz: size the largest cubic array
        cubes = [s for s, _ in shapes.values() if len(s) >= 3 and s[-1] == s[-2] == s[-3]]
        box = max((s[-1] for s in cubes), default=0)
        volumes = sum(math.prod(s[:-3]) for s in cubes)
        return BundleShape(int(box), max(volumes, 1), 0, 1.0)
    if suffix in (".mrc", ".map", ".mrcs"):
        return BundleShape(mrc_box(p), 1, 0, 1.0)
    if suffix == ".cs":
        return BundleShape(0, 0, _cs_rows(p), 1.0)
    return BundleShape(0, 1, 0, 1.0)


def mrc_box(path):
    """Largest of the map's dimensions (voxels), from its header alone (mrcfile)."""
    import mrcfile

    with mrcfile.open(str(path), header_only=True, permissive=True) as mrc:
        header = mrc.header
        return int(max(header.nx, header.ny, header.nz))


def mrc_voxel_size(path):
    """The map's voxel size along x in Å, from its header alone (mrcfile); None if the
    header gives none (0)."""
    import mrcfile

    with mrcfile.open(str(path), header_only=True, permissive=True) as mrc:
        size = float(mrc.voxel_size.x)
    return size if size > 0 else None


def cs_row_count(path):
    """Rows of a cryoSPARC ``.cs`` table, from its header alone: a table saved with
    ``np.save`` is memory-mapped; the compressed (CSDAT) format's JSON header states its
    ``length`` (cryosparc-tools' ``Dataset.inspect``, which decodes nothing). None if the
    file is neither."""
    import numpy as np

    try:
        return int(np.load(str(path), mmap_mode="r", allow_pickle=False).shape[0])
    except (ValueError, OSError, IndexError):
        pass
    try:
        from cryosparc.dataset import Dataset

        return int(Dataset.inspect(path)["length"])
    except Exception:  # cryosparc-tools raises several kinds on a file that is not a .cs
        return None


def _cs_rows(path):
    rows = cs_row_count(path)
    # not a readable table (the import stage will say why): guess ~200 bytes a row
    return rows if rows is not None else max(1, os.path.getsize(path) // 200)


def table_row_bytes(dataset_path, particles_cs=None):
    """Bytes per row of the particles ``.cs`` that `zernike3d cluster --subsets` reads for
    the dataset bundle ``dataset_path``: ``particles_cs``, or the table the dataset was
    imported from (its provenance), with the passthrough file beside it that is joined in
    (file size / rows: a compressed table holds more once read). 0 when none is known."""
    import numpy as np

    from zernike3d.io.cryosparc import passthrough_path
    from zernike3d.io.cryosparc_export import source_particles_cs

    if particles_cs is None:
        with np.load(str(dataset_path)) as bundle:
            steps = json.loads(str(bundle["provenance"])) if "provenance" in bundle.files else []
        particles_cs = source_particles_cs(steps)
    total = 0
    for path in (particles_cs, particles_cs and passthrough_path(particles_cs)):
        if path and os.path.isfile(path):
            total += os.path.getsize(path) // max(cs_row_count(path) or 1, 1)
    return total


def _job_dir_shape(directory):
    maps = sorted(directory.glob("*.mrc"))
    box = max((mrc_box(m) for m in maps), default=0)
    particles = sorted(directory.glob("*particles*.cs"))
    n_particles = _cs_rows(particles[0]) if particles else 0
    row_bytes = (os.path.getsize(particles[0]) // max(n_particles, 1)) if particles else 0
    return BundleShape(box, max(len(maps), 1), n_particles, 1.0, row_bytes)


# --- the model ------------------------------------------------------------------------
# The transform stages (decompose, reconstruct) and the tables and reconstructions of
# basis and qc are sized by zernike3d.planning from the real grid of the geometry; the
# other stages by the arrays they hold at their peak.


def reconstruct_count(shape, config):
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


def _mb(nbytes, stage, particles=0):
    """The request (MB) for a stage holding ``nbytes`` of arrays and ``particles``
    particles at its peak: (process floor + arrays + particles) x SAFETY, rounded up."""
    total = SAFETY * (BASE_MB[stage] + (nbytes + PARTICLE_BYTES[stage] * particles) / MB)
    total += NUMBA_COMPILE_MB if stage in NUMBA_STAGES else 0
    return max(MIN_MEM_MB, int(math.ceil(total / ROUND_MB) * ROUND_MB))


def _minutes(seconds):
    return int(MIN_RUNTIME + math.ceil(2 * seconds / 60))


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


def _geometry(shape, config):
    from zernike3d.maths.geometry import BallGeometry

    center = config.get("center")
    center = None if not center else tuple(float(v) for v in str(center).split(","))
    return BallGeometry.for_box(shape.box, shape.voxel_size or 1.0, config.get("radius") or "inscribed", center)


def _plan(stage, geometry, order, volumes, config):
    """The planner's estimates for the node a job gets: ``threads`` cores, host memory as
    needed (``node_mem_mb`` where the partition's nodes are known) and, when the dataset
    allows GPUs (and ``node_gpus`` is not 0), one GPU of ``gpu_memory_gb`` GiB."""
    from zernike3d.hardware import GpuDescription, MachineDescription
    from zernike3d.planning import plan_for

    threads = int(config.get("threads") or 1)
    gpus = ()
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


def planned(stage, shape, order, config):
    """Resources of a decompose/reconstruct job: the planner's choice for its node.

    The job asks for a GPU only when the planner would run it there. Returns ``{"mem_mb",
    "runtime", "gpu"}``; the stage is then run with ``--max-memory`` = ``mem_mb``, so its
    own plan stays inside the allocation.
    """
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.stages.reconstruct import MAPS_BUDGET

    geometry = _geometry(shape, config)
    volumes = max(shape.n_volumes, 1)
    if stage == "reconstruct":  # the ball keeps its radius in Å on the output grid
        spec = config.get("reconstruct") or {}
        box = int(spec.get("box") or geometry.box)
        voxel_size = float(spec.get("voxel_size") or geometry.voxel_size)
        if (box, voxel_size) != (geometry.box, geometry.voxel_size):
            geometry = BallGeometry.for_box(box, voxel_size, geometry.radius)
        volumes = max(1, min(reconstruct_count(shape, config), MAPS_BUDGET // (8 * box**3)))
    chosen = _plan(stage, geometry, order, volumes, config).resources()
    mem_mb = (SAFETY * PARTICLE_BYTES[stage] * shape.n_particles / MB + PLANNED_SAFETY * chosen["mem_mb"]
              + NUMBA_COMPILE_MB)
    mem_mb = max(MIN_MEM_MB, int(math.ceil(mem_mb / ROUND_MB) * ROUND_MB))
    if config.get("node_mem_mb"):  # the plan fits the node; the headroom may not
        mem_mb = min(mem_mb, int(config["node_mem_mb"]))
    return {"mem_mb": mem_mb, "runtime": MIN_RUNTIME + 2 * chosen["runtime"], "gpu": chosen["gpu"]}


def estimate(stage, shape, order, config=None):
    """``{"mem_mb": int, "runtime": int minutes, "gpu": 0|1}`` for ``stage`` on data of ``shape``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    config = config or {}
    if stage in PLANNED_STAGES:
        return planned(stage, shape, order, config)
    from zernike3d.maths.basis import radial_table_bytes
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
        # the maps read (float32) and stacked, the particles table as read and its fields
        nbytes = 2 * 4 * voxels * volumes + shape.row_bytes * particles
        seconds = voxels * volumes * 10 / OPS_PER_SECOND
    elif stage == "preprocess":
        # input maps + float64 working copies + FFTs for Fourier binning
        nbytes = 4 * voxels * volumes + 3 * 16 * voxels
        seconds = voxels * volumes * 50 / OPS_PER_SECOND
    elif stage == "basis":
        # the maps (for the geometry), the grid tables and the radial table, and its copy
        # while it is written into the store
        grid = _geometry(shape, config).grid
        nbytes = 4 * voxels * volumes + grid.nbytes + 2 * radial_table_bytes(order, grid.n_shells)
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
        # every volume reconstructed (the planner's cpu-ram peak, interpreter included,
        # with the work blocks qc's reconstruct uses: zernike3d.maths.transform.reconstruct
        # without a basis keeps the radial table in RAM and works in blocks of at most
        # DEFAULT_WORKSPACE, not in the largest blocks a reconstruct job on an unlimited
        # node would plan: 15.8 GB asked against 2.3 GB used, 192^3 x 7 volumes at order
        # 50), the FSC of zero-padded maps through rfftn, and the PCA of a sample of the
        # per-particle invariants (float32 rows, float64 centred copy and SVD work)
        from zernike3d.maths.fsc import oversampling_for
        from zernike3d.maths.transform import DEFAULT_WORKSPACE

        estimates = _plan("reconstruct", _geometry(shape, config), order, volumes, dict(config, gpu=False)).estimates
        reconstruction = next(e for e in estimates if e.placement == "cpu-ram")
        reconstruction_bytes = reconstruction.host_bytes - max(reconstruction.max_workspace - DEFAULT_WORKSPACE, 0)
        padded = (box * oversampling_for(box)) ** 3 if box else 0
        sample = min(particles, QC_PCA_SAMPLE)
        nbytes = 4 * voxels * volumes + 60 * padded + reconstruction_bytes + sample * nl * 20
        seconds = reconstruction.seconds + padded * 30 / OPS_PER_SECOND
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


#: a generous time (s) of one alignment of `zernike3d match` at its fit order
MATCH_ALIGN_SECONDS = 10.0


def fit_to_nodes(threads, mem_mb, gpus, nodes, attempt=1):
    """The memory (MB) to ask for a job of ``threads`` CPUs, ``mem_mb`` MB and ``gpus``
    GPUs on a partition of node types ``nodes`` ([{"cpus", "mem_mb", "gpus"}], as
    ``zernike3d profile install`` reads them with sinfo); ``mem_mb`` where ``nodes`` is
    empty (unknown). A retry (``attempt`` > 1, memory already multiplied) is capped to the
    largest node; a first attempt that fits no node raises ValueError saying why, since
    SLURM would keep such a job pending forever without a message."""
    if not nodes:
        return mem_mb
    fitting = [n for n in nodes if n["cpus"] >= threads and n["gpus"] >= gpus]
    offered = "; ".join(f"{n['cpus']} CPUs, {n['mem_mb']} MB, {n['gpus']} GPU{'' if n['gpus'] == 1 else 's'}" for n in nodes)
    if not fitting:
        need = f"{threads} CPU{'s' if threads > 1 else ''}" + (f" and {gpus} GPU{'s' if gpus > 1 else ''}" if gpus else "")
        raise ValueError(f"needs {need}, but no node offers that (nodes: {offered})")
    largest = max(n["mem_mb"] for n in fitting)
    if mem_mb <= largest:
        return mem_mb
    if attempt > 1 and mem_mb / attempt <= largest:
        return largest
    raise ValueError(f"needs {mem_mb} MB of memory, but the nodes with {threads} CPU{'s' if threads > 1 else ''}{' and a GPU' if gpus else ''} "
                     f"have at most {largest} MB (nodes: {offered})")


def rule_resources(stage, input_path, order, config):
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


PEAK_LINE = "peak memory"


def peak_rss_mb():
    """This process's peak resident memory (MB): VmHWM of /proc/self/status, which starts
    afresh at exec; ``ru_maxrss`` where there is no /proc (it would include the RSS of the
    parent that started the process, e.g. Snakemake's, on Linux)."""
    import resource

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def run_measured(argv):
    """Run ``zernike3d <argv>`` in this process and print, at the end, its exact peak
    resident memory (:func:`peak_rss_mb`) and wall time to stderr, e.g.
    ``zernike3d decompose: peak memory 355.6 MB (RSS), 2.41 s``. The workflow runs every
    stage this way, so each job's log says what it really needed (Snakemake's
    ``benchmark:`` samples memory only every 0.5-30 s and misses short peaks)."""
    import sys
    import time

    from zernike3d.cli import main as cli_main

    started = time.perf_counter()
    stage = argv[0] if argv else "?"
    code = 1
    try:
        code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    finally:
        print(f"zernike3d {stage}: {PEAK_LINE} {peak_rss_mb():.1f} MB (RSS), "
              f"{time.perf_counter() - started:.2f} s", file=sys.stderr)
    return code


def main(argv=None):
    """``python -m zernike3d.resources STAGE INPUT ORDER [THREADS]``: print the estimate;
    ``python -m zernike3d.resources run STAGE ARGS...``: run a stage, report its peak memory."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "run":
        return run_measured(args[1:])
    stage, path, order = args[0], args[1], int(args[2])
    threads = int(args[3]) if len(args) > 3 else 1
    print(json.dumps(rule_resources(stage, path, order, {"threads": threads})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
