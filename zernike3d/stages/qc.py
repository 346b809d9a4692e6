"""Quality control: how well the moments reproduce the maps, with figures.

Each map of the dataset and its reconstruction from the moments (all stored orders) are
multiplied by the ball's mask (raised-cosine edge --mask-edge-voxels voxels wide, inside
the sphere) and compared by Fourier shell correlation, zero-padded for at least 64
shells. The threshold is 0.5 (a map against a model of it; 0.143 is for independent half
maps and does not apply). With --maps-index, the expansions are not rebuilt where the
maps of `zernike3d reconstruct` already hold them (at the stored box, voxel size and
order: :func:`zernike3d.analysis.latents.job_volumes_from_maps`, one linear solve from
1 + K of its maps); otherwise, and for a single map, they are reconstructed. Figures are
titled with --name (the dataset). Files written into --out-dir:

* fsc.csv: one row per shell: shell, frequency_per_A (1/Å), resolution_A (Å), then the
  FSC of each map (columns named as the volumes);
* fsc_resolution.csv: map, resolution_at_0.5_A (interpolated crossing in Å; "not
  reached" when the FSC stays above 0.5 up to Nyquist), expected_resolution_A (what the
  order reaches on a map with detail to Nyquist, :mod:`zernike3d.maths.resolution`), order;
* fsc.png: the curves, the expected resolution marked, faint beyond what the order holds;
* maps.png: central xy/xz/yz slices of each map beside its expansion;
* invariants.png: F_nl of each volume, n against l, on one log scale for all volumes;
* with --particle-invariants: particle_invariants_pca.png, the per-particle invariants
  (centred, not standardised: every invariant keeps its own size, so the many small,
  noisy high-order ones do not outweigh the large ones; a random subsample if there are
  many) on their first two principal components (:func:`zernike3d.analysis.pca.principal_components`),
  coloured by each latent coordinate, with the rank (Spearman) correlation of each PC
  with each latent;
* with --maps-index (the index.csv of `zernike3d reconstruct`): series_maps.png, the
  central xy slice of every listed map (series, clusters, particles, points; only that
  slice is read from each file) and its difference from the base map;
* summary.html: the FSC 0.5 table and the FSC, map-slice and PCA figures in one
  self-contained page (figures inlined, ASCII only), which the workflow's report shows
  on its first page and which opens on its own in a browser.

All are written into a temporary folder that replaces --out-dir only when every one is
complete: all or none.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, csv_kind, folder_kind
from zernike3d.io.dataset import Dataset
from zernike3d.io.summary_html import html_figure, html_table, write_ascii_html
from zernike3d.maths.fsc import (
    MODEL_THRESHOLD,
    FscCurve,
    ball_mask,
    fourier_shell_correlation,
    oversampling_for,
)
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.resolution import expected_resolution
from zernike3d.moments import Moments
from zernike3d.stages import common

#: what --out-dir may replace: a folder written by an earlier `qc`
QC_FOLDER = folder_kind("qc")
#: width of the FSC mask's soft edge in voxels, when not given
DEFAULT_MASK_EDGE_VOXELS = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="prep.npz", help="dataset the moments were taken of")
    parser.add_argument("--moments", required=True, metavar="M.npz", help="moments of the dataset's maps")
    parser.add_argument("--particle-invariants", metavar="P.zarr", help="per-particle invariants (optional)")
    parser.add_argument("--maps-index", metavar="index.csv", help="maps of `zernike3d reconstruct` to show (optional)")
    parser.add_argument("--name", default=None, help="dataset name for the figure titles (default: the --dataset file name)")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder for the tables and figures")
    parser.add_argument("--mask-edge-voxels", type=common.at_least(float, 0.0), default=None, metavar="VOXELS",
                        help=f"soft edge of the FSC's ball mask, in voxels (0: hard; default {DEFAULT_MASK_EDGE_VOXELS:g})")
    parser.add_argument("--mask-edge", type=common.at_least(float, 0.0), default=None, metavar="VOXELS",
                        dest="deprecated_mask_edge",
                        help="deprecated spelling of --mask-edge-voxels (voxels here, Å in preprocess); "
                             "removed in the next release")
    parser.add_argument("--pca-sample", type=int, default=20000, help="particles drawn for the PCA plot")
    common.add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    from zernike3d import plots
    from zernike3d.analysis.pca import rank_correlations
    from zernike3d.io.maps_index import read_maps_index
    from zernike3d.io.particle_invariants import read_particle_invariants

    common.check_outputs([args.dataset, args.moments, args.particle_invariants], [(args.out_dir, QC_FOLDER)])
    mask_edge = mask_edge_voxels(args)
    dataset = Dataset.load(args.dataset)
    moments = Moments.load(args.moments)
    check_same_maps(dataset, args.dataset, moments, args.moments)
    store = None
    if args.particle_invariants:
        store = read_particle_invariants(args.particle_invariants)
        if not np.array_equal(store.uid, dataset.uid):
            raise InputError(args.particle_invariants, f"its particles (uid) are not those of {args.dataset}")

    name = args.name or common.dataset_name(args.dataset)
    index = read_maps_index(args.maps_index) if args.maps_index else None
    expansions = job_expansions(moments, index, args.threads)
    curves = map_fsc(dataset.maps, expansions, moments.geometry, moments.names, mask_edge, args.threads or -1)
    expected = expected_resolution(moments.order, moments.geometry.radius)
    written = ["fsc.csv", "fsc_resolution.csv", "fsc.png", "maps.png", "invariants.png", "summary.html"]
    with atomic_path(args.out_dir, QC_FOLDER) as folder:
        write_fsc_tables(folder, curves, moments.order, expected)
        plots.plot_fsc(folder / "fsc.png", curves,
                       f"{name}: maps against their order-{moments.order} expansions (ball-masked)",
                       moments.order, expected)
        plots.plot_map_slices(
            folder / "maps.png",
            [(volume, [("map", original), (f"order {moments.order}", expansion)])
             for volume, original, expansion in zip(moments.names, dataset.maps, expansions)],
            f"{name}: central slices of each map and of its expansion (zero outside the ball)",
            dataset.voxel_size,
        )
        del expansions
        plots.plot_invariant_maps(
            folder / "invariants.png", moments.invariants(), moments.nl, moments.names,
            f"{name}: Zernike invariants F_nl (order {moments.order})",
        )
        if store is not None:
            rows, values = store.sample(args.pca_sample)
            scores, explained = pca_scores(values, args.particle_invariants)
            correlations = rank_correlations(scores, dataset.latents[rows])
            plots.plot_invariant_pca(
                folder / "particle_invariants_pca.png", scores, explained, dataset.latents[rows],
                [f"latent z_{k} (component_{k})" for k in range(dataset.n_components)], correlations,
                f"{name}: per-particle invariants (centred) on their first two principal components, "
                f"{len(rows):,} of {len(store.uid):,} particles",
            )
            written.append("particle_invariants_pca.png")
        if index is not None:
            plots.plot_map_slices(folder / "series_maps.png", series_rows(index),
                                  f"{name}: maps rebuilt from the moments (central xy slice) and their "
                                  "difference from the base map", index_voxel_size(index), planes=("xy",))
            written.append("series_maps.png")
        write_summary(folder, name, SUMMARY_FIGURES)
    for volume, curve in curves.items():
        print(f"{volume}: FSC {MODEL_THRESHOLD:g} at {plots.resolution_text(curve.resolution(MODEL_THRESHOLD))} "
              f"(expected for order {moments.order}: {expected:.2f} Å)")
    if store is not None:
        for k, (pc1, pc2) in enumerate(correlations.T):
            print(f"latent z_{k}: Spearman correlation with PC 1 {pc1:+.2f}, PC 2 {pc2:+.2f}")
    print(f"wrote {', '.join(written)} into {args.out_dir}")
    return 0


def mask_edge_voxels(args: argparse.Namespace) -> float:
    """The FSC mask's edge in voxels, from --mask-edge-voxels or its deprecated spelling
    --mask-edge (one line on stderr), else :data:`DEFAULT_MASK_EDGE_VOXELS`."""
    if args.deprecated_mask_edge is not None:
        if args.mask_edge_voxels is not None:
            raise InputError("--mask-edge", "give --mask-edge-voxels alone (--mask-edge is its deprecated spelling)")
        print("zernike3d qc: warning: --mask-edge is deprecated here (it is in voxels for qc, in Å for preprocess): "
              "use --mask-edge-voxels; the old spelling goes in the next release", file=sys.stderr)
        return args.deprecated_mask_edge
    return DEFAULT_MASK_EDGE_VOXELS if args.mask_edge_voxels is None else args.mask_edge_voxels


def job_expansions(moments: Moments, index: list | None, threads: int | None) -> np.ndarray:
    """The expansions (V, N, N, N) float32 [z, y, x] of every volume of ``moments`` on
    their own grid: solved from the maps of ``index`` (the rows of a reconstruct
    index.csv) where they hold them, else reconstructed (saying why in one line)."""
    from zernike3d.analysis.latents import job_volumes_from_maps
    from zernike3d.maths.transform import reconstruct

    if index is not None and len(moments.names) > 1:
        volumes, why_not = job_volumes_from_maps(moments, index)
        if volumes is not None:
            print(f"expansions of the {len(moments.names)} volumes taken from the maps of the index (not rebuilt)")
            return volumes
        print(f"reconstructing the expansions: the index's maps cannot give them ({why_not})")
    return reconstruct(moments.moments, moments.geometry, moments.order, threads=threads).astype(np.float32)


def pca_scores(values: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores (S, 2) of the per-particle invariants ``values`` (S, n) on their first two
    principal components, and the fractions of the variance (2,) along them: centred, not
    standardised (dividing each invariant by its spread would give the many small, noisy
    high-order invariants the weight of the large low-order ones, so that noise, not
    conformation, sets the components). :class:`InputError` naming ``source`` when fewer
    than 3 particles or 2 varying invariants leave no plane to show."""
    from zernike3d.analysis.pca import principal_components

    if len(values) < 3 or np.count_nonzero(np.ptp(values, axis=0) > 0) < 2:  # ptp: no copy of the rows
        raise InputError(source, "a PCA needs at least 3 particles and 2 invariants that vary between them")
    return principal_components(values, 2)


