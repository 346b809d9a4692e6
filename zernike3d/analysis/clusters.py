"""Clusters and selections of a 3D Variability job's particles.

Particles are clustered on their latents z (P, K) or on their per-particle invariants
F_nl(z) (P, n_nl). Invariants are standardised (each column to mean 0, standard deviation
1, so that no (n, l) dominates by its units) and reduced to their first
:data:`INVARIANT_DIMENSIONS` principal components before clustering; latents are used as
they are (3DVA latents are already comparable: cryoSPARC scales every component alike).

Clusters are numbered from the most populated down (ties: the lower original label first),
so that ``cluster_00`` is always the largest. A cluster's centre is *snapped* to the real
particle nearest the mean in the clustering space, as cryoDRGN does: its map is then the
map of a particle that exists, not of an average that may lie between modes.

Selections are boolean masks over the particles, named by what they select: bins along a
component (3DVA Display's intermediates mode) and ranges of latents or invariants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zernike3d.errors import InputError

METHODS = ("kmeans", "gmm")
#: models are fitted on at most this many particles (a fixed random sample), then every
#: particle is labelled (a million particles give the same clusters, many times slower)
FIT_SAMPLE = 100_000
#: rows labelled at once by :func:`nearest_centres`
LABEL_BLOCK = 65536
#: principal components of the standardised invariants used for clustering
INVARIANT_DIMENSIONS = 10


@dataclass(frozen=True)
class Clustering:
    """``labels`` int32 (P,) cluster of each particle, 0 = most populated; ``centres``
    float64 (k, D) in the clustering space; ``snapped`` int64 (k,) row of the particle
    nearest each centre; ``counts`` int64 (k,)."""

    labels: np.ndarray
    centres: np.ndarray
    snapped: np.ndarray
    counts: np.ndarray

    @property
    def fractions(self):
        return self.counts / self.counts.sum()


def invariant_features(invariants, dimensions=INVARIANT_DIMENSIONS):
    """Standardised invariants (P, n_nl) -> their first ``dimensions`` principal
    component scores (P, min(dimensions, n_nl)) float64. Constant columns are dropped."""
    values = np.asarray(invariants, dtype=np.float64)
    spread = values.std(axis=0)
    keep = spread > 0
    if not keep.any():
        raise InputError("--particle-invariants", "every invariant is the same for all particles")
    standard = (values[:, keep] - values[:, keep].mean(axis=0)) / spread[keep]
    dimensions = min(dimensions, standard.shape[1], len(standard))
    # principal axes from the small (n_nl, n_nl) covariance: cheap for millions of rows
    from zernike3d.analysis.pca import principal_axes

    axes, _ = principal_axes(standard.T @ standard / len(standard), dimensions)
    return standard @ axes


#: most clusters one run makes (each gets a subset and a map): more cannot make sense of
#: a 3DVA landscape, and k-means' cost grows with them
MAX_CLUSTERS = 100
#: most bins along one component (each bin is a subset .cs and .csg)
MAX_BINS = 100


def kmeans(features: np.ndarray, k: int, seed: int = 0, start: np.ndarray | None = None, max_iter: int = 300,
           threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k-means of zernike3d (``cluster``, ``reconstruct --kmeans``, ``compare``'s joint
    states): scikit-learn's KMeans (Lloyd) on ``features`` (P, D), seeded by k-means++
    with the best of 3 starts, or run once from the centres ``start`` (k, D); ``seed``
    fixes the starts, so that runs repeat; ``threads`` caps scikit-learn's OpenMP/BLAS
    threads (None: all cores). -> (centres (k, D) float64, labels (P,) int32: the nearest
    centre), in scikit-learn's order of the clusters."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    features = np.asarray(features, dtype=np.float64)
    init, n_init = ("k-means++", 3) if start is None else (np.asarray(start, dtype=np.float64), 1)
    model = KMeans(n_clusters=k, init=init, n_init=n_init, max_iter=max_iter, random_state=seed)
    if threads is None:  # entering threadpool_limits costs about 10 ms even without a limit
        model.fit(features)
    else:
        with threadpool_limits(limits=threads):
            model.fit(features)
    return model.cluster_centers_, model.labels_.astype(np.int32)


def cluster(features: np.ndarray, k: int, method: str = "kmeans", seed: int = 0,
            threads: int | None = None) -> Clustering:
    """Cluster ``features`` (P, D) into ``k`` groups -> :class:`Clustering`.

    ``method``: "kmeans" (:func:`kmeans`; labels = nearest centre) or "gmm"
    (scikit-learn GaussianMixture, full covariances, labels = most probable component,
    centres = component means), fitted on at most :data:`FIT_SAMPLE` particles. ``seed``
    fixes the sample and the random starts, so that runs repeat. ``threads`` caps
    scikit-learn's OpenMP/BLAS threads (None: all cores); a job sharing its cores should
    set it, as OpenMP threads that outnumber the cores spin against each other.
    """
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    features = np.asarray(features, dtype=np.float64)
    if method not in METHODS:
        raise InputError("--method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    if not 1 <= k <= min(len(features), MAX_CLUSTERS):
        raise InputError("--k", f"need 1..{min(len(features), MAX_CLUSTERS)} clusters (at most one per particle, "
                                f"and {MAX_CLUSTERS}), got {k}")
    sample = features
    if len(features) > FIT_SAMPLE:
        sample = features[np.sort(np.random.default_rng(seed).choice(len(features), FIT_SAMPLE, replace=False))]
    if method == "kmeans":
        centres, _ = kmeans(sample, k, seed=seed, threads=threads)
        labels = nearest_centres(features, centres)
    else:
        with threadpool_limits(limits=threads):
            model = GaussianMixture(n_components=k, covariance_type="full", random_state=seed).fit(sample)
            centres, labels = model.means_, model.predict(features)
    counts = np.bincount(labels, minlength=k)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(k, dtype=np.int32)
    rank[order] = np.arange(k, dtype=np.int32)
    centres = centres[order]
    return Clustering(rank[labels], centres, nearest_rows(features, centres), counts[order].astype(np.int64))


def nearest_centres(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the centre (k, D) nearest (Euclidean) each row of ``features`` (P, D) ->
    (P,) int32: k-means' labels of particles it was not fitted on. The largest
    x.c - |c|^2 / 2, by blocks of :data:`LABEL_BLOCK` rows (memory: a block times k)."""
    centres = np.asarray(centres, dtype=np.float64)
    half_norms = 0.5 * np.sum(centres**2, axis=1)
    labels = np.empty(len(features), dtype=np.int32)
    for start in range(0, len(features), LABEL_BLOCK):
        block = np.asarray(features[start:start + LABEL_BLOCK], dtype=np.float64)
        labels[start:start + len(block)] = np.argmax(block @ centres.T - half_norms, axis=1)
    return labels


