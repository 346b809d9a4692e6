"""Import a cryoSPARC 3D Variability job, a single map or a WIGGLE bundle as a dataset.

Give exactly one source:
  --job-dir DIR        a 3DVA job directory holding J<n>_map.mrc, J<n>_component_<k>.mrc
                       (k = 0, 1, ...) and J<n>_particles.cs, of one job only (or these
                       files as downloaded: cryosparc_P<p>_J<n>_map.mrc, ...)
  --map MAP.mrc        a single map, or with --components C0.mrc C1.mrc ... (in order of k)
                       and --particles P.cs the files of a 3DVA job named explicitly
  --wiggle B.npz       a WIGGLE 3DVA bundle (wiggle_packager.py): `consensus_map` (N, N, N)
                       [z, y, x]; `components` (K, N, N, N) (or (N, N, N) for K = 1);
                       `particles` the cryoSPARC particles table (structured array with
                       components_mode_{k}/value fields) or plain latents (P, K), which get
                       uids 0..P-1. The bundle stores no voxel size: --apix, else an `apix`
                       entry, else blob/psize_A x blob/shape / N of the particles. Origin 0.

The voxel size comes from the map header unless --apix is given. If it matches neither
the particles' pixel size (blob/psize_A) nor that size rescaled to the map's box
(blob/psize_A x blob/shape / N), a warning names the numbers. A job's own
J<n>_particles.cs holds only uid and components_mode_*: the pixel size then comes from
J<n>_passthrough_particles.cs beside it, if it is there. Everything is checked
before the output is written, and it is written atomically: see zernike3d/io/dataset.py.
"""

import re
import warnings
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.cryosparc import particles_from_table, read_particles
from zernike3d.io import dataset as dataset_file
from zernike3d.io.dataset import Dataset, input_record, provenance_step
from zernike3d.io.mrc import read_map
from zernike3d.stages import common

_JOB_FILE = re.compile(r"^(?:cryosparc_P\d+_)?(J\d+)_(?:(map)\.mrc|component_(\d+)\.mrc|(particles)\.cs)$")


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--job-dir", metavar="DIR", help="cryoSPARC 3D Variability job directory")
    source.add_argument("--map", metavar="MAP.mrc", help="base (consensus) map, or a single map")
    source.add_argument("--wiggle", metavar="BUNDLE.npz", help="WIGGLE 3DVA bundle")
    parser.add_argument("--components", nargs="+", metavar="C.mrc",
                        help="3DVA component maps in order k = 0, 1, ... (with --map)")
    parser.add_argument("--particles", metavar="P.cs",
                        help="3DVA particles .cs with components_mode_*/value (with --map)")
    parser.add_argument("--out", required=True, metavar="DATASET.npz", help="output dataset")
    parser.add_argument("--apix", type=float, metavar="Å",
                        help="voxel size in Å, overriding the map header")


def run(args):
    apix = _check_apix(args.apix)
    common.check_outputs([args.job_dir, args.map, *(args.components or []), args.particles, args.wiggle],
                         [(args.out, dataset_file.OUTPUT)])
    if (args.components is None) != (args.particles is None) or (
        args.components is not None and args.map is None
    ):
        raise InputError("--components/--particles",
                         "give both, together with --map (or use --job-dir)")
    if args.wiggle:
        dataset = import_wiggle(args.wiggle, apix)
    else:
        if args.job_dir:
            map_path, component_paths, particles_path = find_job_files(args.job_dir)
            parameters = {"source": "job-dir", "job_dir": str(Path(args.job_dir).resolve())}
        else:
            map_path, component_paths, particles_path = args.map, args.components or [], args.particles
            parameters = {"source": "files" if args.particles else "map"}
        dataset = import_maps(map_path, component_paths, particles_path, apix, parameters)
    dataset.save(args.out)
    contents = (f"base map + {dataset.n_components} components, {len(dataset.uid)} particles"
                if dataset.n_components else "a single map")
    print(f"wrote {args.out}: {contents}, box {dataset.box}, voxel {dataset.voxel_size:.4g} Å")
    return 0


