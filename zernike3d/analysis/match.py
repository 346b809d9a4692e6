"""Which particles of a 3D Variability job look like a query (a molecular model or a map).

The score. A particle with latents z has the map f(z) = base + sum_k z_k component_k, so
its moments are Omega(z) = Omega_base + sum_k z_k Omega_k (:mod:`zernike3d.analysis.latents`). With
the query fitted into the job's frame, its moments q, the score of the particle is
Pearson's correlation over the ball of the two expansions, the ball means (the Omega_000
terms: Z_000 is constant) removed, as :mod:`zernike3d.analysis.alignment` reports a fit.
The moments are coefficients in an orthonormal basis, so inner products of maps over the
ball are inner products of their moment vectors (over m = -l..l: the stored m > 0 terms
count twice, since Omega_{n,l,-m} = (-1)^m conj(Omega_nlm);
:func:`zernike3d.maths.rotation.inner_product`). With a = (1, z_0, .., z_{K-1}),

    score(z) = a . c / (sqrt(a^T G a) ||q||),   c_j = <Omega_j, q>,  G_ij = <Omega_i, Omega_j>,

j = 0 the base map: a ratio of a linear and the root of a quadratic form in a, O(K^2) a
particle once the (K + 1) numbers c (per query) and the (K + 1)^2 matrix G (per job) are
known (:class:`ScoreForms`). In [-1, 1], higher is better.

The fit (:func:`fit_query`). A model of one state fitted onto the consensus (base) map
of a job that holds several states is biased towards that average, so the fit alternates
with the state it matches: the query is fitted (global search, both hands:
:func:`zernike3d.analysis.alignment.align`, at ``fit_order``) onto the map at the latent
point it currently matches best, starting from the base map (z = 0); the particles are
scored with that fit; the best latent point (:func:`best_latent_point`) becomes the next
state to fit onto; until the map at that point correlates with the map fitted onto by
:data:`STATE_TOLERANCE` or more (:func:`state_correlation`), or after :data:`MAX_ROUNDS` fits. The query
is then expressed in the job's frame exactly: its density is made again at the fitted
placement on the job's grid (a model's atoms moved, a map resampled) and decomposed at
the job's order, so that no re-expansion of moved moments blurs it. The hand is checked
as `align` checks it: ``mirrored`` when the query's mirror image fits clearly better;
when neither hand fits clearly better at ``fit_order``, the last fit is made again at the
job's order, whose finer detail may tell.

The best latent point is the highest score within the region the particles occupy: the
ellipsoid of their latents' mean and covariance whose Mahalanobis radius holds
:data:`REGION_QUANTILE` of them (beyond it the map at z is an extrapolation that no
particle supports, and the score of a cosine can keep rising there).
"""

import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from zernike3d.maths.rotation import inner_product

if TYPE_CHECKING:
    from zernike3d.analysis.alignment import Alignment
    from zernike3d.io.structure import MolecularModel

#: alternations of fit and best state at most
MAX_ROUNDS = 4
#: the alternation stops when the map at the new best latent point correlates with the
#: map the query was fitted onto by at least this (the next fit would see the same map)
STATE_TOLERANCE = 0.999
#: the best latent point is sought within the ellipsoid that holds this share of the particles
REGION_QUANTILE = 0.99
#: the quantiles of each query's scores reported in match.json
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
#: particles scored at once (bounds the memory of particle_scores)
SCORE_CHUNK = 1 << 18


@dataclass(frozen=True)
class ScoreForms:
    """What the scores of every particle need: ``cross`` (Q, 1 + K) = <Omega_j, q> per
    query, ``gram`` (1 + K, 1 + K) = <Omega_i, Omega_j> of the job's volumes, ``norms``
    (Q,) = ||q||; ball means removed throughout (map density units squared, over the unit
    ball)."""

    cross: np.ndarray
    gram: np.ndarray
    norms: np.ndarray


def score_forms(volumes: np.ndarray, queries: np.ndarray, nlm: np.ndarray) -> ScoreForms:
    """:class:`ScoreForms` of the job's volumes (1 + K, C) (base, then components) and the
    fitted queries (Q, C), moments in ``nlm`` order, in the same frame."""
    volumes, queries = _without_mean(volumes), _without_mean(queries)
    gram = inner_product(volumes[:, None, :], volumes[None, :, :], nlm)
    cross = inner_product(queries[:, None, :], volumes[None, :, :], nlm)
    return ScoreForms(cross, gram, np.sqrt(inner_product(queries, queries, nlm)))


