"""Compare the volumes and 3DVA latent spaces of several datasets, in Zernike space.

Every quantity here is an inner product over the unit ball of two expansions stored as
this project's moments (m >= 0 columns, docs/conventions.md). For real maps

    <f, g> = sum over n, l and m = -l..l of Omega_f,nlm conj(Omega_g,nlm)
           = Re sum over m >= 0 of w_m Omega_f,nlm conj(Omega_g,nlm),   w_0 = 1, w_m = 2,

(Parseval; as :func:`zernike3d.maths.rotation.inner_product`), in (map density)^2 times unit-
ball volume. :func:`ball_coordinates` turns moments into real vectors whose dot products
are exactly these inner products, so that ordinary linear algebra (least squares,
principal angles) works on them. All datasets must share the ball radius in Å (the
moments then describe functions on the same ball, whatever the voxel size); they are
compared up to their common (lowest) order.

* :func:`order_correlation`: after alignment, the correlation of two expansions within
  each order n (a resolution-like curve in Zernike space: 1 where the maps agree in the
  detail that order n adds; an expansion to order n reaches about
  :func:`zernike3d.maths.resolution.expected_resolution` = 1.81 π R / (n + 2.5) Å).
* :func:`zcc_curve`: the original tool's per-order "ZCC", sum |a||b| / sqrt(sum |a|^2 sum
  |b|^2) over the (l, m) of order n; it ignores phases, so it needs no alignment but is
  close to 1 for any two maps with similar power. The original summed only m >= 0; here
  each m > 0 term counts twice, i.e. the sums run over m = -l..l as the definition means.
* :func:`invariant_distances`: distances between the invariants F_nl of volumes (no
  alignment needed; a lower bound of the L2 distance of the maps over all rotations).
* :func:`latent_relation`: overlap of two sets of 3DVA components (in one frame, i.e.
  after alignment) and the least-squares map of one latent space into the other.
"""

from dataclasses import dataclass

import numpy as np

from zernike3d.maths.indexing import coefficient_count, nlm_table
from zernike3d.maths.invariants import invariants


def ball_coordinates(moments, order):
    """Real vectors (V, 2 K) of moments (V, K') truncated to ``order`` (K columns): the
    real and imaginary parts scaled by sqrt(w_m), so that x_f . x_g = <f, g>, the L2 inner
    product over the unit ball of the two expansions."""
    moments = np.atleast_2d(moments)[:, : coefficient_count(order)]
    scale = np.sqrt(_m_weights(order))
    return np.concatenate([moments.real * scale, moments.imag * scale], axis=1)


def _m_weights(order):
    """w_m per stored coefficient: 1 for m = 0, 2 for m > 0 (the m < 0 twin)."""
    return np.where(nlm_table(order)[:, 2] == 0, 1.0, 2.0)


def _per_order(values, order):
    """Sums of ``values`` (K,) over the coefficients of each order n: (order + 1,)."""
    return np.bincount(nlm_table(order)[:, 0], weights=values, minlength=order + 1)


