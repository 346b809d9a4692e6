"""Compare 3D Variability jobs: volumes, latent spaces and particle landscapes, after alignment onto the first.

Each RESULTS folder is one dataset as the workflow writes it (results/<name>/:
preprocessed.npz, or dataset.npz without preprocessing; moments.npz;
particle_invariants.zarr; :mod:`zernike3d.analysis.results_folder`); the folder name is the
dataset's name and the first is the reference. All must share the ball radius in Å; they
are compared up to their common order. Every other job is placed in the reference's frame
(rotation, shift and hand) and all its volumes are expressed there, about the reference's
centre, by decomposing the job's own maps again
(:func:`zernike3d.analysis.alignment.express_in_reference_frame`). With --frame family
(the default) the frame is the molecule's: every particle's map of the job is placed in
the reference's family of maps (base + components), whatever the populations, and a
symmetry of the base is broken by the components (:mod:`zernike3d.analysis.frame`);
--frame base aligns the two base maps as `zernike3d align` does (biased when the
populations differ: a base is its particles' mean). The analyses are those of
:mod:`zernike3d.analysis.comparison`; the files written into --out-dir (alignments,
volume distances, per-order correlations, latent maps, landscape.npz, cluster
populations, nearest neighbours, free energies, their figures and summary.html) are
described in :mod:`zernike3d.io.comparison_files`. The folder is written as a whole,
replacing only an earlier output of this stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from zernike3d.analysis.comparison import MAX_BOOTSTRAP, CompareSettings
from zernike3d.errors import InputError
from zernike3d.stages import common


#: the library's defaults, the options' defaults
DEFAULTS = CompareSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="results folders of the datasets (first: the reference)")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder for the tables, figures and landscape")
    parser.add_argument("--axes", type=int, default=DEFAULTS.axes, help="joint principal axes of the landscape")
    parser.add_argument("--clusters", type=int, default=DEFAULTS.clusters, help="joint k-means clusters")
    parser.add_argument("--bootstrap", type=int, default=DEFAULTS.bootstrap, help="bootstrap resamplings of the cluster populations")
    parser.add_argument("--fit-particles", type=int, default=DEFAULTS.fit_particles, help="particles per dataset used to fit the joint axes")
    parser.add_argument("--match-particles", type=int, default=DEFAULTS.match_particles,
                        help="particles per dataset matched to their nearest reference particle (a random sample)")
    parser.add_argument("--align-order", type=int, default=DEFAULTS.align_order,
                        help="order of the alignment's fit (at most the datasets' common order); all volumes are then "
                        "compared at the common order")
    parser.add_argument("--frame", choices=("family", "base"), default=DEFAULTS.frame,
                        help="how each job's frame is found: family: every particle's map placed in the reference's "
                        "family of maps (base + components), whatever the populations; base: the base maps aligned "
                        "(biased when the populations differ: a base is the particles' mean)")
    parser.add_argument("--temperature", type=float, default=DEFAULTS.temperature,
                        help="temperature (K) of the sample before vitrification, for free energies in kcal/mol")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed of the samples, k-means and bootstrap")


def run(args: argparse.Namespace) -> int:
    from zernike3d.analysis.compare_figures import plot_comparison
    from zernike3d.analysis.comparison import CompareSettings, compare_jobs
    from zernike3d.analysis.frame import symmetry_note
    from zernike3d.io.atomic import atomic_path, folder_kind
    from zernike3d.io.comparison_files import (
        write_comparison_summary,
        write_comparison_tables,
    )
    from zernike3d.analysis.results_folder import read_results

    check_options(args)
    common.check_outputs(args.results, [(args.out_dir, folder_kind("compare"))])
    results = [read_results(folder) for folder in args.results]
    check_comparable(results, args.results)
    total = sum(len(r.uid) for r in results)
    if args.clusters >= total:
        raise InputError("--clusters", f"{args.clusters} clusters for {total} particles in all: ask for fewer")
    settings = CompareSettings(frame=args.frame, align_order=args.align_order, axes=args.axes, clusters=args.clusters,
                               bootstrap=args.bootstrap, fit_particles=args.fit_particles,
                               match_particles=args.match_particles, temperature=args.temperature, seed=args.seed)
    comparison = compare_jobs(results, settings)
    for name, alignment in comparison.alignments.items():
        correlation = alignment.correlation if alignment.hand == "same" else alignment.mirror_correlation
        what = "family correlation" if alignment.frame is not None else "correlation"
        print(f"{name}: aligned onto {results[0].name} ({args.frame}): {what} {correlation:.4f}, "
              f"hand {alignment.hand}, shift {np.linalg.norm(alignment.shift):.2f} Å")
        note = symmetry_note(alignment)
        if note:
            print(note)
    names = [r.name for r in results]
    with atomic_path(args.out_dir, folder_kind("compare")) as tmp:
        write_comparison_tables(Path(tmp), names, comparison)
        plot_comparison(Path(tmp), names, comparison, args.temperature)
        write_comparison_summary(Path(tmp), names, comparison, args.frame, args.temperature)
    print(f"wrote alignments, volume distances, order correlations, latent maps, landscape.npz, "
          f"cluster populations and nearest neighbours of {len(results)} datasets into {args.out_dir}")
    return 0


def check_options(args: argparse.Namespace) -> None:
    """Refuse option values out of their bounds (one line naming the option)."""
    from zernike3d.analysis.clusters import MAX_CLUSTERS

    if len(args.results) < 2:
        raise InputError("RESULTS", "give at least two results folders (the first is the reference)")
    for option, value, least in (("--axes", args.axes, 2), ("--clusters", args.clusters, 1),
                                 ("--bootstrap", args.bootstrap, 1), ("--fit-particles", args.fit_particles, 10),
                                 ("--match-particles", args.match_particles, 1), ("--align-order", args.align_order, 1)):
        if value < least:
            raise InputError(option, f"must be at least {least}, got {value}")
    for option, value, most in (("--clusters", args.clusters, MAX_CLUSTERS), ("--bootstrap", args.bootstrap, MAX_BOOTSTRAP)):
        if value > most:
            raise InputError(option, f"must be at most {most}, got {value}")


def check_comparable(results: list, folders: list[Path]) -> None:
    """Refuse datasets of the same name or of another ball radius than the reference's."""
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise InputError("RESULTS", f"dataset names (folder names) must differ: {', '.join(names)}")
    reference = results[0].moments
    for result, folder in zip(results[1:], folders[1:]):
        if not np.isclose(result.moments.radius, reference.radius, rtol=1e-6):
            raise InputError(folder / "moments.npz", f"ball radius {result.moments.radius:g} Å differs from the reference's "
                             f"{reference.radius:g} Å; decompose both with the same --radius")