def _without_mean(moments):
    moments = np.array(np.atleast_2d(moments), dtype=np.complex128)
    moments[:, 0] = 0.0
    return moments


def particle_scores(latents: np.ndarray, forms: ScoreForms) -> np.ndarray:
    """Scores (P, Q) float64 of the particles with ``latents`` (P, K), against every query of
    ``forms``; NaN for a particle whose map is flat in the ball (no structure to correlate)."""
    latents = np.asarray(latents)
    gram, cross = forms.gram, forms.cross
    out = np.empty((len(latents), len(cross)))
    scale = 1.0 / forms.norms
    for start in range(0, len(latents), SCORE_CHUNK):
        z = np.asarray(latents[start : start + SCORE_CHUNK], dtype=np.float64)
        # a^T G a with a = (1, z): G_00 + 2 z . G_0k + z^T G_kk z
        power = gram[0, 0] + 2.0 * z @ gram[0, 1:] + np.einsum("pi,pi->p", z @ gram[1:, 1:], z)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start : start + len(z)] = (cross[:, 0] + z @ cross[:, 1:].T) / np.sqrt(power)[:, None] * scale
    return out


def score_at(z: np.ndarray, forms: ScoreForms, query: int) -> float:
    """The score of the map at latent point ``z`` (K,) against query number ``query`` (as
    :func:`particle_scores`, for one point: the best-point search calls it often)."""
    a = np.concatenate([[1.0], z])
    return float(a @ forms.cross[query] / (np.sqrt(a @ forms.gram @ a) * forms.norms[query]))


def state_correlation(forms: ScoreForms, z: np.ndarray, other: np.ndarray) -> float:
    """Pearson correlation over the ball of the job's maps at latent points ``z`` and ``other``."""
    a, b = np.concatenate([[1.0], z]), np.concatenate([[1.0], other])
    return float(a @ forms.gram @ b / np.sqrt((a @ forms.gram @ a) * (b @ forms.gram @ b)))


@dataclass(frozen=True)
class LatentRegion:
    """Where the particles are: ``mean`` (K,), ``whitening`` (K, K) W with W (z - mean) of
    unit covariance (directions without spread are held at the mean), and ``radius``, the
    Mahalanobis distance |W (z - mean)| within which :data:`REGION_QUANTILE` of them lie."""

    mean: np.ndarray
    whitening: np.ndarray
    radius: float

    @classmethod
    def of(cls, latents: np.ndarray) -> "LatentRegion":
        latents = np.asarray(latents, dtype=np.float64)
        mean = latents.mean(axis=0)
        values, vectors = np.linalg.eigh(np.atleast_2d(np.cov(latents, rowvar=False)) if len(latents) > 1
                                         else np.zeros((latents.shape[1],) * 2))
        spread = values > 1e-12 * max(values.max(initial=0.0), 1e-300)
        inverse_root = np.where(spread, 1.0 / np.sqrt(np.where(spread, values, 1.0)), 0.0)
        whitening = (vectors * inverse_root) @ vectors.T
        distances = np.linalg.norm((latents - mean) @ whitening.T, axis=1)
        return cls(mean, whitening, float(np.quantile(distances, REGION_QUANTILE)))

    def distance(self, z: np.ndarray) -> float:
        """Mahalanobis distance of ``z`` from the particles' mean."""
        return float(np.linalg.norm(self.whitening @ (np.asarray(z) - self.mean)))


def best_latent_point(forms: ScoreForms, query: int, region: LatentRegion, start: np.ndarray) -> np.ndarray:
    """The latent point (K,) of highest score for query number ``query`` within ``region``
    (SLSQP from ``start``, the best-scoring particle, drawn onto the region's boundary
    when it lies beyond: the point where the search starts when it finds nothing better)."""
    from scipy.optimize import minimize

    start = np.asarray(start, dtype=np.float64)
    distance = region.distance(start)
    if distance > region.radius:
        start = region.mean + (start - region.mean) * (region.radius / distance)

    cross, gram, norm = forms.cross[query], forms.gram, forms.norms[query]

    def negative(z):  # -score and its gradient: d/dz of (a.c) / (|a|_G |q|), a = (1, z)
        a = np.concatenate([[1.0], z])
        power = a @ gram @ a
        value = a @ cross / np.sqrt(power)
        return -value / norm, -(cross[1:] / np.sqrt(power) - value * (gram @ a)[1:] / power) / norm

    def room(z):  # >= 0 inside the region
        offset = region.whitening @ (z - region.mean)
        return region.radius**2 - offset @ offset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = minimize(negative, start, jac=True, method="SLSQP", constraints=[{"type": "ineq", "fun": room}],
                         options={"ftol": 1e-12, "maxiter": 200})
    inside = np.all(np.isfinite(found.x)) and room(found.x) >= -1e-9 * max(region.radius**2, 1.0)
    return found.x if inside and -found.fun > score_at(start, forms, query) else start