def check_same_maps(dataset: Dataset, dataset_source: str, moments: Moments, moments_source: str) -> None:
    """Raise :class:`InputError` unless the moments are of the dataset's own maps (shape,
    then fingerprints: :func:`zernike3d.analysis.latents.check_fingerprints`)."""
    from zernike3d.analysis.latents import check_fingerprints

    if len(moments.names) != len(dataset.names):
        raise InputError(moments_source, f"has {len(moments.names)} volumes but {dataset_source} has {len(dataset.names)} maps")
    if moments.box != dataset.box or not np.isclose(moments.voxel_size, dataset.voxel_size, rtol=1e-5):
        raise InputError(
            moments_source,
            f"box {moments.box} at {moments.voxel_size:g} Å differs from {dataset_source} "
            f"(box {dataset.box} at {dataset.voxel_size:g} Å)",
        )
    check_fingerprints(moments, moments_source, dataset, dataset_source)


def map_fsc(maps: np.ndarray, expansions: np.ndarray, geometry: BallGeometry, names: list[str],
            mask_edge: float, threads: int | None = None) -> dict[str, FscCurve]:
    """{volume name: FscCurve} of each map against its expansion, both multiplied by the
    ball's mask (:func:`zernike3d.maths.fsc.ball_mask`, a soft edge ``mask_edge`` voxels
    wide, made once), zero-padded to at least 64 shells; FFTs on ``threads`` threads (-1: all cores)."""
    oversample = oversampling_for(geometry.box)
    mask = ball_mask(geometry, mask_edge)
    return {
        name: fourier_shell_correlation(mask * original, mask * expansion, geometry.voxel_size, oversample, threads)
        for name, original, expansion in zip(names, maps, expansions)
    }