def find_job_files(directory):
    """``(map, [component_0, ...], particles)`` paths of the one 3DVA job in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "job directory not found")
    jobs = {}
    for path in sorted(directory.iterdir()):
        match = _JOB_FILE.match(path.name)
        if not match:
            continue
        job, is_map, k, is_particles = match.groups()
        files = jobs.setdefault(job, {"components": {}})
        slot, key = (files["components"], int(k)) if k is not None else (files, "map" if is_map else "particles")
        if key in slot:  # e.g. J7_map.mrc and its download cryosparc_P1_J7_map.mrc
            what = f"component {key}" if k is not None else f"the {key}"
            raise InputError(directory, f"two files for {what}: {slot[key].name} and {path.name}")
        slot[key] = path
    if not jobs:
        raise InputError(directory, "no 3D Variability outputs here (expected J<n>_map.mrc, "
                         "J<n>_component_<k>.mrc and J<n>_particles.cs)")
    if len(jobs) > 1:
        raise InputError(directory, f"outputs of several jobs ({', '.join(sorted(jobs))}); "
                         "name the files with --map, --components and --particles")
    (job, files), = jobs.items()
    components = files["components"]
    missing = [f"{job}_{key}{suffix}" for key, suffix in (("map", ".mrc"), ("particles", ".cs"))
               if key not in files]
    last = max(components, default=0)
    missing += [f"{job}_component_{k}.mrc" for k in range(last + 1) if k not in components]
    if missing:
        raise InputError(directory, f"incomplete 3D Variability job {job}: missing "
                         f"{', '.join(missing)}")
    return files["map"], [components[k] for k in sorted(components)], files["particles"]


def job_files_read(directory) -> list[str]:
    """The files that importing the job in ``directory`` reads (:func:`find_job_files`:
    map, components, particles, and the particles' passthrough file when it is there),
    as strings: the inputs of the workflow's import job."""
    from zernike3d.io.cryosparc import passthrough_path

    map_path, components, particles = find_job_files(directory)
    passthrough = passthrough_path(particles)
    return [str(p) for p in (map_path, *components, particles, passthrough) if p is not None]


def import_maps(map_path, component_paths, particles_path, apix, parameters):
    """A dataset from a map, optionally with component maps and a 3DVA particles .cs."""
    particles = None
    if particles_path is not None:
        particles = read_particles(particles_path)
        if len(component_paths) != particles.n_components:
            raise InputError(particles_path, f"{particles.n_components} latent dimensions "
                             f"(components_mode_0..{particles.n_components - 1}) but "
                             f"{len(component_paths)} component maps were given")
    base = read_map(map_path, voxel_size=apix)
    maps = np.empty((1 + len(component_paths),) + base.data.shape, dtype=np.float32)
    maps[0] = base.data
    for k, path in enumerate(component_paths):
        component = read_map(path, voxel_size=apix)
        if component.data.shape != base.data.shape:
            raise InputError(path, f"box {component.data.shape[0]} differs from the map's "
                             f"{base.data.shape[0]} ({map_path})")
        if not np.isclose(component.voxel_size, base.voxel_size, rtol=1e-3):
            warnings.warn(f"{path}: voxel size {component.voxel_size:.4g} Å differs from the "
                          f"map's {base.voxel_size:.4g} Å; using the map's", stacklevel=2)
        maps[1 + k] = component.data
    voxel_source = "--apix" if apix else "map header"
    if particles is not None:
        _check_sampling(particles_path, particles, base.voxel_size, maps.shape[-1], voxel_source)
    inputs = [map_path, *component_paths] + ([particles_path] if particles_path else [])
    step = provenance_step("import", {**parameters, "apix": apix, "voxel_size": base.voxel_size,
                                      "voxel_size_from": voxel_source},
                           [input_record(p) for p in inputs])
    if particles is None:
        return Dataset.single_map(base.data, base.voxel_size, base.origin, [step])
    return Dataset(maps, particles.latents, particles.uid, base.voxel_size, base.origin, [step])


def import_wiggle(path, apix):
    """A dataset from a WIGGLE 3DVA bundle (see the module docstring for what is accepted)."""
    arrays = _read_npz(path, ("consensus_map", "components", "particles"), ("apix",))
    base = arrays["consensus_map"]
    if base.ndim != 3 or len(set(base.shape)) != 1:
        raise InputError(path, f"consensus_map must be a cubic (N, N, N) map, got {base.shape}")
    components = arrays["components"]
    if components.ndim == 3:
        components = components[None]
    if components.ndim != 4 or components.shape[1:] != base.shape:
        raise InputError(path, f"components must be (K, {base.shape[0]}, {base.shape[0]}, "
                         f"{base.shape[0]}) like consensus_map, got {arrays['components'].shape}")
    table = arrays["particles"]
    if table.dtype.names:
        particles = particles_from_table(f"{path} (particles)", table.dtype.names, table.__getitem__)
        uid, latents = particles.uid, particles.latents
    else:
        latents = table.reshape(-1, 1) if table.ndim == 1 else table
        if latents.ndim != 2 or latents.shape[0] == 0 or not np.issubdtype(latents.dtype, np.number):
            raise InputError(path, f"particles must be a cryoSPARC table or numeric latents "
                             f"(P, K), got {table.dtype} {table.shape}")
        if not np.isfinite(latents).all():
            raise InputError(path, "particles contain NaN or infinite latents")
        particles, uid = None, np.arange(len(latents))
        warnings.warn(f"{path}: particles are plain latents without uids; numbering them "
                      f"0..{len(latents) - 1}", stacklevel=2)
    if latents.shape[1] != len(components):
        raise InputError(path, f"{latents.shape[1]} latent dimensions but {len(components)} "
                         "component maps")
    maps = np.concatenate([base[None], components]).astype(np.float32)
    bad = maps.size - int(np.count_nonzero(np.isfinite(maps)))
    if bad:
        raise InputError(path, f"{bad} map voxels are NaN or infinite")
    voxel_size, voxel_source = _wiggle_voxel_size(path, apix, arrays.get("apix"), particles, base.shape[0])
    step = provenance_step("import", {"source": "wiggle", "apix": apix, "voxel_size": voxel_size,
                                      "voxel_size_from": voxel_source}, [input_record(path)])
    return Dataset(maps, latents, uid, voxel_size, (0.0, 0.0, 0.0), [step])


def _wiggle_voxel_size(path, apix, stored, particles, box):
    if apix:
        return apix, "--apix"
    if stored is not None and stored.size == 1 and float(stored) > 0:
        return float(stored), "bundle apix"
    if particles is not None and particles.psize_A and particles.blob_box:
        voxel_size = particles.psize_A * particles.blob_box / box
        warnings.warn(f"{path}: no voxel size in the bundle; using the particles' "
                      f"{particles.psize_A:.4g} Å x {particles.blob_box} px / {box} px = "
                      f"{voxel_size:.4g} Å (pass --apix to set it)", stacklevel=3)
        return voxel_size, "particles blob/psize_A x blob/shape / box"
    raise InputError(path, "the bundle has no voxel size; give it with --apix")


def _read_npz(path, required, optional):
    """The named arrays of an .npz (no pickles); InputError naming what is missing."""
    from zernike3d.io.npz import open_npz

    with open_npz(path, "a readable .npz bundle") as npz:
        missing = [key for key in required if key not in npz]
        if missing:
            raise InputError(path, f"not a WIGGLE 3DVA bundle: lacks {', '.join(missing)} "
                             f"(has {', '.join(sorted(npz.keys))}; expected {', '.join(required)})")
        return {key: npz.read(key) for key in (*required, *optional) if key in npz}


def _check_sampling(particles_path, particles, voxel_size, box, voxel_source):
    """Warn if the map's voxel size fits neither the particles' pixel size nor its rescaling."""
    if particles.psize_A is None:
        return
    candidates = [particles.psize_A]
    rescaled = ""
    if particles.blob_box:
        candidates.append(particles.psize_A * particles.blob_box / box)
        rescaled = (f" nor that size rescaled to the map box, {particles.psize_A:.4g} Å x "
                    f"{particles.blob_box} px / {box} px = {candidates[1]:.4g} Å")
    if not any(np.isclose(voxel_size, c, rtol=1e-3) for c in candidates):
        warnings.warn(
            f"voxel size {voxel_size:.4g} Å ({voxel_source}) matches neither the particles' "
            f"pixel size {particles.psize_A:.4g} Å (blob/psize_A in {particles_path}){rescaled}; "
            "check that the maps and particles belong together"
            + ("" if voxel_source == "--apix" else ", or set the voxel size with --apix"),
            stacklevel=3,
        )


def _check_apix(apix):
    if apix is not None and not (np.isfinite(apix) and apix > 0):
        raise InputError("--apix", f"must be a positive number of Å, got {apix}")
    return apix