def assign(scores: np.ndarray, min_score: float | None = None, top: float | None = None) -> np.ndarray:
    """Query assigned to each particle (P,) int: the one that scores highest, or -1 when
    left out: its best score below ``min_score``, or (``top``, a fraction in (0, 1]) not
    among the ``top`` share of that query's particles by score. NaN scores are never
    assigned."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores).any(axis=1)
    labels = np.where(finite, np.argmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1), -1)
    best = np.where(finite, np.nanmax(np.where(finite[:, None], scores, 0.0), axis=1), -np.inf)
    if min_score is not None:
        labels[best < min_score] = -1
    if top is not None:
        for query in range(scores.shape[1]):
            rows = np.flatnonzero(labels == query)
            keep = int(np.ceil(top * len(rows) - 1e-9))
            labels[rows[np.argsort(-best[rows], kind="stable")[keep:]]] = -1
    return labels


def quantiles(values: np.ndarray) -> dict:
    """{"q0.05": ...}: the :data:`QUANTILES` of the finite ``values``."""
    values = np.asarray(values)[np.isfinite(values)]
    if not len(values):
        return {}
    return {f"q{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES))}


# --- the fit --------------------------------------------------------------------------


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 3×4 placement ``outer`` after ``inner``: p -> A_o (A_i p + t_i) + t_o."""
    outer, inner = np.asarray(outer, dtype=np.float64), np.asarray(inner, dtype=np.float64)
    return np.column_stack([outer[:, :3] @ inner[:, :3], outer[:, :3] @ inner[:, 3] + outer[:, 3]])


@dataclass
class QueryFit:
    """One query fitted into the job's frame.

    ``matrix`` 3×4 [A | t] Å: from the query's frame (a model's coordinates; a map's
    positions from its voxel [0, 0, 0]) to the job's (from its voxel [0, 0, 0]), as
    `align` reports a fit; ``alignment``: the last fit's
    :class:`~zernike3d.analysis.alignment.Alignment` (of the query placed at the job's ball
    centre onto the state), with ``matrix`` and the query's origin put in, so that its
    ChimeraX command places the query file itself; ``moments`` (C,) the fitted query's
    moments at the job's order; ``density`` its map on the job's grid [z, y, x];
    ``state`` (K,) the latent point of the last fit; ``rounds`` fits made (one more when
    the hand had to be told at the job's order);
    ``notes``: warnings of the fits (hand), to pass on."""

    matrix: np.ndarray
    alignment: "Alignment"
    moments: np.ndarray
    density: np.ndarray
    state: np.ndarray
    rounds: int
    notes: list = field(default_factory=list)


def fit_query(query, job, latents: np.ndarray, region, fit_order: int, decompose, progress=print) -> QueryFit:
    """Fit ``query`` (a :class:`Query`) into the frame of ``job`` (a
    :class:`~zernike3d.moments.Moments` of the volumes base, component_0, ..) alternating
    with the best state (module docstring). ``latents`` (P, K) of the particles and their
    :class:`LatentRegion` ``region`` (None: a single map, fitted once onto it); ``decompose(map)`` -> moments (C,) of one map on
    the job's grid at its order; ``progress(text)`` reports each round. When the last fit
    cannot tell the hand (:func:`hand_undecided`) at ``fit_order``, it is made again at
    the job's order, where the finer detail may."""
    geometry = job.geometry
    start = query.centring(geometry)
    centred = replace(job, moments=decompose(query.density(geometry, start))[None], names=[query.stem],
                      origin=job.origin, maps_sha256=None)
    state = np.zeros(job.moments.shape[0] - 1)
    for rounds in range(1, MAX_ROUNDS + 1):
        fit = _fit_onto(query, job, centred, start, state, fit_order, rounds, decompose, progress)
        if region is None:
            break
        forms = score_forms(job.moments, fit.moments[None], job.nlm)
        scores = particle_scores(latents, forms)[:, 0]
        point = best_latent_point(forms, 0, region, latents[int(np.nanargmax(scores))])
        same = state_correlation(forms, state, point) >= STATE_TOLERANCE
        state = point
        if same:
            break
    if fit_order < job.order and hand_undecided(fit.alignment):
        progress(f"{query.stem}: the hand cannot be told at order {fit_order}; fitting again at order {job.order}")
        fit = _fit_onto(query, job, centred, start, fit.state, job.order, fit.rounds + 1, decompose, progress)
    return fit