def write_fsc_tables(directory: Path, curves: dict[str, FscCurve], order: int, expected: float) -> None:
    """fsc.csv (curves) and fsc_resolution.csv (crossings of 0.5, and the resolution that
    ``order`` is expected to reach, ``expected`` Å) into ``directory``."""
    first = next(iter(curves.values()))
    with np.errstate(divide="ignore"):
        resolution = 1.0 / first.frequency
    shells = [
        [shell, frequency, res, *(curve.fsc[shell] for curve in curves.values())]
        for shell, (frequency, res) in enumerate(zip(first.frequency, resolution))
    ]
    _write_csv(directory / "fsc.csv", ["shell", "frequency_per_A", "resolution_A", *curves], shells)
    crossings = [
        [name, _crossing_text(curve.resolution(MODEL_THRESHOLD)), f"{expected:.4f}", order]
        for name, curve in curves.items()
    ]
    header = ["map", f"resolution_at_{MODEL_THRESHOLD:g}_A", "expected_resolution_A", "order"]
    _write_csv(directory / "fsc_resolution.csv", header, crossings)


#: summary.html's figures, with their captions, where the folder has them
SUMMARY_FIGURES = (
    ("fsc.png", "FSC of each map against its expansion (ball-masked)"),
    ("maps.png", "central slices of each map beside its expansion"),
    ("particle_invariants_pca.png", "per-particle invariants on their first two principal components"),
)


