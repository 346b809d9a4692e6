"""Compare 3D Variability jobs: volumes, latent spaces and particle landscapes, after alignment onto the first.

Each RESULTS folder is one dataset as the workflow writes it (results/<name>/:
preprocessed.npz, or dataset.npz without preprocessing; moments.npz;
particle_invariants.zarr); the folder name is the dataset's name and the first is the
reference. All must share the ball radius in Å; they are compared up to their common
order. Every other job is placed in the reference's frame (rotation, shift and hand) and
all its volumes are expressed there, about the reference's centre. With --frame family
(the default) the frame is the molecule's: every particle's map of the job is placed in
the reference's family of maps (base + components), whatever the populations, and a
symmetry of the base is broken by the components (:mod:`zernike3d.analysis.frame`);
--frame base aligns the two base maps as `zernike3d align` does (biased when the
populations differ: a base is its particles' mean). Files written into --out-dir (the
folder is written as a whole, replacing only an earlier output of this stage):

* alignment_<name>.json: the alignment of each other job (as `zernike3d align`), and with
  --frame family ``frame``: how it was found (method, family and base correlations,
  candidates, symmetry copies of the base, whether the rotation is determined, the
  share of particles fitted) and ``states``: per state of the job (its mean, +-1 sd along
  each principal direction of its latents) where it lands in the reference's latents and
  its residual misfit.
* volume_distances.csv (volume_a, volume_b, invariant_distance, shape_distance) and
  volume_distances.png: every volume (base, components) of every job against every
  other in invariant space (rotation-free; shape: each volume scaled to unit norm).
* order_correlation.csv (dataset, pair, n, correlation, zcc) and order_correlation.png:
  per order n, the correlation of the aligned expansions (base with base, and each
  component with its best-matching reference component, sign fixed), and the original
  tool's ZCC (magnitudes only, m != 0 counted over m = -l..l); NaN (not drawn) at orders
  whose power is negligible.
* latent_<name>.json and latent_overlap.png: overlap of the aligned components with the
  reference's (K_B x K_A cosines of the orthonormalised components, principal angles,
  captured share) and the least-squares map z_ref = matrix @ z + offset of the job's
  latents into the reference's latent space.
* landscape.npz: coords (P_total, --axes) float32 on the joint principal axes of the
  particles' raw invariants, dataset (int32, index into names), uid (uint64), names,
  explained (variance share per axis), cluster (int16), nearest_reference_uid (uint64;
  0 where not matched) and nearest_reference_distance (float32; NaN where not matched:
  --match-particles random particles of each dataset are), reference_latents
  (P_total, K_ref) float32: each particle placed in the reference's latent space
  (its own latents for the reference's particles), beyond_reference (bool: the
  particle lies beyond every state of the reference); landscape_1d.png and
  landscape_2d.png: each job's density along the joint axes.
* cluster_populations.csv (dataset, cluster, particles, fraction, bootstrap_std,
  bootstrap_low_95, bootstrap_high_95) and cluster_populations.png: joint k-means
  clusters and each job's share in each, with bootstrap uncertainty.
* nearest_neighbours.csv (dataset, particles, matched, median_distance_to_reference,
  share_beyond_reference_states): how close each job's matched particles come to the
  reference's (for the reference: its particles' nearest other reference particle), and
  the share of its particles beyond every state of the reference
  (:mod:`zernike3d.analysis.free_energy`: a few % at most when the job holds only states
  the reference has, near 1 for a state it lacks).
* free_energy.csv (dataset, state, population, population_low, population_high, dG_kT,
  dG_kT_low, dG_kT_high): per job and joint state (the clusters of
  cluster_populations.csv), its population and ΔG = -kT ln(p / p_reference) in kT with
  95% bootstrap intervals (0 for the reference); free_energy_1d.csv (dataset, axis,
  bin_low, bin_high, particles, G_kT, G_kT_low, G_kT_high, G_kcal_per_mol) and
  free_energy_2d.csv (dataset, axis1_low, axis1_high, axis2_low, axis2_high, particles,
  G_kT, ...): each job's G = -kT ln p along each joint axis and over axes 1-2 (NaN in
  bins of fewer than 20 particles; one zero for all jobs, the reference's minimum);
  free_energy_1d.png, free_energy_2d.png, free_energy_states.png. kcal/mol at
  --temperature, assuming the populations were at equilibrium when the grid was plunged.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.stages import common

#: default order of the alignment fit: align recovers rotations to about 0.5° and shifts
#: to 0.3 Å at order 20 (benchmarks/bench_align.py); on the 64^3 maps of
#: benchmarks/bench_compare.py order 20 took 1.4 s and order 50 12 s, both finding the
#: 3 Å shift to 0.03 Å
ALIGN_ORDER = 20
#: an aligned job whose centre is closer than this (in voxels of the reference) to the
#: reference's keeps its stored per-particle invariants; farther, they are recomputed
#: about the reference's centre
RECENTRE_TOLERANCE_VOXELS = 0.05
#: most bootstrap resamplings of the cluster populations (each a pass over all particles)
MAX_BOOTSTRAP = 10000
#: default temperature (K) of the free energies: 4 °C, a plunge-freezer's usual chamber
TEMPERATURE = 277.15
#: bins per joint axis of the 1-D and 2-D free-energy landscapes, and the fewest
#: particles a bin needs to be drawn
FREE_ENERGY_BINS_1D, FREE_ENERGY_BINS_2D, FREE_ENERGY_MIN_PARTICLES = 60, 40, 20


def add_arguments(parser):
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="results folders of the datasets (first: the reference)")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder for the tables, figures and landscape")
    parser.add_argument("--axes", type=int, default=4, help="joint principal axes of the landscape")
    parser.add_argument("--clusters", type=int, default=3, help="joint k-means clusters")
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamplings of the cluster populations")
    parser.add_argument("--fit-particles", type=int, default=20000, help="particles per dataset used to fit the joint axes")
    parser.add_argument("--match-particles", type=int, default=100000,
                        help="particles per dataset matched to their nearest reference particle (a random sample)")
    parser.add_argument("--align-order", type=int, default=ALIGN_ORDER,
                        help="order of the alignment's fit (at most the datasets' common order); all volumes are then "
                        "compared at the common order")
    parser.add_argument("--frame", choices=("family", "base"), default="family",
                        help="how each job's frame is found: family: every particle's map placed in the reference's "
                        "family of maps (base + components), whatever the populations; base: the base maps aligned "
                        "(biased when the populations differ: a base is the particles' mean)")
    parser.add_argument("--temperature", type=float, default=TEMPERATURE,
                        help="temperature (K) of the sample before vitrification, for free energies in kcal/mol")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the samples, k-means and bootstrap")


@dataclass(frozen=True)
class Results:
    """One dataset's results folder: its name, moments, maps (1+K, N, N, N) [z, y, x] of
    the bundle, latents, uid and particle store."""

    name: str
    moments: object  # Moments
    maps: np.ndarray
    latents: np.ndarray
    uid: np.ndarray
    store: object  # ParticleInvariants


def read_results(folder):
    """The :class:`Results` of ``folder``; :class:`InputError` naming what is missing."""
    from zernike3d.io.dataset import Dataset
    from zernike3d.io.particle_invariants import read_particle_invariants
    from zernike3d.analysis.latents import check_job
    from zernike3d.moments import Moments

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a results folder (no such directory)")
    bundle = next((folder / f for f in ("preprocessed.npz", "dataset.npz") if (folder / f).is_file()), None)
    if bundle is None:
        raise InputError(folder, "has neither preprocessed.npz nor dataset.npz")
    for required in ("moments.npz", "particle_invariants.zarr"):
        if not (folder / required).exists():
            raise InputError(folder, f"has no {required} (compare needs 3D Variability jobs with per-particle invariants; "
                             "align single maps with `zernike3d align`)")
    moments = Moments.load(folder / "moments.npz")
    dataset = Dataset.load(bundle)
    if dataset.n_components == 0:
        raise InputError(bundle, "is a single map; compare needs 3D Variability jobs")
    check_job(moments, folder / "moments.npz", dataset, bundle)
    store = read_particle_invariants(folder / "particle_invariants.zarr")
    if not np.array_equal(store.uid, dataset.uid):
        raise InputError(folder / "particle_invariants.zarr", f"its particles (uid) are not those of {bundle}")
    return Results(folder.resolve().name, moments, dataset.maps, dataset.latents, dataset.uid, store)


def run(args):
    from zernike3d.io.atomic import atomic_path, folder_kind

    check_options(args)
    common.check_outputs(args.results, [(args.out_dir, folder_kind("compare"))])
    results = [read_results(folder) for folder in args.results]
    check_comparable(results, args.results)
    check_against_particles(args, results)
    comparison = compare(results, args)
    with atomic_path(args.out_dir, folder_kind("compare")) as tmp:
        write_outputs(Path(tmp), results, comparison, args)
    print(f"wrote alignments, volume distances, order correlations, latent maps, landscape.npz, "
          f"cluster populations and nearest neighbours of {len(results)} datasets into {args.out_dir}")
    return 0


def check_options(args):
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


def check_against_particles(args, results):
    """Refuse ``--clusters`` that are not fewer than all the particles compared."""
    total = sum(len(r.uid) for r in results)
    if args.clusters >= total:
        raise InputError("--clusters", f"{args.clusters} clusters for {total} particles in all: ask for fewer")


def check_comparable(results, folders):
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise InputError("RESULTS", f"dataset names (folder names) must differ: {', '.join(names)}")
    reference = results[0].moments
    for result, folder in zip(results[1:], folders[1:]):
        if not np.isclose(result.moments.radius, reference.radius, rtol=1e-6):
            raise InputError(folder / "moments.npz", f"ball radius {result.moments.radius:g} Å differs from the reference's "
                             f"{reference.radius:g} Å; decompose both with the same --radius")


@dataclass
class Comparison:
    """What the stage writes, computed: ``order`` compared; per other job (by name) its
    ``alignments`` and latent ``relations``; the volumes' invariant ``distances`` (rows and
    columns ``volume_labels``); ``curves``; the ``landscape`` arrays, its cluster
    ``populations``, nearest ``neighbours`` and ``free_energy`` (states: (dG, low, high)
    (J, C) kT; profiles_1d: a Profile per joint axis; profile_2d: on axes 1 and 2;
    kt_kcal_per_mol)."""

    order: int
    alignments: dict  # name -> Alignment
    distances: object
    volume_labels: list
    curves: list  # (dataset, pair, correlation (order+1,), zcc (order+1,))
    relations: dict  # name -> LatentRelation
    landscape: dict
    populations: object
    neighbours: object
    free_energy: dict


def compare(results, args):
    """Every analysis of the stage, in memory (the landscape is built chunk by chunk)."""
    from zernike3d.analysis import compare as analysis

    order = min(r.moments.order for r in results)
    reference = results[0].moments.truncate(order)
    alignments, aligned = {}, [reference]
    for result in results[1:]:
        alignment = find_frame(result, results[0], args.frame, min(args.align_order, order))
        alignments[result.name] = alignment
        aligned.append(in_reference_frame(result, alignment, order))
        correlation = alignment.correlation if alignment.hand == "same" else alignment.mirror_correlation
        what = "family correlation" if alignment.frame is not None else "correlation"
        print(f"{result.name}: aligned onto {results[0].name} ({args.frame}): {what} {correlation:.4f}, "
              f"hand {alignment.hand}, shift {np.linalg.norm(alignment.shift):.2f} Å")
        report_symmetry(alignment)

    stacked = np.concatenate([m.moments for m in aligned])
    labels = [f"{r.name}:{volume}" for r, m in zip(results, aligned) for volume in m.names]
    distances = analysis.invariant_distances(stacked, order)

    curves, relations = [], {}
    for result, moved in zip(results[1:], aligned[1:]):
        curves.append((result.name, "base~base", analysis.order_correlation(moved.moments[0], reference.moments[0], order),
                       analysis.zcc_curve(moved.moments[0], reference.moments[0], order)))
        relation = analysis.latent_relation(reference.moments, moved.moments, order)
        relations[result.name] = relation
        for j, row in enumerate(relation.overlap):
            i = int(np.argmax(np.abs(row)))
            sign = 1.0 if row[i] >= 0 else -1.0
            mine, theirs = sign * moved.moments[1 + j], reference.moments[1 + i]
            curves.append((result.name, f"{'-' if sign < 0 else ''}component_{j}~component_{i}",
                           analysis.order_correlation(mine, theirs, order), analysis.zcc_curve(mine, theirs, order)))

    landscape, populations, neighbours = particle_landscape(results, aligned, alignments, relations, order, args)
    return Comparison(order, alignments, distances, labels, curves, relations, landscape, populations, neighbours,
                      free_energies(landscape, populations, len(results), args))


def free_energies(landscape, populations, n_datasets, args):
    """The ``free_energy`` of :class:`Comparison` (:mod:`zernike3d.analysis.free_energy`)."""
    from zernike3d.analysis import free_energy

    coords, dataset = landscape["coords"], landscape["dataset"]
    options = dict(min_particles=FREE_ENERGY_MIN_PARTICLES, bootstrap=args.bootstrap, seed=args.seed)
    return {
        "states": free_energy.state_free_energies(populations),
        "profiles_1d": [free_energy.free_energy_profile(coords, dataset, n_datasets, (a,), FREE_ENERGY_BINS_1D, **options)
                        for a in range(coords.shape[1])],
        "profile_2d": free_energy.free_energy_profile(coords, dataset, n_datasets, (0, 1), FREE_ENERGY_BINS_2D, **options),
        "kt_kcal_per_mol": free_energy.kt_kcal_per_mol(args.temperature),
    }


def report_symmetry(alignment):
    """One line when the base has several equally good placements (a rotational
    symmetry) that the components told apart."""
    copies = (alignment.frame or {}).get("symmetry_copies", [])
    if len(copies) > 1:
        print(f"  the base has {len(copies)} equally good placements (a rotational symmetry); the components chose "
              f"the one with family correlation {copies[0]['family_correlation']:.4f} (next best "
              f"{max(c['family_correlation'] for c in copies[1:]):.4f})")


def find_frame(moving, reference, frame, order):
    """The :class:`~zernike3d.analysis.alignment.Alignment` of job ``moving`` (Results)
    onto ``reference``: ``frame`` "family" (:func:`zernike3d.analysis.frame.align_jobs`,
    from the two jobs' families of maps and the moving job's latents) or "base"
    (:func:`zernike3d.analysis.alignment.align` of the two base maps), up to ``order``."""
    if frame == "family":
        from zernike3d.analysis.frame import align_jobs

        return align_jobs(moving.moments, reference.moments, moving.latents, order=order)
    from zernike3d.analysis.alignment import align

    return align(moving.moments, reference.moments, volume=0, order=order)


def needs_recentring(alignment, reference):
    """Whether an aligned job's ball centre lands farther than
    :data:`RECENTRE_TOLERANCE_VOXELS` from the reference's (a Moments)."""
    return np.linalg.norm(alignment.shift) > RECENTRE_TOLERANCE_VOXELS * reference.voxel_size


