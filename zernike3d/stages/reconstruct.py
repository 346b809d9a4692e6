"""A map from a moments file: the Zernike expansion of one volume, written as MRC.

By default the map has the stored box and voxel size and overlays the decomposed map
(same origin). With --box or --voxel-size the ball keeps its radius in Å and is
centred on voxel box//2 of the new box; the origin is shifted so that it stays in place.
Voxels outside the ball are 0.

With --particles (a dataset of a 3D Variability job, moments of base, component_0, ..)
the maps base + sum_k z_k component_k at chosen latents z are written into --out-dir,
one MRC each named by what it shows, with DIR/index.csv (file, kind, z_0, z_1, ..):
base.mrc (z = 0) always, and
--particle IDX or uid:UID (particle_index_IDX / particle_uid_UID), --latent z0,z1,..
(latent_NN), --series N (N frames along each component between the --percentiles of its
latents, others at 0: series_cK_fNN) and --kmeans K (cluster centres: cluster_NN).
"""

import csv
from dataclasses import replace
from pathlib import Path

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, folder_kind
from zernike3d.io.dataset import Dataset
from zernike3d.io.mrc import MAP_OUTPUT, write_map
from zernike3d.latents import check_job, moments_at, select_points
from zernike3d.moments import Moments
from zernike3d.stages import common

#: maps reconstructed together hold at most this many bytes (float64 work copies)
MAPS_BUDGET = 2**30
#: what --out-dir may replace: a folder written by an earlier `reconstruct --out-dir`
MAPS_FOLDER = folder_kind("reconstruct --out-dir")


def add_arguments(parser):
    parser.add_argument("moments", metavar="M.npz", help="moments file")
    parser.add_argument("--out", metavar="MAP.mrc", help="map to write (one volume)")
    parser.add_argument("--order", type=int, default=None, help="highest order used (default: all stored)")
    parser.add_argument("--box", type=int, default=None, help="output box in voxels (default: stored)")
    parser.add_argument("--voxel-size", type=float, default=None, help="output voxel size in Å (default: stored)")
    parser.add_argument("--volume", default="0", help="volume name or index (default: the first)")
    latent = parser.add_argument_group("maps of a 3D Variability job at chosen latents")
    latent.add_argument("--particles", metavar="dataset.npz", help="dataset with the particles' latents")
    latent.add_argument("--out-dir", type=Path, help="folder for the maps and index.csv")
    latent.add_argument("--particle", nargs="+", action="extend", default=[], metavar="IDX|uid:UID", help="particles' maps")
    latent.add_argument("--latent", nargs="+", action="extend", default=[], metavar="z0,z1,..", help="maps at these latents (--latent=-1,2 when the first is negative)")
    latent.add_argument("--series", type=int, metavar="N", help="N frames along each component")
    latent.add_argument("--percentiles", default="5,95", help="range of the series, in %% of the latents (default 5,95)")
    latent.add_argument("--kmeans", type=int, metavar="K", help="maps at K k-means centres of the latents")
    common.add_threads_argument(parser)
    common.add_device_arguments(parser)


def run(args):
    outputs = [(args.out_dir, MAPS_FOLDER)] if args.particles is not None else [(args.out, MAP_OUTPUT)]
    common.check_outputs([args.moments, args.particles], outputs)
    moments = Moments.load(args.moments)
    if args.order is not None:
        order = common.parse_order(args.order)
        if order > moments.order:
            raise InputError(args.moments, f"order {order} is above the stored order {moments.order}")
        moments = moments.truncate(order)
    if args.box is not None and args.box < 1:
        raise InputError("--box", f"must be a positive number of voxels, got {args.box}")
    if args.box is not None:
        common.require_box_memory("--box", args.box)
    common.parse_voxel_size(args.voxel_size)
    if args.particles is not None:
        return write_latent_maps(args, moments)
    if args.out is None:
        raise InputError("--out", "give the map to write (or --particles and --out-dir for a 3DVA job)")
    try:
        moments = moments.volume(args.volume)
    except ValueError as err:
        raise InputError(args.moments, str(err))

    options = common.transform_options(args, moments.output_geometry(args.box, args.voxel_size), moments.order, 1, "reconstruct")
    (result,) = moments.reconstruct(box=args.box, voxel_size=args.voxel_size, progress=True, **options)
    write_map(args.out, result.data, result.voxel_size, result.origin)
    print(
        f"wrote {args.out}: volume {moments.names[0]!r} to order {moments.order}, "
        f"box {result.data.shape[0]} at {result.voxel_size:g} Å"
    )
    return 0


def write_latent_maps(args, moments):
    """The --particles mode: every chosen latent point's map and index.csv, written into
    a temporary folder that replaces --out-dir when all are complete."""
    if args.out_dir is None:
        raise InputError("--out-dir", "give the folder for the maps (with --particles)")
    dataset = Dataset.load(args.particles)
    check_job(moments, args.moments, dataset, args.particles)
    points = select_points(
        dataset, args.particles, particles=args.particle, latents=args.latent, series=args.series,
        percentiles=args.percentiles, kmeans=args.kmeans,
    )
    at_points = replace(moments, moments=moments_at(moments.moments, points), names=[p.name for p in points])
    geometry = at_points.output_geometry(args.box, args.voxel_size)
    batch = max(1, min(len(points), MAPS_BUDGET // (8 * geometry.box**3)))
    options = common.transform_options(args, geometry, at_points.order, batch, "reconstruct")
    with atomic_path(args.out_dir, MAPS_FOLDER) as folder:
        for start in range(0, len(points), batch):
            chunk = replace(at_points, moments=at_points.moments[start : start + batch], names=at_points.names[start : start + batch])
            results = chunk.reconstruct(box=args.box, voxel_size=args.voxel_size, progress=True, **options)
            for point, result in zip(points[start : start + batch], results):
                write_map(folder / f"{point.name}.mrc", result.data, result.voxel_size, result.origin)
        with open(folder / "index.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["file", "kind", *(f"z_{k}" for k in range(dataset.n_components))])
            writer.writerows([f"{p.name}.mrc", p.kind, *p.z.tolist()] for p in points)
    print(
        f"wrote {len(points)} maps and index.csv into {args.out_dir}: order {moments.order}, "
        f"box {results[0].data.shape[0]} at {results[0].voxel_size:g} Å"
    )
    return 0