def write_summary(directory: Path, name: str, figures: tuple[tuple[str, str], ...]) -> None:
    """``directory/summary.html``: the table of fsc_resolution.csv and those of
    ``figures`` ((file name, caption)) that ``directory`` holds, as PNG data URIs. ASCII
    only (:func:`~zernike3d.io.summary_html.write_ascii_html`)."""
    import html

    with open(directory / "fsc_resolution.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    parts = [f"<div class=\"zernike3d-qc\"><p><b>{html.escape(name)}</b>: FSC 0.5 of each map against its "
             "expansion, and the resolution the order is expected to reach (&#197;)</p>", html_table(header, rows)]
    parts += [html_figure(directory / file_name, f"{name}: {caption}") for file_name, caption in figures
              if (directory / file_name).is_file()]
    parts.append("</div>")
    write_ascii_html(directory / "summary.html", parts)


def index_voxel_size(index: list) -> float:
    """The voxel size (Å) of the maps of a reconstruct index (its first map's header:
    they share it)."""
    from zernike3d.io.mrc import read_header

    return float(read_header(index[0].path).voxel_size[0])


def series_rows(index: list) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """Rows for :func:`zernike3d.plots.plot_map_slices` from the rows
    (:class:`~zernike3d.io.maps_index.IndexedMap`) of a reconstruct index.csv: the base
    map, then per group of maps (each series, the clusters, ...; the group is the file
    name without its frame suffix, series_c0_f03 -> series_c0) one row of the maps and
    one of their differences from the base map (when the index lists one). Only each
    map's central xy section is read (:func:`zernike3d.io.mrc.read_central_section`)."""
    import re

    from zernike3d.io.mrc import read_central_section

    sections = [(entry.kind, re.sub(r"_f\d+$", "", entry.path.stem), read_central_section(entry.path))
                for entry in index]
    bases = [data for kind, _, data in sections if kind == "base"]
    groups: dict[str, list[np.ndarray]] = {}
    for kind, group, data in sections:
        if kind == "cluster":  # kmeans_NN (reconstruct --kmeans) or cluster_NN (zernike3d cluster)
            group = re.sub(r"_\d+$", "", group)
        if kind != "base":
            groups.setdefault(group if kind in ("series", "cluster") else kind, []).append(data)
    rows = [("base", [("", bases[0])])] if bases else []
    for group, maps in groups.items():
        rows.append((group, [(f"#{i}", m) for i, m in enumerate(maps)]))
        if bases:
            rows.append((f"{group} − base", [(f"#{i}", m - bases[0]) for i, m in enumerate(maps)]))
    return rows


def _crossing_text(resolution: float | None) -> str:
    return "not reached" if resolution is None else f"{resolution:.4f}"


def _write_csv(path: Path, header: list, rows: list) -> None:
    kind = csv_kind(header[:3], "a QC table written by zernike3d")  # the columns before the volume names
    with atomic_path(path, kind) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