def _normalised(cross, power_a, power_b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((power_a > 0) & (power_b > 0), cross / np.sqrt(power_a * power_b), np.nan)


#: an order whose power is below this share of an expansion's total power (ball mean
#: excluded) carries no signal worth correlating: its correlation is NaN (an exact twin's
#: n = 1, the dipole of a map centred on its mass, correlated 0.94: rounding over rounding)
NEGLIGIBLE_POWER = 1e-4


def order_correlation(a, b, order):
    """Correlation per order n of two expansions (K,) in the same frame, up to ``order``:
    <a, b>_n / sqrt(<a, a>_n <b, b>_n), each sum over the (l, m = -l..l) of order n.
    (order + 1,) in [-1, 1]; NaN where either expansion's power at that order is below
    :data:`NEGLIGIBLE_POWER` of its total power without the ball mean (n = 0, l = 0 is
    kept unless that leaves nothing: it is the mean alone)."""
    k = coefficient_count(order)
    a, b = np.asarray(a)[:k], np.asarray(b)[:k]
    weight = _m_weights(order)
    power_a, power_b = _per_order(weight * np.abs(a) ** 2, order), _per_order(weight * np.abs(b) ** 2, order)
    correlation = _normalised(_per_order(weight * np.real(a * np.conj(b)), order), power_a, power_b)
    for power, mean in ((power_a, a[0]), (power_b, b[0])):
        negligible = power < NEGLIGIBLE_POWER * (power.sum() - np.abs(mean) ** 2)
        negligible[0] = False
        correlation[negligible] = np.nan
    return correlation


def zcc_curve(a, b, order):
    """The original tool's per-order Zernike correlation coefficient of two expansions
    (K,): sum |a_nlm| |b_nlm| / sqrt(sum |a_nlm|^2 sum |b_nlm|^2), sums over l and
    m = -l..l of order n (stored m > 0 terms counted twice). (order + 1,) in [0, 1]."""
    k = coefficient_count(order)
    a, b = np.abs(np.asarray(a)[:k]), np.abs(np.asarray(b)[:k])
    weight = _m_weights(order)
    return _normalised(_per_order(weight * a * b, order), _per_order(weight * a * a, order),
                       _per_order(weight * b * b, order))


@dataclass(frozen=True)
class InvariantDistances:
    """Distances between the invariant vectors F (V, n_nl) of V volumes.

    ``euclidean`` (V, V): ||F_a - F_b|| in map density units (a lower bound of the L2
    distance over the unit ball between the maps, however one is rotated about the
    centre); ``shape`` (V, V): the same between F_a / ||F_a|| and F_b / ||F_b|| (each
    volume scaled to unit Parseval norm), in [0, sqrt 2]: 3DVA components have an arbitrary
    scale, and two jobs' maps may differ in overall density scale; ``norms`` (V,) = ||F||.
    """

    euclidean: np.ndarray
    shape: np.ndarray
    norms: np.ndarray


def invariant_distances(moments, order):
    """:class:`InvariantDistances` of the volumes ``moments`` (V, K) up to ``order``."""
    values = invariants(np.atleast_2d(moments)[:, : coefficient_count(order)], order)
    norms = np.linalg.norm(values, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(norms[:, None] > 0, values / norms[:, None], 0.0)
    return InvariantDistances(_pairwise(values), _pairwise(unit), norms)


def _pairwise(x):
    return np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)


@dataclass(frozen=True)
class LatentRelation:
    """How the latent space of a job B relates to that of a reference job A, with B's
    maps expressed in A's frame (after alignment).

    ``overlap`` (K_B, K_A): cosines <U_B,j, U_A,i> between the components made
    orthonormal, each set by its symmetric (Löwdin) orthonormalisation U = C (C^T C)^-1/2,
    the orthonormal set closest to the components (1 or -1: the same motion, up to the
    arbitrary sign of a 3DVA component; a twin's is the identity, even when its
    components, truncated to the order compared, are not orthogonal; its singular
    values are the cosines of the principal angles);
    ``principal_angles_deg`` (min(K_A, K_B),): principal angles between the two component
    subspaces (scipy.linalg.subspace_angles), smallest first (0: a shared direction);
    ``captured`` (K_B,): share of each ||C_B,j||^2 inside the span of A's components;
    ``matrix`` (K_A, K_B) and ``offset`` (K_A,): the least-squares solution of
    base_B + C_B z_B ~ base_A + C_A z_A, z_A = matrix @ z_B + offset, which places a
    particle of B in A's latent space (meaningful for the directions that B shares with
    A, i.e. where ``captured`` is near 1); ``offset_residual``: ||r||^2 / ||base_A||^2,
    r the part of base_B - base_A that A's components cannot express (0 for a twin, small
    when B's base is one of A's states).
    """

    overlap: np.ndarray
    principal_angles_deg: np.ndarray
    captured: np.ndarray
    matrix: np.ndarray
    offset: np.ndarray
    offset_residual: float

    def map_latents(self, latents_b):
        """B's latents (P, K_B) placed in A's latent space: (P, K_A) float64."""
        return np.asarray(latents_b, dtype=np.float64) @ self.matrix.T + self.offset

    def to_json(self):
        return {
            "overlap": self.overlap.tolist(),
            "principal_angles_deg": self.principal_angles_deg.tolist(),
            "captured": self.captured.tolist(),
            "matrix": self.matrix.tolist(),
            "offset": self.offset.tolist(),
            "offset_residual": float(self.offset_residual),
        }


def latent_relation(reference, other, order):
    """:class:`LatentRelation` of two 3DVA jobs' moments (rows base, component_0.., in the
    same frame and about the same centre), compared up to ``order``."""
    from scipy.linalg import subspace_angles

    a = ball_coordinates(reference, order)
    b = ball_coordinates(other, order)
    components_a, components_b = a[1:].T, b[1:].T  # (D, K_A), (D, K_B)
    base_difference = b[0] - a[0]
    norms_b = np.linalg.norm(components_b, axis=0)
    overlap = _lowdin(components_b).T @ _lowdin(components_a)
    targets = np.column_stack([components_b, base_difference])
    solution, *_ = np.linalg.lstsq(components_a, targets, rcond=None)
    explained = components_a @ solution
    captured = np.sum(explained[:, :-1] ** 2, axis=0) / norms_b**2
    residual = np.sum((targets[:, -1] - explained[:, -1]) ** 2)
    total = np.sum(a[0] ** 2)
    return LatentRelation(
        overlap=overlap,
        principal_angles_deg=np.sort(np.degrees(subspace_angles(components_a, components_b))),
        captured=captured,
        matrix=solution[:, :-1],
        offset=solution[:, -1],
        offset_residual=float(residual / total) if total > 0 else 0.0,
    )


def _lowdin(columns):
    """The orthonormal columns closest to ``columns`` (D, K): C (C^T C)^-1/2 (through the
    SVD C = U S V^T it is U V^T)."""
    u, _, vt = np.linalg.svd(columns, full_matrices=False)
    return u @ vt