def in_reference_frame(result, alignment, order):
    """All volumes of ``result``'s job, up to ``order``, as they sit in the reference
    frame, about the reference's ball centre: a Moments with the reference's geometry.

    Re-centring, when the aligned centre is off by more than
    :data:`RECENTRE_TOLERANCE_VOXELS` (:func:`needs_recentring`), decomposes the job's own
    maps again about the point p that lands on the reference's centre (q = A (p - c) +
    c_ref + shift = c_ref, so p = c - A^-1 shift; the maps moved by the fraction of a voxel
    that puts p on the grid, by a Fourier phase ramp): exact, where re-expanding the moments
    (reconstruct, shift, decompose) changed the invariants of a 64^3 map shifted by 3 Å
    by 3% at order 20 and 5.5% at order 50, more than the spread of its particles. Then
    the exact mirror (for a mirrored fit) and rotation of the moments
    (:mod:`zernike3d.maths.rotation`).
    """
    from dataclasses import replace

    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.rotation import mirror_moments, rotate_moments
    from zernike3d.moments import Moments

    moving = result.moments.truncate(order)
    geometry = alignment.reference_geometry
    parity = -1.0 if alignment.hand == "mirrored" else 1.0
    if needs_recentring(alignment, replace(moving, voxel_size=geometry["voxel_size"])):
        point = np.asarray(moving.center) - parity * alignment.rotation.T @ np.asarray(alignment.shift)
        # a centre off the voxel grid has no symmetric shells (64^3, order 50: 11.5 s instead
        # of 1.3 s): move the maps by the fraction of a voxel instead (a Fourier phase ramp,
        # exact for band-limited maps) and expand about the nearest voxel
        on_grid = np.round(point / moving.voxel_size) * moving.voxel_size
        maps = shifted_maps(result.maps, (on_grid - point) / moving.voxel_size)
        ball = BallGeometry(moving.box, moving.voxel_size, moving.radius, tuple(float(v) for v in on_grid))
        moving = Moments.from_maps(maps, ball, order, names=moving.names, origin=moving.origin)
    moments = mirror_moments(moving.moments, moving.nlm) if parity < 0 else moving.moments
    return replace(moving, moments=rotate_moments(moments, moving.nlm, alignment.rotation), box=int(geometry["box"]),
                   voxel_size=float(geometry["voxel_size"]), center=tuple(alignment.reference_center),
                   origin=tuple(alignment.reference_origin))


