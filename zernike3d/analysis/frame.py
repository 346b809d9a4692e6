"""The common frame of two 3D Variability jobs of one molecule, from the molecule.

A 3DVA job is an affine family of maps, base + sum_k z_k component_k, and its base is the
population-weighted mean of its particles: two jobs of one molecule with other
populations have other bases, so aligning the bases (:func:`~zernike3d.analysis.alignment.align`)
is biased towards superimposing two different mixtures (a job with 40% and one with 75%
of its particles open: 3.8° off at order 20). What does not depend on the populations is
the family itself: every state of the molecule that a job holds is one of its maps.

The fit. The moving job B (base b, components B_k, latents w with mean mu and covariance
S over its particles) is placed on the reference job A (base a, components A_k) by the
rigid motion T (rotation R about B's ball centre, shift, hand, as the module
:mod:`zernike3d.analysis.alignment` defines them) and an overall density scale s that
minimise the mean over B's particles of the squared distance of s T(map_B(w)) from A's
affine family, a + span(A_k):

    E_w || P (s T(b + B w) - a) ||^2 = s^2 D(T) - 2 s c(T) + ||P a||^2,
    c(T) = <P a, T m>,   D(T) = ||P T m||^2 + sum_j ||P T v_j||^2,

with P the projection orthogonal to A's components and to the constant (Omega_000: ball
means removed, as for a Pearson correlation), m = b + B mu the mean particle map and
v_j = B (S^1/2)_j the particles' spread about it. The best scale leaves
||P a||^2 (1 - r^2), r = c / (||P a|| sqrt D): ``family_correlation`` r in [-1, 1] is
maximised (misfit 1 - r). It is the Pearson correlation of the bases when neither job
varies, it does not depend on the populations (any mixture of A's states lies in A's
family), and the components take part: a symmetry of the base that the components
break is broken, and a moving component outside A's span costs misfit.

The search: the ``FAMILY_PEAKS`` best rotations of the Patterson rotation function of
the two bases (a C_n base has n equal peaks, one per symmetry copy), each with both
hands and the shift of the bases' translation function; each candidate is refined on the
family at ``SEARCH_ORDER`` (one re-expansion round), the best of each hand then at the
full order, with rotation and shift together, as
:func:`~zernike3d.analysis.alignment._refine` does for one map (same taper, same
step limit and tolerance).

Reported with it (``Alignment.frame``): the method, the family and base correlations
(the latter of the base maps alone, after the family's fit: they differ when the
populations do), the symmetry copies of the base (candidates whose base misfit is within
``SYMMETRY_RATIO`` of the best, and which the components told apart), whether the
rotation is determined (the curvature of the family's self-correlation about each axis,
<L_a f, L_a f> / <f, f> per rad^2, below ``UNDETERMINED_CURVATURE``: a sphere, a
Gaussian about the centre, or a cylinder about that axis), and per state of B (its mean
and +-1 sd along each principal direction of its latents) the latents it lands on in A's
family and the residual misfit 1 - Pearson correlation of the two maps.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from zernike3d.analysis import alignment as single
from zernike3d.maths import rotation as rot
from zernike3d.maths.indexing import nlm_table

if TYPE_CHECKING:
    from zernike3d.moments import Moments

#: Patterson peaks tried (a C_n base has n equal ones)
FAMILY_PEAKS = 8
#: the candidates are screened to this gradient of the family correlation (per rad, per
#: Å): enough to rank them; the best is then refined to 1e-9
SCREEN_GTOL = 1e-5
#: two candidate rotations closer than this (degrees) are one
SAME_ROTATION_DEG = 3.0
#: a candidate is a symmetry copy of the base when its base misfit (1 - correlation)
#: is at most SYMMETRY_RATIO times the best candidate's plus SYMMETRY_SLACK
SYMMETRY_RATIO, SYMMETRY_SLACK = 1.5, 0.005
#: after the first fit, particles whose map lies farther from the reference's family
#: than TRIM_FACTOR times the TRIM_PERCENTILE-th percentile of all (the states the
#: reference lacks) are left out and the fit refined, at most TRIM_ROUNDS times
TRIM_FACTOR, TRIM_PERCENTILE, TRIM_ROUNDS = 2.0, 25, 3
#: a rotation about an axis is undetermined when a turn by theta about it changes the
#: family's self-correlation by less than curvature * theta^2 / 2 with curvature below this
#: (per rad^2; a structured map has curvatures of order l^2, 10 and more)
UNDETERMINED_CURVATURE = 1e-3


def align_jobs(moving: Moments, reference: Moments, moving_latents: np.ndarray,
               order: int | None = None) -> single.Alignment:
    """The rigid transform (rotation about B's ball centre, shift, hand) that best places
    3DVA job B = ``moving`` (:class:`~zernike3d.moments.Moments`, rows base, component_0..)
    with latents ``moving_latents`` (P, K_B) into the affine family of job A =
    ``reference`` (rows base, component_0..), see the module docstring. Returns an
    :class:`~zernike3d.analysis.alignment.Alignment` whose ``correlation`` and
    ``mirror_correlation`` are the family correlations of the two hands and whose
    ``frame`` says how it was found. ValueError as :func:`~zernike3d.analysis.alignment.align`.
    """
    single._check_compatible(moving, reference)
    order = min(moving.order, reference.order) if order is None else int(order)
    if not 1 <= order <= min(moving.order, reference.order):
        raise ValueError(f"order {order} must be between 1 and {min(moving.order, reference.order)} (stored in both files)")
    latents = np.asarray(moving_latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[1] != len(moving.names) - 1:
        raise ValueError(f"latents of shape {latents.shape} do not match {len(moving.names) - 1} components")
    mov, ref = moving.truncate(order), reference.truncate(order)
    for what, moments in (("moving", mov), ("reference", ref)):
        if not np.any(moments.moments[0, 1:]):
            raise ValueError(f"the {what} base has no structure in the ball: nothing to align")
    mixing = spread_vectors(latents)
    search_order = min(order, single.SEARCH_ORDER)
    low_mov, low_ref = mov.truncate(search_order), ref.truncate(search_order)
    rotations = _distinct(single._rotation_candidates(single._patterson(low_mov.volume(0), search_order),
                                                      single._patterson(low_ref.volume(0), search_order),
                                                      search_order, peaks=FAMILY_PEAKS))
    translation = single._TranslationFunction(low_ref.volume(0), search_order)
    low_nlm = nlm_table(search_order)
    screened: dict[str, Any] = {}
    for hand, parity in (("same", 1.0), ("mirrored", -1.0)):
        base = low_mov.moments[0] if parity > 0 else rot.mirror_moments(low_mov.moments[0], low_nlm)
        screened[hand] = []
        for rotation_matrix in rotations:
            shift = translation.best(rot.rotate_moments(base, low_nlm, rotation_matrix))[1]
            screened[hand].append(_refine_family(low_mov, low_ref, mixing, rotation_matrix, shift, parity, rounds=1,
                                                 gtol=SCREEN_GTOL))
        screened[hand].sort(key=lambda fit: -fit.correlation)
    fits = {hand: _refine_family(mov, ref, mixing, fit.rotation, fit.shift, parity, rounds=single.MAX_ROUNDS)
            for (hand, parity), fit in zip((("same", 1.0), ("mirrored", -1.0)), (screened["same"][0], screened["mirrored"][0]))}
    misfit = {hand: 1.0 - fit.correlation for hand, fit in fits.items()}
    hand = "mirrored" if misfit["mirrored"] < single.HAND_RATIO * misfit["same"] else "same"
    if hand == "mirrored":
        warnings.warn(f"the mirror image fits better (family correlation {fits['mirrored'].correlation:.4f} against "
                      f"{fits['same'].correlation:.4f}): one of the jobs has the wrong hand")
    elif not misfit["same"] < single.HAND_RATIO * misfit["mirrored"]:
        warnings.warn(f"the hand cannot be told (family correlation {fits['same'].correlation:.4f}, "
                      f"mirror image {fits['mirrored'].correlation:.4f})")
    fit = fits[hand]
    parity = 1.0 if hand == "same" else -1.0
    moved = _moved(mov, fit, parity)
    kept = np.ones(len(latents), dtype=bool)
    for _ in range(TRIM_ROUNDS):  # particles of states that the reference lacks must not pull the fit
        residuals = particle_residuals(moved, ref.moments, latents, order)
        trimmed = residuals <= TRIM_FACTOR * np.percentile(residuals, TRIM_PERCENTILE)
        if np.array_equal(trimmed, kept) or trimmed.sum() < max(10, len(latents) // 10):
            break
        kept = trimmed
        fit = _refine_family(mov, ref, spread_vectors(latents[kept]), fit.rotation, fit.shift, parity,
                             rounds=single.MAX_ROUNDS)
        moved = _moved(mov, fit, parity)
    curvatures, axes = rotation_curvatures(np.einsum("vb,bk->vk", mixing, moved), nlm_table(order))
    undetermined = [axes[:, a].tolist() for a in range(3) if curvatures[a] < UNDETERMINED_CURVATURE]
    copies = _symmetry_copies(screened[hand], fit)
    frame = {
        "method": "family: B's particles' maps placed in A's affine family (base + components), "
        "rotation, shift, hand and density scale fitted; candidates from the bases' Patterson rotation function",
        "family_correlation": fit.correlation,
        "base_correlation": _pearson(moved[0], ref.moments[0], nlm_table(order)),
        "candidates": len(rotations),
        "particles_fitted": float(kept.mean()),
        "symmetry_copies": copies,
        "rotation_determined": not undetermined,
        "undetermined_axes": undetermined,
        "rotation_curvatures": curvatures.tolist(),
        "states": state_misfits(moved, ref.moments, latents, order),
    }
    if len(undetermined) == 3:
        warnings.warn("the rotation is undetermined: the jobs' maps look the same however they are turned about the "
                      "ball centre (a sphere); the rotation reported is one of all equally good ones")
    elif undetermined:
        warnings.warn("the rotation is undetermined about the axis " + ", ".join(f"{v:.3f}" for v in undetermined[0])
                      + " (a cylinder about it): the turn about it reported is one of all equally good ones")
    linear = fit.rotation if hand == "same" else -fit.rotation
    c_mov, c_ref = np.asarray(mov.center), np.asarray(ref.center)
    return single.Alignment(
        rotation=fit.rotation,
        shift=np.asarray(fit.shift),
        matrix=np.column_stack([linear, c_ref + fit.shift - linear @ c_mov]),
        euler_zyz_deg=tuple(float(np.degrees(a)) for a in rot.euler_zyz(fit.rotation, lock=single.EULER_LOCK)),
        correlation=float(fits["same"].correlation),
        mirror_correlation=float(fits["mirrored"].correlation),
        hand=hand,
        order=order,
        volume="job",
        moving_center=tuple(mov.center),
        reference_center=tuple(ref.center),
        moving_origin=tuple(moving.origin),
        reference_origin=tuple(reference.origin),
        reference_geometry={"box": ref.box, "voxel_size": ref.voxel_size, "radius": ref.radius},
        frame=frame,
    )


def spread_vectors(latents: np.ndarray) -> np.ndarray:
    """(1 + K, 1 + K) mixing W of a job's volumes (rows base, components) into its mean
    particle map (row 0: base + mu . components) and its particles' spread about it
    (rows 1..K: components combined by the symmetric square root of the latents'
    covariance), so that the mean over particles of ||P map(w)||^2 for any linear P is
    sum over rows of ||P (W volumes)_row||^2, once the mean is taken out."""
    latents = np.asarray(latents, dtype=np.float64)
    k = latents.shape[1]
    values, vectors = np.linalg.eigh(np.atleast_2d(np.cov(latents, rowvar=False, bias=True)))
    root = vectors @ np.diag(np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    mixing = np.zeros((1 + k, 1 + k))
    mixing[0, 0], mixing[0, 1:] = 1.0, latents.mean(axis=0)
    mixing[1:, 1:] = root.T
    return mixing


def rotation_curvatures(vectors: np.ndarray, nlm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending, per rad^2) and axes (3, 3 columns) of the curvature
    G_ab = sum_i <L_a v_i, L_b v_i> / sum_i <v_i, v_i> of the summed self-correlation
    of ``vectors`` (V, K) (ball means removed) under turns about the ball centre: a turn by
    theta about an eigen-axis lowers it by about G theta^2 / 2."""
    vectors = np.array(vectors, dtype=np.complex128)
    vectors[:, 0] = 0.0
    stack = single.generator_stack(vectors, nlm)[:, 1:]  # (V, 3, K)
    gram = rot.inner_product(stack[:, :, None, :], stack[:, None, :, :], nlm).sum(axis=0)
    total = rot.inner_product(vectors, vectors, nlm).sum()
    values, axes = np.linalg.eigh(gram / total if total > 0 else gram)
    return np.clip(values, 0.0, None), axes


def state_misfits(moved: np.ndarray, reference: np.ndarray, latents: np.ndarray, order: int) -> list[dict[str, Any]]:
    """Per state of the moving job (its mean latents and +-1 sd along each principal
    direction of its latents), in the reference frame (``moved`` (1+K_B, K) its volumes
    placed there): ``latents`` of the state, ``reference_latents`` of the nearest map of
    the reference's family (least squares, ball means removed, density scale fitted) and
    ``misfit`` 1 - Pearson correlation of the two maps over the ball."""
    latents = np.asarray(latents, dtype=np.float64)
    mean = latents.mean(axis=0)
    values, vectors = np.linalg.eigh(np.atleast_2d(np.cov(latents, rowvar=False, bias=True)))
    points = [mean] + [mean + sign * np.sqrt(max(v, 0.0)) * vectors[:, j]
                       for j, v in reversed(list(enumerate(values))) for sign in (1.0, -1.0)]
    from zernike3d.analysis.compare import ball_coordinates

    mean_free = _without_mean(ball_coordinates(reference, order))
    rows = []
    for point in points:
        target_free = _without_mean(ball_coordinates(moved[0] + point @ moved[1:], order))[0]
        # state ~ s (a + A z): solve target = alpha a + A beta, then z = beta / alpha
        coefficients, *_ = np.linalg.lstsq(mean_free.T, target_free, rcond=None)
        fitted = mean_free.T @ coefficients
        rows.append({
            "latents": point.tolist(),
            "reference_latents": (coefficients[1:] / coefficients[0]).tolist() if coefficients[0] != 0 else None,
            "misfit": float(1.0 - _cosine(fitted, target_free)),
        })
    return rows


def particle_residuals(moved: np.ndarray, reference: np.ndarray, latents: np.ndarray, order: int) -> np.ndarray:
    """(P,) the distance of each particle's map of the moving job (volumes ``moved``
    (1+K_B, K) placed in the reference frame, ``latents`` (P, K_B)) from the reference's
    affine family (``reference`` (1+K_A, K)), ball means removed, with its own density
    scale fitted, relative to the norm of the reference base's part outside its
    components' span (sqrt(1 - r^2), r the family correlation of the one particle)."""
    from zernike3d.analysis.compare import ball_coordinates

    nlm = nlm_table(order)
    stack = ball_coordinates(_reference_stack(reference, np.ones(len(nlm)), nlm), order)  # a_perp, q_1..
    x = _without_mean(ball_coordinates(moved, order))
    projected = x - (x @ stack[1:].T) @ stack[1:]
    gram, target = projected @ projected.T, projected @ stack[0]
    u = np.column_stack([np.ones(len(latents)), np.asarray(latents, dtype=np.float64)])
    quadratic = np.einsum("pi,ij,pj->p", u, gram, u)
    linear = u @ target
    norm = stack[0] @ stack[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine_squared = np.where(quadratic > 0, linear**2 / (quadratic * norm), 0.0)
    return np.sqrt(np.clip(1.0 - cosine_squared, 0.0, None))


def _without_mean(ball):
    """Ball coordinates (V, 2K) with the Omega_000 terms (real and imaginary) zeroed."""
    out = np.array(ball)
    out[:, 0] = 0.0
    out[:, out.shape[1] // 2] = 0.0
    return out


def _cosine(a, b):
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0


def _pearson(a, b, nlm):
    a, b = np.array(a), np.array(b)
    a[0] = b[0] = 0.0
    denominator = np.sqrt(rot.inner_product(a, a, nlm) * rot.inner_product(b, b, nlm))
    return float(rot.inner_product(a, b, nlm) / denominator) if denominator > 0 else 0.0


def _distinct(rotations):
    """``rotations`` without those within SAME_ROTATION_DEG of an earlier one."""
    kept = []
    for r in rotations:
        if all(_angle_deg(r, k) > SAME_ROTATION_DEG for k in kept):
            kept.append(r)
    return kept


def _angle_deg(a, b):
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1.0, 1.0))))


