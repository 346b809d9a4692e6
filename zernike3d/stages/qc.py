"""Quality control: how well the moments reproduce the maps, with figures.

Each map of the dataset and its reconstruction from the moments (all stored orders) are
multiplied by the ball's mask (raised-cosine edge --mask-edge voxels wide, inside the
sphere) and compared by Fourier shell correlation. Files written into --out-dir:

* fsc.csv: one row per shell: shell, frequency_per_A (1/Å), resolution_A (Å), then the
  FSC of each map (columns named as the volumes);
* fsc_resolution.csv: map, resolution_at_0.5_A, resolution_at_0.143_A (interpolated
  crossing in Å; "not reached" when the FSC stays above the threshold up to Nyquist);
* fsc.png: the curves; invariants.png: F_nl of each volume, n against l, log scale;
* with --particle-invariants: particle_invariants_pca.png, the per-particle invariants
  (standardised, a random subsample if there are many) on their first two principal
  components, coloured by each latent coordinate.

All are written into a temporary folder that replaces --out-dir only when every one is
complete: all or none.
"""

import csv
from pathlib import Path

import numpy as np

from zernike3d import plots
from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, csv_kind, folder_kind
from zernike3d.io.dataset import Dataset
from zernike3d.io.particle_invariants import read_particle_invariants
from zernike3d.maths.fsc import FSC_THRESHOLDS, ball_mask, fourier_shell_correlation
from zernike3d.maths.transform import reconstruct
from zernike3d.moments import Moments
from zernike3d.stages import common

#: what --out-dir may replace: a folder written by an earlier `qc`
QC_FOLDER = folder_kind("qc")


def add_arguments(parser):
    parser.add_argument("--dataset", required=True, metavar="prep.npz", help="dataset the moments were taken of")
    parser.add_argument("--moments", required=True, metavar="M.npz", help="moments of the dataset's maps")
    parser.add_argument("--particle-invariants", metavar="P.zarr", help="per-particle invariants (optional)")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder for the tables and figures")
    parser.add_argument("--mask-edge", type=float, default=3.0, help="soft edge of the ball mask, voxels (0: hard)")
    parser.add_argument("--pca-sample", type=int, default=20000, help="particles drawn for the PCA plot")
    common.add_threads_argument(parser)


def run(args):
    common.check_outputs([args.dataset, args.moments, args.particle_invariants], [(args.out_dir, QC_FOLDER)])
    dataset = Dataset.load(args.dataset)
    moments = Moments.load(args.moments)
    check_same_maps(dataset, args.dataset, moments, args.moments)
    store = None
    if args.particle_invariants:
        store = read_particle_invariants(args.particle_invariants)
        if not np.array_equal(store.uid, dataset.uid):
            raise InputError(args.particle_invariants, f"its particles (uid) are not those of {args.dataset}")

    curves = map_fsc(dataset, moments, args.mask_edge, args.threads)
    with atomic_path(args.out_dir, QC_FOLDER) as folder:
        write_fsc_tables(folder, curves)
        title = f"{Path(args.moments).name}: maps against their order-{moments.order} expansions (ball-masked)"
        plots.plot_fsc(folder / "fsc.png", curves, title)
        plots.plot_invariant_maps(
            folder / "invariants.png", moments.invariants(), moments.nl, moments.names,
            f"Zernike invariants F_nl of {Path(args.moments).name}",
        )
        if store is not None:
            rows, values = store.sample(args.pca_sample)
            scores, explained = principal_components(values, args.particle_invariants)
            plots.plot_invariant_pca(
                folder / "particle_invariants_pca.png", scores, explained, dataset.latents[rows],
                [f"latent z_{k} (component_{k})" for k in range(dataset.n_components)],
                f"Per-particle invariants (standardised) on their first two principal components, "
                f"{len(rows):,} of {len(store.uid):,} particles",
            )
    for name, curve in curves.items():
        print(f"{name}: " + ", ".join(f"FSC {t:g} at {plots.resolution_text(curve.resolution(t))}" for t in FSC_THRESHOLDS))
    print(f"wrote fsc.csv, fsc_resolution.csv, fsc.png, invariants.png{', particle_invariants_pca.png' if store else ''} "
          f"into {args.out_dir}")
    return 0


def check_same_maps(dataset, dataset_source, moments, moments_source):
    """Raise :class:`InputError` unless the moments are of maps shaped like the dataset's."""
    if len(moments.names) != len(dataset.names):
        raise InputError(moments_source, f"has {len(moments.names)} volumes but {dataset_source} has {len(dataset.names)} maps")
    if moments.box != dataset.box or not np.isclose(moments.voxel_size, dataset.voxel_size, rtol=1e-5):
        raise InputError(
            moments_source,
            f"box {moments.box} at {moments.voxel_size:g} Å differs from {dataset_source} "
            f"(box {dataset.box} at {dataset.voxel_size:g} Å)",
        )


def map_fsc(dataset, moments, mask_edge, threads):
    """{volume name: FscCurve} of each ball-masked map against its expansion."""
    geometry = moments.geometry
    expansions = reconstruct(moments.moments, geometry, moments.order, threads=threads)
    mask = ball_mask(geometry, mask_edge)
    return {
        name: fourier_shell_correlation(mask * original, mask * expansion, geometry.voxel_size)
        for name, original, expansion in zip(moments.names, dataset.maps, expansions)
    }


def write_fsc_tables(directory, curves):
    """fsc.csv (curves) and fsc_resolution.csv (crossings) into ``directory``."""
    first = next(iter(curves.values()))
    with np.errstate(divide="ignore"):
        resolution = 1.0 / first.frequency
    shells = [
        [shell, frequency, res, *(curve.fsc[shell] for curve in curves.values())]
        for shell, (frequency, res) in enumerate(zip(first.frequency, resolution))
    ]
    _write_csv(directory / "fsc.csv", ["shell", "frequency_per_A", "resolution_A", *curves], shells)
    crossings = [
        [name, *(_crossing_text(curve.resolution(t)) for t in FSC_THRESHOLDS)] for name, curve in curves.items()
    ]
    header = ["map", *(f"resolution_at_{t:g}_A" for t in FSC_THRESHOLDS)]
    _write_csv(directory / "fsc_resolution.csv", header, crossings)


def principal_components(values, source):
    """Scores on the first two principal components of the standardised columns of
    ``values`` (S, n): (scores (S, 2), explained variance fractions (2,))."""
    x = np.asarray(values, dtype=np.float64)
    spread = x.std(axis=0)
    varying = spread > 0
    if varying.sum() < 2 or len(x) < 3:
        raise InputError(source, "a PCA needs at least 3 particles and 2 invariants that vary between them")
    x = (x[:, varying] - x[:, varying].mean(axis=0)) / spread[varying]
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :2] * s[:2], s[:2] ** 2 / np.sum(s**2)


def _crossing_text(resolution):
    return "not reached" if resolution is None else f"{resolution:.4f}"


def _write_csv(path, header, rows):
    kind = csv_kind(header[:3], "a QC table written by zernike3d")  # the columns before the volume names
    with atomic_path(path, kind) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