def shifted_maps(maps, shift_voxels):
    """Maps (V, N, N, N) [z, y, x] moved by ``shift_voxels`` (x, y, z):
    g(p) = f(p - shift), by a Fourier phase ramp on the periodic box
    (scipy.ndimage.fourier_shift; exact for band-limited maps). float64."""
    from scipy import ndimage

    n = maps.shape[-1]
    shift = np.asarray(shift_voxels, dtype=np.float64)[::-1]  # (z, y, x), array order
    return np.stack([
        np.fft.irfftn(ndimage.fourier_shift(np.fft.rfftn(np.asarray(m, dtype=np.float64)), shift, n=n), s=m.shape,
                      axes=(0, 1, 2))
        for m in maps
    ])


def particle_landscape(results, aligned, alignments, relations, order, args):
    """The joint landscape (dict of landscape.npz arrays), its clusters and neighbours."""
    from zernike3d.analysis import landscape as joint
    from zernike3d.analysis.free_energy import fit_reference_states
    from zernike3d.maths.indexing import nl_table
    from zernike3d.maths.invariants import particle_invariant_forms

    columns = len(nl_table(order))
    sources = [joint.StoreSource(results[0].store, columns)]
    for result, moved in zip(results[1:], aligned[1:]):
        if not needs_recentring(alignments[result.name], results[0].moments):
            sources.append(joint.StoreSource(result.store, columns))
        else:
            forms = particle_invariant_forms(moved.moments, order)
            sources.append(joint.ComputedSource(forms, result.latents, result.uid))
    axes = joint.fit_joint_axes(sources, args.axes, args.fit_particles, seed=args.seed)
    coords, dataset, uid = joint.project_sources(sources, axes)
    populations = joint.cluster_populations(coords, dataset, len(results), args.clusters, args.bootstrap, seed=args.seed)
    neighbours = joint.nearest_reference_particles(coords, dataset, sample=args.match_particles, seed=args.seed)
    states = fit_reference_states(coords[dataset == 0], max(args.clusters, 2) + 2, seed=args.seed,
                                  sample=args.match_particles)
    reference_latents = np.concatenate(
        [results[0].latents] + [relations[r.name].map_latents(r.latents) for r in results[1:]]
    ).astype(np.float32)
    landscape = {
        "coords": coords, "dataset": dataset, "uid": uid, "names": np.array([r.name for r in results]),
        "explained": axes.explained, "cluster": populations.labels,
        "nearest_reference_uid": np.where(neighbours.reference_row >= 0, uid[neighbours.reference_row], np.uint64(0)),
        "nearest_reference_distance": neighbours.distance,
        "reference_latents": reference_latents,
        "beyond_reference": states.beyond(coords),
    }
    return landscape, populations, neighbours


