"""The joint landscape of the particles of several 3D Variability jobs.

Descriptors. Each particle is described by the rotation invariants F_nl(z) of its map
base + sum_k z_k component_k (:mod:`zernike3d.io.particle_invariants`), which do not
depend on how each job's maps are oriented; they do depend on the centre of the
expansion, so every job's invariants must be taken about the same point of the molecule.
A :class:`StoreSource` reads them from a job's per-particle invariants store (used when
the job's ball centre already sits on the reference's, after alignment); a
:class:`ComputedSource` computes them chunk by chunk from the latents and the job's
moments re-expanded about the reference's centre (the rotation does not matter). Jobs are
compared up to their common order: the first n_nl columns (ordered by n then l).

Axes. The joint axes are the principal components of the *raw* invariants (map density
units), not of standardised ones: Euclidean distance between raw invariant vectors is a
lower bound of the L2 distance between the two particles' maps over the unit ball, so
each (n, l) weighs by the density it really carries. Standardising every column to unit
variance would give the tiny high-l invariants, which carry mostly noise of the 3DVA
components, the same weight as the low-order shape. The centre and covariance are those
of the pooled jobs with each job weighing the same (mean of the per-job means, mean of the
per-job covariances about that joint centre), so that a job with ten times more particles
does not set the axes alone. They are estimated from a random sample of at most
``fit_particles`` particles per job (whole chunks of a store, so the sample costs a
fraction of one pass); then every particle is projected, one chunk at a time, so memory
is bounded by one chunk of descriptors plus the coordinates (P x axes float32).

Clusters. K-means (:func:`zernike3d.analysis.clusters.kmeans`) on the joint coordinates of a sample, every particle
assigned to its nearest centre; each job's population in each cluster, with a bootstrap
that repeats the k-means on resampled particles (started from the fitted centres, so that
labels correspond) and re-draws each job's particles with replacement.

Nearest neighbours. A k-d tree (scipy.spatial.cKDTree) of the reference job's particles
in the joint coordinates gives, for a random sample of each job's particles (all of them
up to the sample size), its nearest reference particle; the reference's own
nearest-other distances are the yardstick of what "close" means.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from zernike3d.io.particle_invariants import particle_invariants_of

if TYPE_CHECKING:
    from zernike3d.io.particle_invariants import ParticleInvariants

#: particles per block of a ComputedSource
COMPUTED_CHUNK = 65536


class StoreSource:
    """Descriptors read from a per-particle invariants store (columns ``[:columns]``)."""

    def __init__(self, store: ParticleInvariants, columns: int) -> None:
        self.store, self.columns = store, columns
        self.uid = store.uid
        self.count = len(store.uid)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(start row, float32 (p, columns)) for consecutive blocks of particles."""
        step = self.store.invariants.chunks[0]
        for start in range(0, self.count, step):
            yield start, np.asarray(self.store.invariants[start : start + step, : self.columns])

    def fit_sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """At least min(count, P) particles as whole random chunks, then cut to ``count``."""
        step = self.store.invariants.chunks[0]
        starts = rng.permutation(np.arange(0, self.count, step))
        blocks, total = [], 0
        for start in starts:
            if total >= count:
                break
            blocks.append(np.asarray(self.store.invariants[start : start + step, : self.columns]))
            total += len(blocks[-1])
        values = np.concatenate(blocks)
        return values[rng.permutation(len(values))[:count]]


class ComputedSource:
    """Descriptors F_nl(z) computed from ``forms`` (n_nl, 1+K, 1+K) and ``latents`` (P, K)."""

    def __init__(self, forms: np.ndarray, latents: np.ndarray, uid: np.ndarray) -> None:
        self.forms, self.latents, self.uid = forms, np.asarray(latents), np.asarray(uid)
        self.count = len(self.uid)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.count, COMPUTED_CHUNK):
            rows = self.latents[start : start + COMPUTED_CHUNK]
            yield start, particle_invariants_of(self.forms, rows, dtype=np.float32)

    def fit_sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        rows = np.sort(rng.choice(self.count, min(count, self.count), replace=False))
        return particle_invariants_of(self.forms, self.latents[rows], dtype=np.float32)


