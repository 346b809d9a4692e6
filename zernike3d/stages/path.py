"""Paths between states of a 3D Variability job through the particles' density.

DATASET.npz is the bundle of `import`/`preprocess`. Each --between A B gives a path from
state A to state B, where a state is a cluster (cluster_NN, from --clusters, the
centres.csv of `zernike3d cluster`), a particle (uid:UID or index:ROW) or a latent point
(z:z0,z1,..; the particle nearest to it is used). The path is the shortest one on the
k-nearest-neighbour graph of the particles' latents (--neighbours; --density prefers
dense regions), resampled to --frames evenly spaced points (zernike3d/analysis/paths.py).

Writes --out (a CSV: name, kind, path, frame, z_0, z_1, ..; frames named PATH_fNN with
PATH = path_A_B) for `zernike3d reconstruct --points`, and with --plot a figure of z_i
against z_j with the particles' density, the paths, the cluster centres (--clusters) and
the points of a reconstruct index.csv (--index, e.g. the series).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from zernike3d.analysis.paths import check_counts
from zernike3d.errors import InputError
from zernike3d.stages import common
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET.npz", help="dataset bundle of a 3DVA job (import/preprocess)")
    parser.add_argument("--between", nargs=2, action="append", required=True, metavar=("A", "B"),
                        help="a path from state A to state B: cluster_NN, uid:UID, index:ROW or z:z0,z1,..")
    parser.add_argument("--clusters", metavar="centres.csv", help="cluster centres (zernike3d cluster)")
    parser.add_argument("--frames", type=int, default=10, help="points along each path")
    parser.add_argument("--neighbours", type=int, default=10, help="neighbours of each particle in the graph")
    parser.add_argument("--density", action="store_true", help="weight edges by the local spacing of the particles")
    parser.add_argument("--out", type=Path, required=True, metavar="PATHS.csv", help="the points along every path")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="latent-space figure with the paths drawn")
    parser.add_argument("--index", metavar="index.csv", help="points to mark on the figure (a reconstruct index.csv)")


def run(args: argparse.Namespace) -> int:
    from zernike3d.analysis.latent_plots import index_points, plot_latent_pairs
    from zernike3d.analysis.paths import particle_path, resample
    from zernike3d.io.atomic import atomic_paths, csv_kind
    from zernike3d.io.dataset import Dataset
    from zernike3d.analysis.latents import points_from_csv

    dataset = Dataset.load(args.dataset)
    if dataset.n_components == 0:
        raise InputError(args.dataset, "is a single map: it has no particles")
    columns = ["name", "kind", "path", "frame", *(f"z_{k}" for k in range(dataset.n_components))]
    outputs = [(args.out, csv_kind(columns[:4], "a paths table of `zernike3d path`"))]
    if args.plot:
        from zernike3d.plots import FIGURE_OUTPUT

        outputs.append((args.plot, FIGURE_OUTPUT))
    if args.out.suffix.lower() != ".csv":
        raise InputError(args.out, "the paths table is a CSV: give a name ending in .csv")
    common.check_outputs([args.dataset, args.clusters, args.index], outputs)
    check_counts(args.frames, args.neighbours, len(dataset.uid))
    latents = dataset.latents.astype(np.float64)
    centres = {p.name: p.z for p in points_from_csv(args.clusters, dataset.n_components, "--clusters")} if args.clusters else {}
    rows, tracks = [], {}
    width = max(2, len(str(args.frames - 1)))
    for a, b in args.between:
        start, end = (_state_row(s, dataset, latents, centres) for s in (a, b))
        name = f"path_{_label(a)}_{_label(b)}"
        along = resample(latents[particle_path(latents, start, end, args.neighbours, args.density)], args.frames)
        tracks[name] = along
        rows += [[f"{name}_f{f:0{width}d}", "path", name, f, *z.tolist()] for f, z in enumerate(along)]
    if len(tracks) != len(args.between):
        raise InputError("--between", "the same path is asked for twice")
    series = index_points(args.index, dataset.n_components) if args.index else None
    with atomic_paths(outputs) as tmps:
        with open(tmps[0], "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
        if args.plot:
            plot_latent_pairs(tmps[1], latents, f"{common.dataset_name(args.dataset)}:\npaths through the particles",
                              centres=centres, series=series, paths=tracks)
    print(f"wrote {args.out}: {len(tracks)} path(s) of {args.frames} frames" + (f", and {args.plot}" if args.plot else ""))
    return 0


def _state_row(text, dataset, latents, centres):
    """Row of the particle standing for a state (see the module docstring)."""
    from zernike3d.analysis.clusters import nearest_rows

    if text in centres:
        return int(nearest_rows(latents, centres[text][None])[0])
    if text.startswith("cluster_"):
        raise InputError("--between", f"{text}: no such cluster" + ("" if centres else " (give --clusters centres.csv)"))
    kind, _, value = text.partition(":")
    if kind == "z":
        try:
            z = np.array([float(v) for v in value.split(",")])
        except ValueError:
            raise InputError("--between", f"expected z:z0,z1,.., got {text!r}") from None
        if z.shape != (latents.shape[1],) or not np.isfinite(z).all():
            raise InputError("--between", f"{text!r} has {z.size} values; the job has {latents.shape[1]} components")
        return int(nearest_rows(latents, z[None])[0])
    if kind not in ("uid", "index"):
        raise InputError("--between", f"{text!r} is not cluster_NN, uid:UID, index:ROW or z:z0,z1,..")
    try:
        number = int(value)
    except ValueError:
        raise InputError("--between", f"expected {kind}:NUMBER, got {text!r}") from None
    if kind == "index":
        if not 0 <= number < len(latents):
            raise InputError("--between", f"particle index {number} out of range 0..{len(latents) - 1}")
        return number
    found = np.flatnonzero(dataset.uid == np.uint64(number)) if 0 <= number < 2**64 else []
    if len(found) == 0:
        raise InputError("--between", f"no particle has uid {number}")
    return int(found[0])


def _label(text):
    """A state as part of a file name: cluster_02 -> cluster_02, uid:5 -> uid5,
    z:0.5,-1 -> z0.5_-1."""
    return text.replace(":", "").replace(",", "_")