def write_outputs(folder, results, comparison, args):
    from zernike3d.analysis import compare_figures as figures

    names = [r.name for r in results]
    for name, alignment in comparison.alignments.items():
        _write_json(folder / f"alignment_{name}.json", alignment.to_json())
    d = comparison.distances
    labels = comparison.volume_labels
    _write_csv(folder / "volume_distances.csv", ["volume_a", "volume_b", "invariant_distance", "shape_distance"],
               [[labels[i], labels[j], d.euclidean[i, j], d.shape[i, j]] for i in range(len(labels)) for j in range(len(labels))])
    figures.plot_distance_matrix(folder / "volume_distances.png", d.shape, labels,
                                 f"Invariant distances of all volumes (each scaled to unit norm), order {comparison.order}",
                                 "shape distance ||F_a/|F_a| - F_b/|F_b|||")
    rows = [[dataset, pair, n, c, z] for dataset, pair, correlation, zcc in comparison.curves
            for n, (c, z) in enumerate(zip(correlation, zcc))]
    _write_csv(folder / "order_correlation.csv", ["dataset", "pair", "n", "correlation", "zcc"], rows)
    panels = {}
    for dataset, pair, correlation, zcc in comparison.curves:
        panel = panels.setdefault(f"{dataset} onto {names[0]} (aligned)", [])
        panel.append((f"{pair} correlation", correlation, "-"))
        if pair == "base~base":
            panel.append((f"{pair} ZCC (original, no phases)", zcc, "--"))
    figures.plot_order_curves(folder / "order_correlation.png", panels, comparison.order,
                              "Correlation per Zernike order of the aligned expansions")
    for name, relation in comparison.relations.items():
        _write_json(folder / f"latent_{name}.json", {"reference": names[0], "dataset": name, **relation.to_json()})
    figures.plot_overlaps(folder / "latent_overlap.png", {n: r.overlap for n, r in comparison.relations.items()}, names[0])

    landscape = comparison.landscape
    with open(folder / "landscape.npz", "wb") as f:
        np.savez(f, **landscape)
    coords, dataset = landscape["coords"], landscape["dataset"]
    figures.plot_landscape_1d(folder / "landscape_1d.png", coords, dataset, names, landscape["explained"])
    figures.plot_landscape_2d(folder / "landscape_2d.png", coords, dataset, names, landscape["explained"])
    p = comparison.populations
    counts = [np.bincount(p.labels[dataset == i], minlength=p.fractions.shape[1]) for i in range(len(names))]
    _write_csv(folder / "cluster_populations.csv",
               ["dataset", "cluster", "particles", "fraction", "bootstrap_std", "bootstrap_low_95", "bootstrap_high_95"],
               [[name, c, counts[i][c], p.fractions[i, c], p.bootstrap_std[i, c], p.bootstrap_low[i, c], p.bootstrap_high[i, c]]
                for i, name in enumerate(names) for c in range(p.fractions.shape[1])])
    figures.plot_populations(folder / "cluster_populations.png", p, names)
    nn = comparison.neighbours
    rows = []
    for i, name in enumerate(names):
        distances = nn.distance[dataset == i]
        matched = distances[np.isfinite(distances)]
        rows.append([name, len(distances), len(matched), float(np.median(matched)),
                     float(np.mean(landscape["beyond_reference"][dataset == i]))])
    _write_csv(folder / "nearest_neighbours.csv",
               ["dataset", "particles", "matched", "median_distance_to_reference", "share_beyond_reference_states"], rows)
    write_free_energy(folder, names, comparison, args)
    write_summary(folder, names, comparison, args)