@dataclass(frozen=True)
class JointAxes:
    """``centre`` (D,) and ``axes`` (D, A) orthonormal columns, strongest first;
    ``explained`` (A,): share of the (equal-weight pooled) variance along each axis.
    The sign of each axis is fixed so that its largest loading is positive."""

    centre: np.ndarray
    axes: np.ndarray
    explained: np.ndarray

    def project(self, values: np.ndarray) -> np.ndarray:
        """Coordinates (p, A) float32 of descriptors (p, D)."""
        return ((np.asarray(values, dtype=np.float32) - self.centre.astype(np.float32)) @ self.axes.astype(np.float32))


def fit_joint_axes(sources: Sequence[StoreSource | ComputedSource], n_axes: int, fit_particles: int,
                   seed: int = 0) -> JointAxes:
    """:class:`JointAxes` of the sources (each weighing the same), from at most
    ``fit_particles`` particles of each. Memory: one job's sample at a time."""
    rng = np.random.default_rng(seed)
    means, covariances = [], []
    for source in sources:
        sample = source.fit_sample(fit_particles, rng)
        mean = sample.mean(axis=0, dtype=np.float64)
        centred = sample - mean.astype(np.float32)
        means.append(mean)
        covariances.append((centred.T @ centred).astype(np.float64) / len(sample))
    centre = np.mean(means, axis=0)
    covariance = np.mean([c + np.outer(m - centre, m - centre) for c, m in zip(covariances, means)], axis=0)
    from zernike3d.analysis.pca import principal_axes

    axes, explained = principal_axes(covariance, n_axes)
    return JointAxes(centre, axes, explained)