def _symmetry_copies(candidates, best):
    """The candidates (after screening) whose base misfit is as good as the best's (see
    SYMMETRY_RATIO), as {angle_deg: from the chosen rotation, base_correlation,
    family_correlation}, one per distinct rotation, the chosen one first."""
    best_base = max(c.base_correlation for c in candidates)
    limit = SYMMETRY_RATIO * (1.0 - best_base) + SYMMETRY_SLACK
    copies = []
    for c in sorted(candidates, key=lambda c: -c.correlation):
        if 1.0 - c.base_correlation <= limit and all(abs(_angle_deg(c.rotation, k.rotation)) > SAME_ROTATION_DEG
                                                       for k in copies):
            copies.append(c)
    return [{"angle_deg": _angle_deg(best.rotation, c.rotation), "base_correlation": c.base_correlation,
             "family_correlation": c.correlation} for c in copies]


class _Fit:
    def __init__(self, rotation: np.ndarray, shift: np.ndarray, correlation: float, base_correlation: float,
                 own_shift: np.ndarray) -> None:
        self.rotation, self.shift, self.correlation = rotation, shift, correlation
        self.base_correlation, self.own_shift = base_correlation, own_shift


def _moved(mov, fit, parity):
    """All volumes of ``mov`` placed by ``fit`` (shift by re-expansion, then mirror and
    rotation, exact): (1+K, K) moments in the reference frame."""
    moments = rot.translate_moments(mov.moments, single.working_geometry(mov), mov.order, fit.own_shift)
    if parity < 0:
        moments = rot.mirror_moments(moments, mov.nlm)
    return rot.rotate_moments(moments, mov.nlm, fit.rotation)