#: the figures of summary.html, with their captions
SUMMARY_FIGURES = (
    ("free_energy_states.png", "ΔG of each joint state relative to the reference, with 95% bootstrap intervals"),
    ("free_energy_2d.png", "apparent free energy over joint axes 1-2 (blank: too few particles)"),
    ("landscape_2d.png", "each job's particles over joint axes 1-2"),
    ("free_energy_1d.png", "apparent free energy along each joint axis"),
    ("cluster_populations.png", "populations of the joint states"),
)


def write_summary(folder, names, comparison, args):
    """``folder/summary.html``: the comparison's first-page section (the frame of each job,
    each state's population and ΔG, the share beyond the reference, the key figures
    inlined), for the workflow's report."""
    import html

    from zernike3d.io.summary_html import html_figure, html_table, write_ascii_html

    frames = []
    for name, a in comparison.alignments.items():
        frame = a.frame or {}
        angle = float(np.degrees(np.arccos(np.clip((np.trace(a.rotation) - 1) / 2, -1.0, 1.0))))
        determined = "yes" if frame.get("rotation_determined", True) else \
            f"no: about {len(frame['undetermined_axes'])} axis/axes"
        frames.append([name, args.frame, f"{angle:.2f}", ", ".join(f"{v:.2f}" for v in a.shift), a.hand,
                       f"{(a.correlation if a.hand == 'same' else a.mirror_correlation):.4f}",
                       f"{frame['base_correlation']:.4f}" if "base_correlation" in frame else "",
                       str(len(frame.get("symmetry_copies", [])) or ""), determined])
    p = comparison.populations
    dg, low, high = comparison.free_energy["states"]
    kt = comparison.free_energy["kt_kcal_per_mol"]
    states = [[name, c, f"{p.fractions[i, c]:.3f} [{p.bootstrap_low[i, c]:.3f}, {p.bootstrap_high[i, c]:.3f}]",
               f"{dg[i, c]:+.2f} [{low[i, c]:+.2f}, {high[i, c]:+.2f}]", f"{kt * dg[i, c]:+.2f}"]
              for i, name in enumerate(names) for c in range(p.fractions.shape[1])]
    beyond = comparison.landscape["beyond_reference"]
    shares = [[name, f"{np.mean(beyond[comparison.landscape['dataset'] == i]):.3f}"] for i, name in enumerate(names)]
    title = html.escape(" vs ".join(names))
    parts = [f"<div class=\"zernike3d-compare\"><p><b>{title}</b>: each job placed in the frame of {html.escape(names[0])}</p>",
             html_table(["dataset", "frame", "rotation (deg)", "shift (A)", "hand", "correlation", "base correlation",
                         "symmetry copies of the base", "rotation determined"], frames),
             f"<p>Joint states: population and &#916;G = -kT ln(p / p<sub>{html.escape(names[0])}</sub>) "
             f"(95% bootstrap intervals; kT = {kt:.3f} kcal/mol at {args.temperature:g} K, assuming equilibrium "
             "before vitrification)</p>",
             html_table(["dataset", "state", "population", "dG (kT)", "dG (kcal/mol)"], states),
             "<p>Share of each job's particles beyond every state of the reference</p>",
             html_table(["dataset", "share_beyond_reference_states"], shares)]
    parts += [html_figure(folder / file_name, f"{title}: {caption}") for file_name, caption in SUMMARY_FIGURES]
    parts.append("</div>")
    write_ascii_html(folder / "summary.html", parts)


