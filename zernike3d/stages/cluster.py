"""Cluster a 3D Variability job's particles and write subsets that cryoSPARC imports.

DATASET.npz is the bundle of `import`/`preprocess`. With --k, the particles are clustered
(--method kmeans or gmm, scikit-learn) on their latents (--space latent) or on their
per-particle invariants (--space invariants, from --particle-invariants P.zarr: standardised,
then their first 10 principal components). Clusters are numbered from the most populated
down; each centre is snapped to the nearest real particle. Into --out-dir:

  labels.csv        uid, cluster (one row per particle, in the dataset's order)
  populations.csv   cluster, count, fraction
  centres.csv       name, kind, uid, z_0, z_1, ..: the snapped centres (a --points file
                    for `zernike3d reconstruct` and `zernike3d path`)
  selections.csv    name, kind, count, fraction, description: every subset
  latents.png       z_i against z_j, particles coloured by cluster, centres marked (and
                    the points of a reconstruct index.csv given with --index)
  subsets/NAME.cs   the job's original particle rows of each subset, every field unchanged,
  subsets/NAME.csg  and the group file that cryoSPARC's "Import Result Group" job reads

Subsets (written with --subsets for clusters; always for --bins and --range): each cluster
(cluster_NN), --bins K:N (N equal-width bins of z_K, as 3DVA Display's intermediates:
bin_cK_NN) and --range NAME=LOW:HIGH[,..] (z_K or, with --particle-invariants, F_n_l
ranges: range_NN). The rows come from the particles .cs the dataset was imported from (its
provenance), or from --particles-cs; selection is by uid. A .cs holding only uid and the
latents (a job's own output whose passthrough file is not beside it) is refused: its
subsets would lack the images, CTF and poses; --latents-only-subsets writes them anyway,
with a warning. The folder is written whole
(all or nothing) and replaces only an earlier output of this stage.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.stages import common
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET.npz", help="dataset bundle of a 3DVA job (import/preprocess)")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the tables, figure and subsets")
    parser.add_argument("--k", type=int, default=None, help="number of clusters (default: no clustering)")
    parser.add_argument("--method", choices=("kmeans", "gmm"), default="kmeans", help="k-means or a Gaussian mixture")
    parser.add_argument("--space", choices=("latent", "invariants"), default="latent", help="what is clustered")
    parser.add_argument("--particle-invariants", metavar="P.zarr", help="per-particle invariants store (zernike3d invariants)")
    common.add_subset_arguments(parser, "cluster")
    parser.add_argument("--bins", nargs="+", action="extend", default=[], metavar="K:N", help="subsets: N bins along component K")
    parser.add_argument("--range", nargs="+", action="extend", default=[], metavar="NAME=LOW:HIGH[,..]",
                        help="subsets: particles with z_K (or F_n_l) in [LOW, HIGH]; a bound may be left empty")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the clustering")
    parser.add_argument("--index", metavar="index.csv", help="points to mark on the figure (a reconstruct index.csv, e.g. the series)")
    common.add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    from zernike3d.analysis import clusters as cl
    from zernike3d.analysis.latent_plots import index_points, plot_latent_pairs
    from zernike3d.io.atomic import atomic_path, folder_kind
    from zernike3d.io.cryosparc import passthrough_path
    from zernike3d.io.cryosparc_export import particle_table, rows_of_uids, source_particles_cs, write_subset
    from zernike3d.io.dataset import Dataset

    dataset = Dataset.load(args.dataset)
    if dataset.n_components == 0:
        raise InputError(args.dataset, "is a single map: it has no particles to cluster")
    if args.k is None and not args.bins and not args.range:
        raise InputError("--k", "give --k (clusters), --bins or --range: there is nothing to do")
    if args.subsets and args.k is None:
        raise InputError("--subsets", "writes the clusters' particles: give --k")
    particles_cs = args.particles_cs or source_particles_cs(dataset.provenance)
    common.check_outputs([args.dataset, args.particle_invariants, args.index, particles_cs,
                          particles_cs and passthrough_path(particles_cs)], [(args.out_dir, folder_kind("cluster"))])
    latents = dataset.latents.astype(np.float64)
    invariants = _particle_invariants(args, dataset) if args.particle_invariants else None
    if args.space == "invariants" and invariants is None:
        raise InputError("--space invariants", "needs --particle-invariants P.zarr")
    marked = index_points(args.index, dataset.n_components) if args.index else None

    clustering = None
    if args.k is not None:
        features = latents if args.space == "latent" else cl.invariant_features(invariants[1])  # type: ignore[index]  # --space invariants has them (checked above)
        clustering = cl.cluster(features, args.k, args.method, args.seed, args.threads)
    subsets = _selections(args, latents, invariants, clustering)
    table = None
    if any(export for _, _, _, export in subsets):
        table, fmt, dtype = particle_table(particles_cs, args.particles_cs is not None, args.dataset,
                                           args.latents_only_subsets)
        rows = rows_of_uids(table["uid"], dataset.uid, particles_cs)

    with atomic_path(args.out_dir, folder_kind("cluster")) as out:
        if clustering is not None:
            _write_csv(out / "labels.csv", ["uid", "cluster"],
                       zip(dataset.uid.tolist(), clustering.labels.tolist()))
            _write_csv(out / "populations.csv", ["cluster", "count", "fraction"],
                       ([f"cluster_{c:02d}", int(n), f"{f:.6f}"]
                        for c, (n, f) in enumerate(zip(clustering.counts, clustering.fractions))))
            _write_csv(out / "centres.csv", ["name", "kind", "uid", *_z_names(dataset)],
                       ([f"cluster_{c:02d}", "cluster", int(dataset.uid[row]), *latents[row].tolist()]
                        for c, row in enumerate(clustering.snapped)))
        lines = []
        for name, kind, mask, export in subsets:
            count = int(mask.sum())
            lines.append([name, kind, count, f"{count / len(mask):.6f}", _describe(args, name)])
            if export and count:
                write_subset(out / "subsets", name, table, fmt, np.sort(rows[mask]),
                             f"zernike3d cluster of {common.dataset_name(args.dataset)}: {_describe(args, name)}", dtype)
        _write_csv(out / "selections.csv", ["name", "kind", "count", "fraction", "description"], lines)
        centres = ({f"cluster_{c:02d}": latents[row] for c, row in enumerate(clustering.snapped)}
                   if clustering is not None else None)
        plot_latent_pairs(out / "latents.png", latents, f"{common.dataset_name(args.dataset)}: {len(latents)} particles"
                          + (f"\n{_clusters_of(args)}" if clustering else ""),
                          labels=None if clustering is None else clustering.labels, centres=centres,
                          series=marked)
    exported = sum(1 for _, _, mask, export in subsets if export and mask.any())
    print(f"wrote {args.out_dir}: {len(subsets)} subsets of {len(dataset.uid)} particles"
          + (f" ({exported} as cryoSPARC .cs/.csg in subsets/)" if exported else ""))
    return 0


def _selections(args, latents, invariants, clustering):
    """[(name, kind, mask, export)] of every subset asked for."""
    from zernike3d.analysis import clusters as cl

    subsets = []
    if clustering is not None:
        subsets += [(f"cluster_{c:02d}", "cluster", clustering.labels == c, args.subsets)
                    for c in range(len(clustering.counts))]
    for text in args.bins:
        component, bins = cl.parse_bins(text)
        subsets += [(name, "bin", mask, True) for name, mask in cl.component_bins(latents, component, bins).items()]
    columns = {f"z_{k}": latents[:, k] for k in range(latents.shape[1])}
    if invariants is not None:
        nl, values = invariants
        columns.update({f"F_{n}_{l}": values[:, i] for i, (n, l) in enumerate(nl)})
    subsets += [(f"range_{i:02d}", "range", cl.range_selection(text, columns), True)
                for i, text in enumerate(args.range)]
    return subsets


#: how figures and descriptions name the clustering methods and spaces
_METHOD_WORDS = {"kmeans": "k-means", "gmm": "Gaussian-mixture"}
_SPACE_WORDS = {"latent": "the latent coordinates", "invariants": "the per-particle invariants"}


def _clusters_of(args):
    """"4 k-means clusters of the latent coordinates" (figures, selections.csv, .csg)."""
    return f"{args.k} {_METHOD_WORDS[args.method]} clusters of {_SPACE_WORDS[args.space]}"


def _describe(args, name):
    if name.startswith("cluster_"):
        return f"{name}, one of {_clusters_of(args)}"
    if name.startswith("bin_"):
        return f"{name}: bin of z_{name.split('_')[1][1:]} (equal-width bins between its extremes)"
    return f"{name}: {args.range[int(name.split('_')[1])]}"


def _particle_invariants(args, dataset):
    """((n_nl, 2) nl, (P, n_nl) float64 invariants in the dataset's particle order)."""
    from zernike3d.io.cryosparc_export import rows_of_uids
    from zernike3d.io.particle_invariants import read_particle_invariants

    store = read_particle_invariants(args.particle_invariants)
    rows = rows_of_uids(store.uid, dataset.uid, args.particle_invariants)
    return store.nl, np.asarray(store.invariants[:], dtype=np.float64)[rows]


def _z_names(dataset):
    return [f"z_{k}" for k in range(dataset.n_components)]


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
