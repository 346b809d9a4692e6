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

import warnings
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io import dataset as dataset_file

from zernike3d.io.cryosparc import find_job_files, read_particles
from zernike3d.io.dataset import Dataset, input_record, provenance_step
from zernike3d.io.mrc import read_map
from zernike3d.io.wiggle import read_wiggle
from zernike3d.stages import common


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
        dataset = read_wiggle(args.wiggle, apix)
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