def write_free_energy(folder, names, comparison, args):
    """free_energy.csv, free_energy_1d.csv, free_energy_2d.csv and their figures."""
    from zernike3d.analysis import compare_figures as figures

    p = comparison.populations
    dg, low, high = comparison.free_energy["states"]
    _write_csv(folder / "free_energy.csv",
               ["dataset", "state", "population", "population_low", "population_high", "dG_kT", "dG_kT_low", "dG_kT_high"],
               [[name, c, p.fractions[i, c], p.bootstrap_low[i, c], p.bootstrap_high[i, c], dg[i, c], low[i, c], high[i, c]]
                for i, name in enumerate(names) for c in range(p.fractions.shape[1])])
    kt = comparison.free_energy["kt_kcal_per_mol"]
    header = ["dataset", "axis", "bin_low", "bin_high", "particles", "G_kT", "G_kT_low", "G_kT_high", "G_kcal_per_mol"]
    rows = []
    for a, profile in enumerate(comparison.free_energy["profiles_1d"]):
        edges = profile.edges[0]
        for i, name in enumerate(names):
            rows += [[name, a + 1, edges[b], edges[b + 1], int(profile.counts[i, b]), profile.g[i, b], profile.low[i, b],
                      profile.high[i, b], kt * profile.g[i, b]] for b in range(len(edges) - 1)]
    _write_csv(folder / "free_energy_1d.csv", header, rows)
    profile = comparison.free_energy["profile_2d"]
    (x, y), rows = profile.edges, []
    for i, name in enumerate(names):
        rows += [[name, x[b], x[b + 1], y[c], y[c + 1], int(profile.counts[i, b, c]), profile.g[i, b, c], profile.low[i, b, c],
                  profile.high[i, b, c], kt * profile.g[i, b, c]] for b in range(len(x) - 1) for c in range(len(y) - 1)]
    _write_csv(folder / "free_energy_2d.csv", ["dataset", "axis1_low", "axis1_high", "axis2_low", "axis2_high", "particles",
                                               "G_kT", "G_kT_low", "G_kT_high", "G_kcal_per_mol"], rows)
    explained = comparison.landscape["explained"]
    figures.plot_free_energy_1d(folder / "free_energy_1d.png", comparison.free_energy["profiles_1d"], names, explained,
                                kt, args.temperature)
    figures.plot_free_energy_2d(folder / "free_energy_2d.png", profile, names, explained, kt, args.temperature)
    figures.plot_state_free_energies(folder / "free_energy_states.png", p, (dg, low, high), names, kt, args.temperature)


def _write_json(path, record):
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
