"""Every analysis of `zernike3d compare`, in memory: several 3D Variability jobs placed in
the first one's frame, their volumes, latent spaces and particles compared there.

Each job is a :class:`~zernike3d.analysis.results_folder.Results`; the first is the reference.
Every other job's frame (rotation, shift, hand) is found (:func:`find_frame`) and all its
volumes are expressed in the reference frame about the reference's ball centre
(:func:`zernike3d.analysis.alignment.express_in_reference_frame`, from the job's own
maps); then the measures of :mod:`zernike3d.analysis.compare`, the joint landscape of the
particles (:mod:`zernike3d.analysis.landscape`) and the free energies
(:mod:`zernike3d.analysis.free_energy`). The files written from a :class:`Comparison`
are described in :mod:`zernike3d.io.comparison_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zernike3d.analysis.alignment import Alignment
    from zernike3d.analysis.compare import InvariantDistances, LatentRelation
    from zernike3d.analysis.landscape import NearestNeighbours, Populations
    from zernike3d.analysis.results_folder import Results
    from zernike3d.moments import Moments

#: default order of the alignment fit: align recovers rotations to about 0.5° and shifts
#: to 0.3 Å at order 20 (benchmarks/bench_align.py); on the 64^3 maps of
#: benchmarks/bench_compare.py order 20 took 1.4 s and order 50 12 s, both finding the
#: 3 Å shift to 0.03 Å
ALIGN_ORDER = 20
#: most bootstrap resamplings of the cluster populations (each a pass over all particles)
MAX_BOOTSTRAP = 10000
#: default temperature (K) of the free energies: 4 °C, a plunge-freezer's usual chamber
TEMPERATURE = 277.15
#: bins per joint axis of the 1-D and 2-D free-energy landscapes, and the fewest
#: particles a bin needs to be drawn
FREE_ENERGY_BINS_1D, FREE_ENERGY_BINS_2D, FREE_ENERGY_MIN_PARTICLES = 60, 40, 20


@dataclass(frozen=True)
class CompareSettings:
    """The choices of a comparison: ``frame`` "family" or "base" (:func:`find_frame`),
    ``align_order`` (at most the common order), joint ``axes``, joint k-means
    ``clusters``, ``bootstrap`` resamplings, ``fit_particles`` per job for the joint axes,
    ``match_particles`` per job matched to the reference, ``temperature`` (K) and the
    random ``seed`` of samples, k-means and bootstrap."""

    frame: str = "family"
    align_order: int = ALIGN_ORDER
    axes: int = 4
    clusters: int = 3
    bootstrap: int = 100
    fit_particles: int = 20000
    match_particles: int = 100000
    temperature: float = TEMPERATURE
    seed: int = 0


@dataclass
class Comparison:
    """A comparison, computed: ``order`` compared; per other job (by name) its
    ``alignments`` and latent ``relations``; the volumes' invariant ``distances`` (rows and
    columns ``volume_labels``); ``curves`` (dataset, pair, correlation (order+1,), zcc
    (order+1,)); the ``landscape`` arrays (those of landscape.npz), its cluster
    ``populations``, nearest ``neighbours`` and ``free_energy`` (states: (dG, low, high)
    (J, C) kT; profiles_1d: a Profile per joint axis; profile_2d: on axes 1 and 2;
    kt_kcal_per_mol)."""

    order: int
    alignments: dict[str, Alignment]
    distances: InvariantDistances
    volume_labels: list[str]
    curves: list[tuple]
    relations: dict[str, LatentRelation]
    landscape: dict[str, Any]  # name -> array, as landscape.npz holds them
    populations: Populations
    neighbours: NearestNeighbours
    free_energy: dict


def compare_jobs(results: list[Results], settings: CompareSettings) -> Comparison:
    """Every analysis of the comparison of ``results`` (the first: the reference), in
    memory (the landscape is built chunk by chunk)."""
    from zernike3d.analysis import compare as measures
    from zernike3d.analysis.alignment import express_in_reference_frame

    order = min(r.moments.order for r in results)
    reference = results[0].moments.truncate(order)
    alignments, aligned = {}, [reference]
    for result in results[1:]:
        alignment = find_frame(result, results[0], settings.frame, min(settings.align_order, order))
        alignments[result.name] = alignment
        aligned.append(express_in_reference_frame(result.moments, alignment, maps=result.maps, order=order))

    stacked = np.concatenate([m.moments for m in aligned])
    labels = [f"{r.name}:{volume}" for r, m in zip(results, aligned) for volume in m.names]
    distances = measures.invariant_distances(stacked, order)

    curves, relations = [], {}
    for result, moved in zip(results[1:], aligned[1:]):
        curves.append((result.name, "base~base", measures.order_correlation(moved.moments[0], reference.moments[0], order),
                       measures.zcc_curve(moved.moments[0], reference.moments[0], order)))
        relation = measures.latent_relation(reference.moments, moved.moments, order)
        relations[result.name] = relation
        for j, row in enumerate(relation.overlap):
            i = int(np.argmax(np.abs(row)))
            sign = 1.0 if row[i] >= 0 else -1.0
            mine, theirs = sign * moved.moments[1 + j], reference.moments[1 + i]
            curves.append((result.name, f"{'-' if sign < 0 else ''}component_{j}~component_{i}",
                           measures.order_correlation(mine, theirs, order), measures.zcc_curve(mine, theirs, order)))

    landscape, populations, neighbours = particle_landscape(results, aligned, alignments, relations, order, settings)
    return Comparison(order, alignments, distances, labels, curves, relations, landscape, populations, neighbours,
                      free_energies(landscape, populations, len(results), settings))


def find_frame(moving: Results, reference: Results, frame: str, order: int) -> Alignment:
    """The :class:`~zernike3d.analysis.alignment.Alignment` of job ``moving`` onto
    ``reference``: ``frame`` "family" (:func:`zernike3d.analysis.frame.align_jobs`,
    from the two jobs' families of maps and the moving job's latents) or "base"
    (:func:`zernike3d.analysis.alignment.align` of the two base maps), up to ``order``."""
    if frame == "family":
        from zernike3d.analysis.frame import align_jobs

        return align_jobs(moving.moments, reference.moments, moving.latents, order=order)
    from zernike3d.analysis.alignment import align

    return align(moving.moments, reference.moments, volume=0, order=order)


def particle_landscape(results: list[Results], aligned: list[Moments], alignments: dict[str, Alignment],
                       relations: dict[str, LatentRelation], order: int,
                       settings: CompareSettings) -> tuple[dict[str, np.ndarray], Populations, NearestNeighbours]:
    """The joint landscape (dict of landscape.npz arrays), its clusters and neighbours. A
    job whose centre moved (:func:`~zernike3d.analysis.alignment.needs_recentring`) has
    its particles' invariants computed again about the reference's centre."""
    from zernike3d.analysis import landscape as joint
    from zernike3d.analysis.alignment import needs_recentring
    from zernike3d.analysis.free_energy import fit_reference_states
    from zernike3d.maths.indexing import nl_table
    from zernike3d.maths.invariants import particle_invariant_forms

    columns = len(nl_table(order))
    sources: list[joint.StoreSource | joint.ComputedSource] = [joint.StoreSource(results[0].store, columns)]
    for result, moved in zip(results[1:], aligned[1:]):
        if not needs_recentring(alignments[result.name]):
            sources.append(joint.StoreSource(result.store, columns))
        else:
            forms = particle_invariant_forms(moved.moments, order)
            sources.append(joint.ComputedSource(forms, result.latents, result.uid))
    axes = joint.fit_joint_axes(sources, settings.axes, settings.fit_particles, seed=settings.seed)
    coords, dataset, uid = joint.project_sources(sources, axes)
    populations = joint.cluster_populations(coords, dataset, len(results), settings.clusters, settings.bootstrap,
                                            seed=settings.seed)
    neighbours = joint.nearest_reference_particles(coords, dataset, sample=settings.match_particles, seed=settings.seed)
    states = fit_reference_states(coords[dataset == 0], max(settings.clusters, 2) + 2, seed=settings.seed,
                                  sample=settings.match_particles)
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


def free_energies(landscape: dict[str, np.ndarray], populations: Populations, n_datasets: int,
                  settings: CompareSettings) -> dict:
    """The ``free_energy`` of :class:`Comparison` (:mod:`zernike3d.analysis.free_energy`)."""
    from zernike3d.analysis import free_energy

    coords, dataset = landscape["coords"], landscape["dataset"]
    options = {"min_particles": FREE_ENERGY_MIN_PARTICLES, "bootstrap": settings.bootstrap, "seed": settings.seed}
    return {
        "states": free_energy.state_free_energies(populations),
        "profiles_1d": [free_energy.free_energy_profile(coords, dataset, n_datasets, (a,), FREE_ENERGY_BINS_1D, **options)
                        for a in range(coords.shape[1])],
        "profile_2d": free_energy.free_energy_profile(coords, dataset, n_datasets, (0, 1), FREE_ENERGY_BINS_2D, **options),
        "kt_kcal_per_mol": free_energy.kt_kcal_per_mol(settings.temperature),
    }