def hand_undecided(alignment) -> bool:
    """Whether neither hand's misfit (1 - correlation) is below
    :data:`zernike3d.analysis.alignment.HAND_RATIO` times the other's (`align` then says
    that the hand cannot be told)."""
    from zernike3d.analysis.alignment import HAND_RATIO

    same, mirrored = 1.0 - alignment.correlation, 1.0 - alignment.mirror_correlation
    return not (mirrored < HAND_RATIO * same or same < HAND_RATIO * mirrored)


def _fit_onto(query, job, centred, start, state, order, rounds, decompose, progress) -> QueryFit:
    """One fit of the ``centred`` query's moments (placed by ``start``) onto the job's map
    at latent point ``state``, at ``order``; the query made again at the fitted placement
    on the job's grid and decomposed at the job's order (``decompose``)."""
    from zernike3d.analysis.alignment import align
    from zernike3d.analysis.latents import LatentPoint, moments_at

    target = replace(job, moments=moments_at(job.moments, [LatentPoint("state", "latent", state)]), names=["state"],
                     maps_sha256=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alignment = align(centred, target, order=order)
    matrix = compose(alignment.matrix, start)
    density = query.density(job.geometry, matrix)
    progress(f"{query.stem}: fit {rounds} onto the map at z = ({', '.join(f'{v:.3g}' for v in state)}): "
             f"correlation {alignment.correlation:.4f} at order {alignment.order}, hand {alignment.hand}")
    return QueryFit(matrix, replace(alignment, matrix=matrix, moving_origin=tuple(query.origin)),
                    decompose(density), density, state, rounds,
                    [str(w.message) for w in caught])


@dataclass(frozen=True)
class Query:
    """A model or a map to score the particles against: ``stem`` (its file's stem, the
    name of its column and files), ``path``, ``kind`` ("model" or "map"), ``origin``
    (x, y, z) Å of its frame in a viewer (a map's MRC origin; 0 for a model), ``centre``
    (x, y, z) Å in its frame: the point put at the job's ball centre before the fit (for a
    model the centre of a sphere enclosing its atoms, close to the smallest, so that a
    model that fits in the ball is wholly inside it; for a map its centre of mass above
    its contour level), and
    ``density(geometry, matrix)``: its map on the grid of ``geometry`` placed by ``matrix``
    (:mod:`zernike3d.maths.density`); ``model`` the atoms and ``sigma`` (Å) their
    Gaussians for a model, None for a map."""

    stem: str
    path: str
    kind: str
    origin: tuple
    centre: np.ndarray
    density: Callable
    model: "MolecularModel | None" = None
    sigma: float | None = None

    @classmethod
    def from_model(cls, stem, path, model, sigma: float) -> "Query":
        """A :class:`~zernike3d.io.structure.MolecularModel`, its density a Gaussian of
        ``sigma`` Å per atom (molmap)."""
        from zernike3d.maths.density import atom_density, enclosing_sphere, placed_points

        def density(geometry, matrix):
            return atom_density(placed_points(matrix, model.positions), model.weights, geometry.box,
                                geometry.voxel_size, sigma)

        centre = enclosing_sphere(model.positions)[0]
        return cls(stem, str(path), "model", (0.0, 0.0, 0.0), centre, density, model, float(sigma))

    @classmethod
    def from_map(cls, stem, path, mapfile) -> "Query":
        """A :class:`~zernike3d.io.mrc.MapFile`, resampled onto the job's grid."""
        from zernike3d.io.chimerax import contour_level
        from zernike3d.maths.density import resampled_map

        data = np.asarray(mapfile.data, dtype=np.float64)
        weight = np.clip(data - contour_level(data), 0.0, None)
        if not weight.any():
            weight = np.ones_like(data)
        axis = np.arange(data.shape[0]) * mapfile.voxel_size
        centre = [float(np.sum(weight.sum(axis=axes) * axis) / weight.sum()) for axes in ((0, 1), (0, 2), (1, 2))]

        def density(geometry, matrix):
            return resampled_map(data, mapfile.voxel_size, matrix, geometry.box, geometry.voxel_size)

        return cls(stem, str(path), "map", tuple(mapfile.origin), np.asarray(centre), density)

    def atoms_outside(self, matrix: np.ndarray, geometry) -> tuple:
        """(count, total, farthest Å) of a model's atoms placed by ``matrix`` that lie
        outside the ball of ``geometry``; (0, 0, 0.0) for a map."""
        from zernike3d.maths.density import placed_points

        if self.model is None:
            return 0, 0, 0.0
        distance = np.linalg.norm(placed_points(matrix, self.model.positions) - np.asarray(geometry.center), axis=1)
        return int(np.sum(distance > geometry.radius)), len(distance), float(distance.max())

    def centring(self, geometry) -> np.ndarray:
        """The placement (3×4) that puts :attr:`centre` on the ball centre of ``geometry``."""
        return np.column_stack([np.eye(3), np.asarray(geometry.center) - self.centre])


#: a map query placed with more than this share of its density (above its contour level)
#: outside the job's ball gets a warning
MAP_OUTSIDE_WARNING = 0.02


def fit_queries(queries: list[Query], job, latents: np.ndarray, region: LatentRegion | None, fit_order: int,
                threads: int | None = None) -> list[QueryFit]:
    """The :class:`QueryFit` of every query onto ``job`` (Moments of base, component_0..,
    truncated to the order of the scores) with the particles' ``latents`` (P, K) and their
    ``region`` (None for a single map), in order; a warning per note of a fit, per model
    with atoms outside the ball as fitted, per map with more than
    :data:`MAP_OUTSIDE_WARNING` of its density above contour outside it."""
    from zernike3d.io.chimerax import contour_level
    from zernike3d.maths.basis import Basis
    from zernike3d.maths.transform import decompose

    basis = Basis.build(job.geometry, job.order)

    def one(data):
        return decompose(data, job.geometry, job.order, basis=basis, threads=threads)[0]

    latents = np.asarray(latents, dtype=np.float64)
    fits = []
    for query in queries:
        fit = fit_query(query, job, latents, region, fit_order, one)
        for note in fit.notes:
            warnings.warn(f"{query.stem}: {note}" + (" (the query is the mirror image of the job)"
                                                     if fit.alignment.hand == "mirrored" and "mirror" in note else ""))
        outside, total, farthest = query.atoms_outside(fit.matrix, job.geometry)
        if outside:
            warnings.warn(f"{query.stem}: as fitted, {outside} of {total} atoms lie outside the job's ball "
                          f"(the farthest {farthest:.1f} Å from its centre): their density is not scored")
        if query.model is None:
            lost = job.geometry.outside_fraction(np.clip(fit.density - contour_level(fit.density), 0.0, None))[0]
            if lost > MAP_OUTSIDE_WARNING:
                warnings.warn(f"{query.stem}: as fitted, {100 * lost:.1f}% of the map's density above its contour "
                              "level lies outside the job's ball: it is not scored")
        fits.append(fit)
    return fits


@dataclass(frozen=True)
class ParticleScores:
    """Every particle scored against every fitted query: ``scores`` (P, Q) (one row, the
    map itself, for a single map), ``labels`` (P,) the query each particle is assigned
    to (:func:`assign`; -1: none), per query its ``best_rows`` (the highest-scoring
    particle's row) and ``best_scores``, and ``points`` (the latent point of highest score
    in the particles' region, :func:`best_latent_point`) with their ``point_scores``."""

    scores: np.ndarray
    labels: np.ndarray
    best_rows: list[int]
    best_scores: list[float]
    points: list[np.ndarray]
    point_scores: list[float]


def score_particles(job, latents: np.ndarray, region: LatentRegion | None, fits: list[QueryFit],
                    min_score: float | None = None, top: float | None = None) -> ParticleScores:
    """:class:`ParticleScores` of the particles of ``job`` (Moments of base, component_0..)
    with ``latents`` (P, K; K = 0 for a single map, then the map itself is scored) against
    the ``fits``; ``min_score`` and ``top`` as :func:`assign`."""
    latents = np.asarray(latents, dtype=np.float64)
    components = latents.shape[1] if latents.ndim == 2 else 0
    if components == 0:
        latents = np.zeros((1, 0))
    forms = score_forms(job.moments, np.stack([fit.moments for fit in fits]), job.nlm)
    scores = particle_scores(latents, forms)
    best_rows = [int(np.nanargmax(column)) for column in scores.T]
    if components:
        assert region is not None, "the particles' region is needed to find the best latent points"
        points = [best_latent_point(forms, q, region, latents[row]) for q, row in enumerate(best_rows)]
    else:
        points = [np.zeros(0) for _ in fits]
    return ParticleScores(
        scores=scores, labels=assign(scores, min_score, top), best_rows=best_rows,
        best_scores=[float(scores[row, q]) for q, row in enumerate(best_rows)], points=points,
        point_scores=[score_at(z, forms, q) for q, z in enumerate(points)],
    )