def _reference_stack(reference, weights, nlm):
    """(1 + K_A, K): the reference base with its ball mean and its part along the
    components removed, then an orthonormal basis of the components' span (without the
    mean), all in the inner product weighted by ``weights`` (K,) per coefficient."""
    from zernike3d.analysis.compare import ball_coordinates

    order = int(nlm[-1, 0])
    weighted = np.array(reference) * weights
    weighted[:, 0] = 0.0
    x = ball_coordinates(weighted, order)
    basis = np.linalg.qr(x[1:].T)[0] if len(x) > 1 else np.zeros((x.shape[1], 0))
    rank = np.linalg.matrix_rank(x[1:]) if len(x) > 1 else 0
    basis = basis[:, :rank]
    base = x[0] - basis @ (basis.T @ x[0])
    return _from_ball_coordinates(np.vstack([base, basis.T]), order)


def _from_ball_coordinates(x, order):
    """Moments (V, K) of ball coordinates (V, 2K), the inverse of
    :func:`~zernike3d.analysis.compare.ball_coordinates`."""
    k = x.shape[1] // 2
    scale = np.sqrt(np.where(nlm_table(order)[:, 2] == 0, 1.0, 2.0))
    return (x[:, :k] + 1j * x[:, k:]) / scale


def _refine_family(mov, ref, mixing, rotation_matrix, shift, parity, rounds, gtol=1e-9):
    """Rotation and shift of the moving job that maximise the family correlation, at
    the order of ``mov`` and ``ref`` (Moments, both truncated to it), from a start, at
    most ``rounds`` rounds of re-expansion (as alignment._refine), BFGS to gradient
    ``gtol``. Returns a _Fit."""
    order = mov.order
    nlm = nlm_table(order)
    limit = 0.25 * np.pi * mov.radius / order
    taper = np.cos(0.5 * np.pi * nlm[:, 0] / (order + 1))
    tapered = _reference_stack(ref.moments, taper, nlm)
    plain = _reference_stack(ref.moments, np.ones(len(nlm)), nlm)
    own_shift = parity * rotation_matrix.T @ shift
    grid = single.working_geometry(mov)
    for _ in range(rounds):
        taylor = rot.translate_with_derivatives(mov.moments, grid, order, own_shift)  # (10, 1+K, K)
        if parity < 0:
            taylor = rot.mirror_moments(taylor, nlm)
        vectors = np.einsum("vb,tbk->tvk", mixing, taylor)
        objective = _FamilyObjective(tapered, vectors * taper, nlm, rotation_matrix)
        x = objective.maximise(np.zeros(6), gtol)
        rotation_matrix = objective.rotation(x)
        step = x[3:] * min(1.0, limit / max(np.linalg.norm(x[3:]), 1e-300))
        own_shift = own_shift + step
        if np.linalg.norm(step) < single.SHIFT_TOLERANCE:
            break
    correlation = _FamilyObjective(plain, vectors, nlm, objective.start).correlation(x)
    base = single._Objective(ref.moments[0], taylor[:, 0], nlm, objective.start).correlation(x)
    return _Fit(rotation_matrix, parity * rotation_matrix @ own_shift, float(correlation), float(base), own_shift)


