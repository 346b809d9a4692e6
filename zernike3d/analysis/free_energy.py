"""What the joint landscape says about states and populations: whether a job's particles
lie where the reference has states, and the apparent free energy of each job.

Novelty. The reference's states are a Gaussian mixture of its particles' joint
coordinates (scikit-learn, full covariances, the number of components chosen by BIC up
to ``max_states``). A particle of any job lies *beyond the reference* when its
Mahalanobis distance to every reference state exceeds the ``BEYOND_QUANTILE`` quantile
of the chi^2 distribution with as many degrees of freedom as axes, each state's
covariance widened to STATE_WIDENING^2 Sigma + (MODEL_FLOOR s)^2 I, s^2 the reference's
variance per axis (trace of its particles' covariance / axes). The yardstick is the
reference's states and what two jobs' models of one state differ by, not one job's
sampling density: two jobs' invariants of one state differ (other components, the
expansion truncated about another centre), so one job's particles of a state fall off
the other's, far beyond the distance between neighbouring particles of one job (the
nearest-neighbour yardstick flagged 54% of such a job's particles). A state of a 3DVA
job is a thin sheet in invariant space (its latents vary in K directions, the
invariants span more): on the synthetic pairs of tests/test_compare.py its thinnest
widths are 1e-4 of the invariants' scale while the other job's particles of the same
state lie 3e-3 off, 18% of the reference's spread per axis, hence the floor of
MODEL_FLOOR = 25% of it. The widening allows a job's state to be up to 1.5 times
broader than the reference's. A state the reference lacks lies several floors away from
all of the reference's (a new state closer to a known one than about 1.6 s is not told
from a model difference).

Free energy. Each job's apparent free energy along the joint axes is G(x) = -kT ln p(x),
p the job's own density of particles (share per unit of the axes), with one zero for all
jobs (the reference's lowest bin), so that G_job(x) - G_ref(x) = -kT ln(p_job / p_ref) at
every x. Bins holding fewer than ``min_particles`` particles are NaN (masked), not
-kT ln of a count of noise. Intervals: 2.5 and 97.5 percentiles over bootstrap
resamplings of each job's particles (multinomial draws of its histogram: the same as
drawing its particles with replacement). Per joint state (cluster) c, the ΔG of job j
relative to the reference is -kT ln(p_j,c / p_ref,c), its interval from the clusters'
bootstrap (:class:`~zernike3d.analysis.landscape.Populations`). In units of kT; times
R T (:func:`kt_kcal_per_mol`) in kcal/mol. This reads a population as a Boltzmann
weight: it assumes the particles were at equilibrium at that temperature when the grid
was plunged, and that vitrification froze the populations (faster than the molecule
converts between states), and that every state is picked and kept alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zernike3d.analysis.landscape import Populations

#: the reference's states' covariances are widened by this factor on every axis ...
STATE_WIDENING = 1.5
#: ... and every state is at least this share of the reference's spread per axis wide
MODEL_FLOOR = 0.25
#: a particle beyond this quantile of chi^2 (Mahalanobis distance to every widened
#: reference state) lies beyond the reference
BEYOND_QUANTILE = 0.999
#: gas constant, kcal / (mol K)
GAS_CONSTANT = 1.987204259e-3


def kt_kcal_per_mol(temperature: float) -> float:
    """kT per mole in kcal/mol at ``temperature`` (K): R T."""
    return GAS_CONSTANT * float(temperature)


@dataclass(frozen=True)
class ReferenceStates:
    """Gaussian states of the reference's particles in the joint coordinates: ``means``
    (S, A), ``covariances`` (S, A, A) (as fitted, not widened), ``weights`` (S,);
    ``spread``: the reference's standard deviation per axis, sqrt(trace(cov) / A)."""

    means: np.ndarray
    covariances: np.ndarray
    weights: np.ndarray
    spread: float

    def distance(self, coords: np.ndarray) -> np.ndarray:
        """(P,) the smallest Mahalanobis distance of each point (P, A) to a state, every
        covariance widened as the module docstring says (in widened state widths)."""
        coords = np.asarray(coords, dtype=np.float64)
        best = np.full(len(coords), np.inf)
        floor = (MODEL_FLOOR * self.spread) ** 2 * np.eye(coords.shape[1])
        for mean, covariance in zip(self.means, self.covariances):
            factor = np.linalg.cholesky(covariance * STATE_WIDENING**2 + floor)
            whitened = np.linalg.solve(factor, (coords - mean).T)
            best = np.minimum(best, np.sqrt(np.sum(whitened**2, axis=0)))
        return best

    def beyond(self, coords: np.ndarray) -> np.ndarray:
        """(P,) bool: beyond the reference (module docstring)."""
        from scipy.stats import chi2

        limit = np.sqrt(chi2.ppf(BEYOND_QUANTILE, np.shape(coords)[1]))
        return self.distance(coords) > limit