def nearest_rows(features, points):
    """Row of ``features`` (P, D) nearest (Euclidean) each of ``points`` (n, D) -> (n,) int64."""
    from scipy.spatial import cKDTree

    _, rows = cKDTree(features).query(np.asarray(points, dtype=np.float64))
    return np.asarray(rows, dtype=np.int64).reshape(-1)


def component_bins(latents, component, bins):
    """3DVA Display's intermediates: ``bins`` equal-width bins of z_component between its
    smallest and largest value -> {"bin_cK_NN": mask}; every particle is in exactly one bin
    (the last bin includes its upper edge)."""
    latents = np.asarray(latents)
    if not 0 <= component < latents.shape[1]:
        raise InputError("--bins", f"component {component} out of range 0..{latents.shape[1] - 1}")
    if bins < 1:
        raise InputError("--bins", f"need at least 1 bin, got {bins}")
    values = latents[:, component].astype(np.float64)
    edges = np.linspace(values.min(), values.max(), bins + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    width = max(2, len(str(bins - 1)))
    return {f"bin_c{component}_{b:0{width}d}": index == b for b in range(bins)}


def parse_bins(text):
    """"K:N" (component K, N bins) -> (K, N)."""
    try:
        component, bins = (int(v) for v in text.split(":"))
    except ValueError:
        raise InputError("--bins", f"expected COMPONENT:BINS, e.g. 0:5, got {text!r}") from None
    if not 1 <= bins <= MAX_BINS:
        raise InputError("--bins", f"{text!r}: need 1..{MAX_BINS} bins (each is a subset of two files), got {bins}")
    return component, bins


def parse_range(text):
    """"NAME=LOW:HIGH[,NAME=LOW:HIGH..]" -> [(NAME, LOW, HIGH)] floats, LOW <= HIGH (an
    empty bound is -inf or +inf); :class:`InputError` naming ``--range`` otherwise (a NaN
    bound too)."""
    conditions = []
    for condition in text.split(","):
        name, _, bounds = condition.partition("=")
        low, sep, high = bounds.partition(":")
        try:
            low = float(low) if low.strip() else -np.inf
            high = float(high) if high.strip() else np.inf
        except ValueError:
            sep = ""
        if not name.strip() or not sep or not low <= high:  # NaN bounds too
            raise InputError("--range", f"expected NAME=LOW:HIGH with LOW <= HIGH, got {condition!r}")
        conditions.append((name.strip(), low, high))
    return conditions


def range_selection(text, columns):
    """Particles inside every condition of ``text`` -> boolean mask (P,).

    ``text`` is "NAME=LOW:HIGH[,NAME=LOW:HIGH..]" (:func:`parse_range`), LOW <= value <=
    HIGH, either bound may be empty (open); NAME a key of ``columns`` ({name: (P,)
    values}, e.g. ``z_0`` for a latent, ``F_4_2`` for an invariant).
    """
    mask = None
    for name, low, high in parse_range(text):
        if name not in columns:
            known = ", ".join(list(columns)[:6]) + (", ..." if len(columns) > 6 else "")
            raise InputError("--range", f"unknown quantity {name!r} in {text!r} (known: {known})")
        values = np.asarray(columns[name])
        inside = (values >= low) & (values <= high)
        mask = inside if mask is None else mask & inside
    return mask
