"""A map from a moments file: the Zernike expansion of one volume, written as MRC.

By default the map has the stored box and voxel size and overlays the decomposed map
(same origin). With --box or --voxel-size the ball keeps its radius in Å and is
centred on voxel box//2 of the new box; the origin is shifted so that it stays in place.
Voxels outside the ball are 0.

With --dataset (a dataset of a 3D Variability job, moments of base, component_0, ..)
the maps base + sum_k z_k component_k at chosen latents z are written into --out-dir,
one MRC each named by what it shows, with DIR/index.csv (file, kind, z_0, z_1, ..):
base.mrc (z = 0) always, and
--particle IDX or uid:UID (particle_index_IDX / particle_uid_UID), --latent z0,z1,..
(latent_NN), --series N (N frames along each component between the --percentiles of its
latents, others at 0: series_cK_fNN), --kmeans K (k-means centres: kmeans_NN, not the
clusters of `zernike3d cluster`) and --points CSV (name, kind, z_0, ..: e.g. cluster
centres or a path, named as listed). These maps are Zernike expansions to --order: base + sum_k z_k component_k of the
moments. The job's volumes are reconstructed once and combined per point, so many
points cost about one reconstruction; with --maps-index (the index.csv of an earlier
run on these moments at the stored box and voxel size, e.g. the workflow's maps/) they
are solved from 1 + K of its maps instead (the same maps to float32 rounding) and
nothing is reconstructed. With --mapspace, each point also gets
mapspace_NAME.mrc, the dataset's own (full-resolution, unfiltered) maps combined the same
way, as 3DVA Display's simple mode does, at the dataset's box and voxel size.
Every series (series_cK_*, path frames NAME_fNN, the centres cluster_NN of --points:
clusters, kmeans_NN of --kmeans: kmeans) gets a ChimeraX script GROUP.py
(mapspace_GROUP.py): `open DIR/series_c0.py` plays it as a volume series over base.mrc in
new model numbers, closing nothing of the session (zernike3d/io/chimerax.py); --movie
records GROUP.mp4 (GROUP_movie.py) where ChimeraX is installed, and says in one line
where it is not.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from zernike3d.analysis.latents import (
    MAPS_BUDGET,
    check_job,
    expansion_label,
    job_volumes_from_maps,
    maps_at_points,
    mapspace_maps,
    select_points,
    transforms_needed,
)
from zernike3d.errors import InputError
from zernike3d.io import chimerax
from zernike3d.io.atomic import atomic_path, folder_kind
from zernike3d.io.dataset import Dataset
from zernike3d.io.mrc import MAP_OUTPUT, write_map
from zernike3d.moments import Moments
from zernike3d.stages import common

if TYPE_CHECKING:
    import argparse

    from zernike3d.io.mrc import MapFile
    from zernike3d.moments import Moments

#: what --out-dir may replace: a folder written by an earlier `reconstruct --out-dir`
MAPS_FOLDER = folder_kind("reconstruct --out-dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("moments", metavar="M.npz", help="moments file")
    parser.add_argument("--out", metavar="MAP.mrc", help="map to write (one volume)")
    parser.add_argument("--order", type=int, default=None, help="highest order used (default: all stored)")
    parser.add_argument("--box", type=int, default=None, help="output box in voxels (default: stored)")
    parser.add_argument("--voxel-size", type=float, default=None, help="output voxel size in Å (default: stored)")
    parser.add_argument("--volume", default="0", help="volume name or index (default: the first)")
    latent = parser.add_argument_group("maps of a 3D Variability job at chosen latents")
    latent.add_argument("--dataset", metavar="dataset.npz", help="dataset with the particles' latents")
    common.add_renamed_option(latent, "--particles", "--dataset")
    latent.add_argument("--out-dir", type=Path, help="folder for the maps and index.csv")
    latent.add_argument("--particle", nargs="+", action="extend", default=[], metavar="IDX|uid:UID", help="particles' maps")
    latent.add_argument("--latent", nargs="+", action="extend", default=[], metavar="z0,z1,..", help="maps at these latents (--latent=-1,2 when the first is negative)")
    latent.add_argument("--series", type=int, metavar="N", help="N frames along each component")
    latent.add_argument("--percentiles", default="5,95", help="range of the series, in %% of the latents (default 5,95)")
    latent.add_argument("--kmeans", type=int, metavar="K", help="maps at K k-means centres of the latents")
    latent.add_argument("--points", metavar="POINTS.csv", help="maps at the points of a CSV (name, kind, z_0, ..): "
                        "centres.csv of `zernike3d cluster`, path.csv of `zernike3d path`")
    latent.add_argument("--maps-index", metavar="index.csv", help="the index.csv of an earlier `zernike3d reconstruct "
                        "--out-dir` of these moments: the job's volumes are solved from its maps where they hold "
                        "them (same order, stored box and voxel size), not rebuilt")
    latent.add_argument("--mapspace", action="store_true", help="also mapspace_NAME.mrc: the dataset's own maps combined "
                        "(full resolution, not Zernike-filtered)")
    latent.add_argument("--movie", action="store_true", help="record NAME.mp4 of each series with ChimeraX, where installed")
    common.add_threads_argument(parser)
    common.add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    outputs = [(args.out_dir, MAPS_FOLDER)] if args.dataset is not None else [(args.out, MAP_OUTPUT)]
    common.check_outputs([args.moments, args.dataset, args.maps_index], outputs)
    moments = Moments.load(args.moments)
    if args.order is not None:
        order = common.parse_order(args.order)
        if order > moments.order:
            raise InputError(args.moments, f"order {order} is above the stored order {moments.order}")
        moments = moments.truncate(order)
    if args.box is not None and args.box < 1:
        raise InputError("--box", f"must be a positive number of voxels, got {args.box}")
    common.parse_voxel_size(args.voxel_size)
    if args.box is not None or args.voxel_size is not None:
        option = "--box" if args.box is not None else "--voxel-size"
        common.require_box_memory(option, moments.output_geometry(args.box, args.voxel_size))
    if args.dataset is not None:
        return write_latent_maps(args, moments)
    if args.out is None:
        raise InputError("--out", "give the map to write (or --dataset and --out-dir for a 3DVA job)")
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


def write_latent_maps(args: argparse.Namespace, moments: Moments) -> int:
    """The --dataset mode: every chosen latent point's map and index.csv, written into
    a temporary folder that replaces --out-dir when all are complete."""
    if args.out_dir is None:
        raise InputError("--out-dir", "give the folder for the maps (with --dataset)")
    dataset = Dataset.load(args.dataset)
    check_job(moments, args.moments, dataset, args.dataset)
    points = select_points(
        dataset, args.dataset, particles=args.particle, latents=args.latent, series=args.series,
        percentiles=args.percentiles, kmeans=args.kmeans, points_csv=args.points,
    )
    geometry = moments.output_geometry(args.box, args.voxel_size)
    job_volumes = volumes_from_index(args, moments) if args.maps_index else None
    batch = max(1, min(transforms_needed(moments, points), MAPS_BUDGET // (8 * geometry.box**3)))
    # the plan builds the basis: only where the volumes are reconstructed
    options = common.transform_options(args, geometry, moments.order, batch, "reconstruct") if job_volumes is None else {}
    rows, label = [], expansion_label(moments)  # the label lets `zernike3d qc` reuse the maps
    with atomic_path(args.out_dir, MAPS_FOLDER) as folder:
        def transform(volumes: Moments) -> list[MapFile]:
            return volumes.reconstruct(box=args.box, voxel_size=args.voxel_size, progress=True, **options)

        for point, result in _quietly(maps_at_points(moments, points, transform, batch, job_volumes)):
            if not np.isfinite(result.data).all():
                raise InputError("--latent" if point.name.startswith("latent_") else args.points or args.dataset,
                                 f"the map at point {point.name} (z = {', '.join(f'{v:g}' for v in point.z)}) would not be "
                                 "finite in float32: latents far too large")
            write_map(folder / f"{point.name}.mrc", result.data, result.voxel_size, result.origin, labels=[label])
            rows.append([f"{point.name}.mrc", point.kind, *point.z.tolist()])
            if point.kind == "base":
                base, level = result, chimerax.contour_level(result.data)
        scripts = chimerax.write_scripts(folder, [p.name for p in points], [p.kind for p in points], "base.mrc", level)
        if args.mapspace:
            for point, data in mapspace_maps(dataset, points):
                write_map(folder / f"mapspace_{point.name}.mrc", data, dataset.voxel_size, dataset.origin)
                rows.append([f"mapspace_{point.name}.mrc", point.kind, *point.z.tolist()])
            scripts += chimerax.write_scripts(folder, [p.name for p in points], [p.kind for p in points],
                                              "mapspace_base.mrc", chimerax.contour_level(dataset.maps[0]), prefix="mapspace_")
        with open(folder / "index.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["file", "kind", *(f"z_{k}" for k in range(dataset.n_components))])
            writer.writerows(rows)
        if args.movie:
            for script in scripts:
                why_not = chimerax.record_movie(folder / script.replace(".py", "_movie.py"))
                if why_not:
                    print(f"zernike3d reconstruct: {why_not}")
    print(
        f"wrote {len(rows)} maps, index.csv and {len(scripts)} ChimeraX scripts into {args.out_dir}: "
        f"order {moments.order}, box {base.data.shape[0]} at {base.voxel_size:g} Å"
        + (f"; mapspace_*.mrc: the dataset's maps combined, box {dataset.box} at {dataset.voxel_size:g} Å" if args.mapspace else "")
    )
    return 0


def volumes_from_index(args: argparse.Namespace, moments: Moments) -> np.ndarray | None:
    """The job's volumes (1 + K, N, N, N) float32 solved from the maps of --maps-index
    (:func:`~zernike3d.analysis.latents.job_volumes_from_maps`), or None where they cannot
    give them or another grid is asked for (--box, --voxel-size); one line says which."""
    from zernike3d.io.maps_index import read_maps_index

    if args.box is not None or args.voxel_size is not None:
        volumes, why_not = None, "--box or --voxel-size asks for another grid than theirs"
    else:
        volumes, why_not = job_volumes_from_maps(moments, read_maps_index(args.maps_index))
    if volumes is None:
        print(f"reconstructing the job's volumes: the maps of {args.maps_index} cannot give them ({why_not})")
    else:
        print(f"the job's {len(volumes)} volumes taken from the maps of {args.maps_index} (not rebuilt)")
    return volumes


def _quietly(items):
    """``items`` (an iterator) advanced with numpy's overflow warnings off: a map that
    overflows float32 is refused in one line by the caller, not warned about."""
    while True:
        with np.errstate(over="ignore", invalid="ignore"):
            item = next(items, None)
        if item is None:
            return
        yield item