def fit_reference_states(coords: np.ndarray, max_states: int, seed: int = 0, sample: int = 20000) -> ReferenceStates:
    """:class:`ReferenceStates` of the reference's particles ``coords`` (P, A): Gaussian
    mixtures of 1 .. ``max_states`` components fitted to at most ``sample`` of them, the
    one with the lowest BIC."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    coords = np.asarray(coords, dtype=np.float64)
    fit = coords[rng.permutation(len(coords))[:sample]]
    best: tuple[float, Any] | None = None
    for states in range(1, max(1, min(max_states, len(fit) // (4 * fit.shape[1] ** 2 + 1))) + 1):
        model = GaussianMixture(states, covariance_type="full", reg_covar=1e-6 * np.var(fit), n_init=2,
                                random_state=seed).fit(fit)
        score = model.bic(fit)
        if best is None or score < best[0]:
            best = (score, model)
    assert best is not None  # at least one mixture is fitted
    model = best[1]
    spread = float(np.sqrt(np.trace(np.atleast_2d(np.cov(fit, rowvar=False))) / fit.shape[1]))
    return ReferenceStates(model.means_, model.covariances_, model.weights_, spread)


@dataclass(frozen=True)
class Profile:
    """Apparent free energy on a grid of bins, per job: ``edges`` (one array of bin
    edges per axis of the grid), ``counts`` (J, *bins) particles, ``g`` (J, *bins) in kT
    (NaN where masked), ``low``, ``high`` (J, *bins) its 95% bootstrap interval."""

    edges: list
    counts: np.ndarray
    g: np.ndarray
    low: np.ndarray
    high: np.ndarray


def free_energy_profile(coords: np.ndarray, dataset: np.ndarray, n_datasets: int, axes: Sequence[int], bins: int,
                        min_particles: int = 20, bootstrap: int = 100, seed: int = 0, reference: int = 0) -> Profile:
    """:class:`Profile` of the jobs' particles ``coords`` (P, A) on joint ``axes`` (one
    or two indices), ``bins`` per axis over the 0.5 to 99.5 percentiles of all particles;
    zero: the reference's lowest unmasked bin."""
    rng = np.random.default_rng(seed)
    edges = []
    for a in axes:
        low, high = np.percentile(coords[:, a], [0.5, 99.5])
        edges.append(np.linspace(low, high, bins + 1) if high > low else np.linspace(low - 1, low + 1, bins + 1))
    area = np.prod([e[1] - e[0] for e in edges])
    shape = (bins,) * len(axes)
    counts = np.stack([np.histogramdd(coords[dataset == j][:, list(axes)], bins=edges)[0] for j in range(n_datasets)])
    totals = np.maximum(counts.reshape(n_datasets, -1).sum(axis=1), 1)

    def energy(c: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            g = -np.log(c / totals.reshape((-1,) + (1,) * len(axes)) / area)
        return np.where(counts >= min_particles, g, np.nan)

    g = energy(counts)
    draws = np.empty((bootstrap,) + counts.shape)
    for b in range(bootstrap):
        for j in range(n_datasets):
            flat = counts[j].ravel()
            draws[b, j] = rng.multinomial(int(flat.sum()), flat / max(flat.sum(), 1)).reshape(shape)
        draws[b] = energy(draws[b])
    zero = np.nanmin(g[reference]) if np.isfinite(g[reference]).any() else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # masked bins: all-NaN slices
        low, high = np.nanpercentile(np.where(np.isfinite(draws), draws, np.nan), [2.5, 97.5], axis=0) \
            if bootstrap else (g, g)
    masked = ~np.isfinite(g)
    return Profile(edges, counts, g - zero, np.where(masked, np.nan, low - zero), np.where(masked, np.nan, high - zero))


def state_free_energies(populations: Populations, reference: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per job and joint state: (dG, low, high) (J, C) in kT, dG = -ln(p_j,c / p_ref,c),
    the interval the 2.5 and 97.5 percentiles of the same over the populations' bootstrap
    draws (0 for the reference; +inf where the job has no particle in the state, NaN
    where the reference has none)."""
    assert populations.draws is not None, "populations without their bootstrap draws"
    with np.errstate(divide="ignore", invalid="ignore"):
        dg = -np.log(populations.fractions / populations.fractions[reference])
        draws = -np.log(populations.draws / populations.draws[:, reference : reference + 1])
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    for array in (dg, low, high):
        array[reference] = 0.0
    return dg, low, high