class _FamilyObjective:
    """The family correlation r = <s_0, T h_0> / (||s_0|| sqrt(D)), D = sum_i ||P T h_i||^2
    (module docstring), and its exact gradient in x = (w, d), rotation exp([w]) start
    and shift step d.

    ``reference`` (1 + K_A, K): s_0 = P a, then s_1.. an orthonormal basis of A's
    components (:func:`_reference_stack`); ``taylor`` (T, V, K): the moving vectors
    h_i (the mean particle map and the spread vectors) at d = 0 alone (T = 1) or with
    their 3 first and 6 second derivatives in the shift (T = 10), as alignment._Objective.
    """

    def __init__(self, reference: np.ndarray, taylor: np.ndarray, nlm: np.ndarray, start: np.ndarray) -> None:
        self.nlm, self.start = nlm, start
        self.stack = single.generator_stack(reference, nlm)  # (S, 4, K)
        self.reference_norm = np.sqrt(rot.inner_product(reference[0], reference[0], nlm))
        taylor = np.array(taylor)
        taylor[..., 0] = 0.0
        self.value = taylor[0]
        self.first = taylor[1:4] if len(taylor) > 1 else None
        if len(taylor) > 1:  # rows by the shift component they multiply, for plain matrix products
            hessian = np.zeros((3, 3) + taylor.shape[1:], dtype=np.complex128)
            for (a, b), term in zip(rot.SECOND_DERIVATIVES, taylor[4:10]):
                hessian[a, b] = hessian[b, a] = term
            # real views: a real shift times complex moments stays one BLAS product
            self.hessian = hessian.reshape(3, -1).view(np.float64)  # symmetric: row b holds H_ab for every a
            self.first_rows = np.ascontiguousarray(self.first).reshape(3, -1).view(np.float64)

    def rotation(self, x: np.ndarray) -> np.ndarray:
        from scipy.spatial.transform import Rotation

        return Rotation.from_rotvec(x[:3]).as_matrix() @ self.start

    def correlation(self, x: np.ndarray) -> float:
        return -self(x)[0]

    def maximise(self, x0: np.ndarray, gtol: float = 1e-9) -> np.ndarray:
        from scipy.optimize import minimize

        return minimize(self, x0, jac=True, method="BFGS", options={"gtol": gtol}).x

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(-r, -gradient) at x."""
        ip = rot.inner_product
        w, d = x[:3], x[3:]
        h, dh = self.value, None
        if d.size and self.first is not None:
            hessian_d = (d @ self.hessian).view(np.complex128).reshape(self.first.shape)  # (3, V, K): sum_b d_b H_ab
            h = h + (d @ self.first_rows + 0.5 * d @ hessian_d.reshape(3, -1).view(np.float64)).view(np.complex128).reshape(h.shape)
            dh = self.first + hessian_d  # (3, V, K): dh/dd_a
        shape = self.stack.shape
        rotated = rot.rotate_moments(self.stack.reshape(-1, shape[-1]), self.nlm, self.rotation(x).T).reshape(shape)
        c = ip(rotated[:, None, 0, :], h[None], self.nlm)  # (S, V)
        c_e = -ip(rotated[:, 1:4, None, :], h[None, None], self.nlm)  # (S, 3, V)
        spread = ip(h, h, self.nlm).sum() - np.sum(c[1:] ** 2)
        scale = 1.0 / (self.reference_norm * np.sqrt(spread))
        value = c[0, 0] * scale
        jacobian = single._left_jacobian(w).T
        grad_c = jacobian @ c_e[0, :, 0]
        grad_spread = -2.0 * jacobian @ np.einsum("kv,kav->a", c[1:], c_e[1:])
        gradient = [grad_c * scale - value * grad_spread / (2 * spread)]
        if dh is not None:
            c_d = ip(rotated[:, None, None, 0, :], np.moveaxis(dh, 0, 1)[None], self.nlm)  # (S, V, 3)
            d_spread = 2.0 * ip(h[None], dh, self.nlm).sum(axis=1) - 2.0 * np.einsum("kv,kva->a", c[1:], c_d[1:])
            gradient.append(c_d[0, 0] * scale - value * d_spread / (2 * spread))
        return -value, -np.concatenate(gradient)


def symmetry_note(alignment: single.Alignment) -> str | None:
    """One line when the base has several equally good placements (a rotational
    symmetry) that the components told apart; None otherwise."""
    copies = (alignment.frame or {}).get("symmetry_copies", [])
    if len(copies) <= 1:
        return None
    return (f"  the base has {len(copies)} equally good placements (a rotational symmetry); the components chose "
            f"the one with family correlation {copies[0]['family_correlation']:.4f} (next best "
            f"{max(c['family_correlation'] for c in copies[1:]):.4f})")