def project_sources(sources: Sequence[StoreSource | ComputedSource],
                    joint_axes: JointAxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates of every particle of every source on the joint axes, in source order:
    (coords (P_total, A) float32, dataset (P_total,) int32, uid (P_total,) uint64)."""
    total = sum(s.count for s in sources)
    coords = np.empty((total, joint_axes.axes.shape[1]), dtype=np.float32)
    dataset = np.empty(total, dtype=np.int32)
    uid = np.empty(total, dtype=np.uint64)
    offset = 0
    for index, source in enumerate(sources):
        for start, values in source.blocks():
            coords[offset + start : offset + start + len(values)] = joint_axes.project(values)
        dataset[offset : offset + source.count] = index
        uid[offset : offset + source.count] = source.uid
        offset += source.count
    return coords, dataset, uid


@dataclass(frozen=True)
class Populations:
    """Joint k-means clusters and each job's share of its particles in each.

    ``centres`` (C, A) ordered along the first axis; ``labels`` (P_total,) int16;
    ``fractions`` (J, C) per job, rows summing to 1; ``bootstrap_std``, ``bootstrap_low``,
    ``bootstrap_high`` (J, C): standard deviation and 2.5 / 97.5 percentiles of the
    fractions over ``bootstrap`` resamplings.
    """

    centres: np.ndarray
    labels: np.ndarray
    fractions: np.ndarray
    bootstrap_std: np.ndarray
    bootstrap_low: np.ndarray
    bootstrap_high: np.ndarray
    #: (bootstrap, J, C): the fractions of each resampling (for intervals of functions of them)
    draws: np.ndarray | None = None


def cluster_populations(coords: np.ndarray, dataset: np.ndarray, n_datasets: int, clusters: int, bootstrap: int = 100,
                        sample: int = 20000, seed: int = 0) -> Populations:
    """:class:`Populations` of ``clusters`` k-means clusters of ``coords`` (P, A), fitted
    on a sample of ``sample`` particles (each job drawn in proportion to its size);
    bootstrap: ``bootstrap`` refits on resampled particles, fractions of each job
    re-drawn from up to ``sample`` of its particles with replacement."""
    import sklearn.cluster  # noqa: F401 (loaded first: a thread limit applies to the libraries loaded)
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    # small fits, a hundred of them: one thread each (more threads only spin: 0.08 s a fit
    # against 0.014 s on 2 busy cores), the limit entered once (it costs about 10 ms)
    with threadpool_limits(limits=1):
        return _cluster_populations(coords, dataset, n_datasets, clusters, bootstrap, sample, seed)


def _cluster_populations(coords, dataset, n_datasets, clusters, bootstrap, sample, seed):
    import warnings

    from zernike3d.analysis.clusters import kmeans, nearest_centres

    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(len(coords), min(sample, len(coords)), replace=False))
    fit = np.asarray(coords[fit_rows], dtype=np.float64)
    centres, _ = kmeans(fit, clusters, seed=seed)
    centres = centres[np.argsort(centres[:, 0])]
    labels = nearest_centres(coords, centres)
    fractions = _fractions(labels, dataset, n_datasets, clusters)

    rows_of = [np.flatnonzero(dataset == d) for d in range(n_datasets)]
    draws = np.empty((bootstrap, n_datasets, clusters))
    for b in range(bootstrap):
        resampled = fit[rng.integers(0, len(fit), len(fit))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a resampling with fewer distinct points than clusters is harmless
            centres_b, _ = kmeans(resampled, clusters, start=centres, max_iter=10)
        for d, rows in enumerate(rows_of):
            picked = rows[rng.integers(0, len(rows), min(sample, len(rows)))]
            draws[b, d] = np.bincount(nearest_centres(coords[picked], centres_b), minlength=clusters) / len(picked)
    return Populations(
        centres=centres,
        labels=labels.astype(np.int16),
        fractions=fractions,
        bootstrap_std=draws.std(axis=0),
        bootstrap_low=np.percentile(draws, 2.5, axis=0),
        bootstrap_high=np.percentile(draws, 97.5, axis=0),
        draws=draws,
    )


def _fractions(labels, dataset, n_datasets, clusters):
    counts = np.zeros((n_datasets, clusters))
    np.add.at(counts, (dataset, labels), 1)
    return counts / counts.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class NearestNeighbours:
    """For every particle (rows as the joint coordinates): ``reference_row`` (int64, row
    of its nearest reference particle, itself excluded for reference particles; -1 where
    the particle was not in the matched sample) and ``distance`` (float32, in
    joint-coordinate units; NaN where not matched); ``self_p99``: the 99th percentile of
    the matched reference particles' nearest-other distances."""

    reference_row: np.ndarray
    distance: np.ndarray
    self_p99: float


#: approximation of the nearest-neighbour search: the neighbour found is at most
#: (1 + MATCH_EPS) times farther than the true nearest. An exact search of a particle far
#: from every reference particle (another job's state) visits much of the tree (6 ms per
#: particle against a 100,000-particle tree, measured); with 0.1, 40 µs, and the distances
#: found were 0.1% above the exact ones (median)
MATCH_EPS = 0.1


def nearest_reference_particles(coords: np.ndarray, dataset: np.ndarray, reference: int = 0, sample: int | None = None,
                                seed: int = 0) -> NearestNeighbours:
    """:class:`NearestNeighbours` of the particles, among the particles of job
    ``reference`` (a k-d tree over their joint coordinates, cKDTree with ``eps`` =
    :data:`MATCH_EPS`). ``sample``: match at most this many random particles of each job,
    against a tree of as many reference particles (millions of particles are summarised
    as well by a sample); None: all."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    reference_rows = np.flatnonzero(dataset == reference)
    if sample is not None and len(reference_rows) > sample:
        reference_rows = np.sort(rng.choice(reference_rows, sample, replace=False))
    tree = cKDTree(coords[reference_rows])
    rows = np.full(len(coords), -1, dtype=np.int64)
    distance = np.full(len(coords), np.nan, dtype=np.float32)
    self_distances = None
    for job in np.unique(dataset):
        if job == reference:  # the tree's own particles; the nearest is the particle itself
            members = reference_rows
            d, i = tree.query(coords[members], k=2, eps=MATCH_EPS, workers=-1)
            d, i = d[:, 1], i[:, 1]
            self_distances = d
        else:
            members = np.flatnonzero(dataset == job)
            if sample is not None and len(members) > sample:
                members = np.sort(rng.choice(members, sample, replace=False))
            d, i = tree.query(coords[members], k=1, eps=MATCH_EPS, workers=-1)
        rows[members], distance[members] = reference_rows[i], d
    assert self_distances is not None  # set by the reference's own turn of the loop
    return NearestNeighbours(rows, distance, float(np.percentile(self_distances, 99)))
