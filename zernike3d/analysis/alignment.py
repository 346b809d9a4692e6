"""Rigid alignment of two maps from their Zernike moments: rotation, shift and hand.

The model. Positions p of the moving map and q of the reference are in Å from the
centre of their voxel [0, 0, 0]; c_mov and c_ref are the two ball centres (which need not
sit at the same voxel: the boxes may differ, the ball radius in Å may not). The moving map
placed on the reference is

    q = A (p - c_mov) + c_ref + shift,     A = R (hand "same") or A = -R ("mirrored"),

i.e. the moving map is (for "mirrored": inverted through its ball centre, then) rotated by
the proper rotation R about its ball centre, carried onto the reference's ball centre and
moved by ``shift`` (Å, reference frame). ``matrix`` is [A | c_ref + shift - A c_mov]: it
takes a point of the moving map, in Å from the centre of its voxel [0, 0, 0], to the same
point of the molecule in Å from the centre of the reference's voxel [0, 0, 0] (3x4,
row-major; MRC origins not added). :attr:`Alignment.chimerax_matrix` is the same map in
ChimeraX's coordinates, origins included: what ``view matrix`` sets and ``measure
rotation`` reports (see :meth:`Alignment.chimerax_command`).

The search, global (no starting guess), in the manner of molecular replacement:

1. Rotation function. The Patterson function (autocorrelation) of each expansion does not
   change when the map moves and turns with it, so rotations are searched on it, with no
   shift to guess: its moments up to ``SEARCH_ORDER`` are correlated over a grid of
   ``SEARCH_ANGLES`` x ``SEARCH_ANGLES`` x ``SEARCH_ANGLES / 2`` ZYZ Euler angles (5.6°
   apart) by one ducc0 rotation per (beta, radial index) and an FFT along alpha
   (:func:`zernike3d.maths.rotation.correlation_grid`). Its best ``PEAKS`` local maxima
   are refined (BFGS, exact gradient). A Patterson function is centrosymmetric: it cannot
   tell the hand, so each rotation is tried with both hands.
2. Translation function. For each hand and each candidate rotation, the rotated moving
   expansion (order ``SEARCH_ORDER``) is cross-correlated with the reference on the
   reference's grid, over every integer shift at once (FFT); the best (rotation, shift)
   of each hand is kept.
3. Joint refinement at the full order, for each hand: rotation and shift together, from
   re-expansions of the moving map about its current shift with their first and second
   derivatives (:func:`zernike3d.maths.rotation.translate_with_derivatives`); see
   :func:`_refine`. After one round of each, a hand whose misfit (1 - correlation) is
   more than ``CONTENDER`` times the other's is not refined further: it cannot win.

The correlation reported is Pearson's over the ball between the two aligned expansions:
the inner product over the unit ball with the ball means (the Omega_000 terms, Z_000 is
constant) removed, divided by both norms.

Hand: with misfits 1 - correlation, ``mirrored`` when the mirror image's misfit is below
``HAND_RATIO`` times the direct one (then a warning); when neither misfit is below
``HAND_RATIO`` times the other, the hand is ``same`` and a warning says that the maps
cannot tell. (A flat object is nearly its own mirror image: hand-vol.mrc, a hand, fits
its own mirror image with correlation 0.98 against 0.99 at order 20.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import warnings
from typing import TYPE_CHECKING

import numpy as np

from zernike3d.maths.indexing import nlm_table, truncate
from zernike3d.maths import rotation as rot

if TYPE_CHECKING:
    from zernike3d.moments import Moments

SEARCH_ORDER = 12
SEARCH_ANGLES = 64
PEAKS = 3
SHIFT_TOLERANCE = 0.05
MAX_ROUNDS = 6
CONTENDER = 4.0
HAND_RATIO = 0.5
#: the reported Euler angles treat sin(beta) below this as gimbal lock (gamma = 0): the
#: fit's rounding leaves a turn about z a few 1e-9 off, which would read (101, 0, -101)
EULER_LOCK = 1e-6
#: re-expansions run on at most 2 n + 16 voxels across the ball (see working_geometry)
WORKING_VOXELS_PER_ORDER, WORKING_MARGIN = 2, 16
#: an aligned map whose ball centre lands closer than this (in voxels of the reference) to
#: the reference's keeps its moments about its own centre (:func:`needs_recentring`)
RECENTRE_TOLERANCE_VOXELS = 0.05


@dataclass
class Alignment:
    """A rigid fit of a moving map onto a reference (see the module docstring).

    rotation: 3x3 proper rotation R, acting on (x, y, z) about the moving ball centre
    (after the inversion when ``hand`` is "mirrored"); shift: (3,) Å, where the moving
    ball centre lands relative to the reference ball centre; matrix: 3x4 [A | t], Å, from
    the moving map's voxel-[0, 0, 0] frame to the reference's; euler_zyz_deg: R as ZYZ
    Euler angles (alpha, beta, gamma) in degrees, R = Rz(alpha) Ry(beta) Rz(gamma);
    correlation: Pearson correlation over the ball of the aligned expansions for the best
    fit of the moving map as it is; mirror_correlation: the same for its mirror image
    (both are always reported; ``hand`` says which fit ``rotation``, ``shift`` and
    ``matrix`` describe; a hand that cannot win, its misfit 1 - correlation above
    ``CONTENDER`` times the other's after one refinement round, is not refined further,
    so its correlation is a lower bound); hand: "same" or "mirrored"; order: the
    order of the expansions compared; volume: the name of the volume aligned.
    moving_center, reference_center: ball centres (x, y, z) Å; moving_origin,
    reference_origin: MRC origins (x, y, z) Å; reference_geometry: box, voxel_size,
    radius of the reference (for :func:`express_in_reference_frame`).
    """

    rotation: np.ndarray
    shift: np.ndarray
    matrix: np.ndarray
    euler_zyz_deg: tuple
    correlation: float
    mirror_correlation: float
    hand: str
    order: int
    volume: str = ""
    moving_center: tuple = (0.0, 0.0, 0.0)
    reference_center: tuple = (0.0, 0.0, 0.0)
    moving_origin: tuple = (0.0, 0.0, 0.0)
    reference_origin: tuple = (0.0, 0.0, 0.0)
    reference_geometry: dict | None = None
    #: how the frame was found, for a fit of two 3DVA jobs as affine families
    #: (:func:`zernike3d.analysis.frame.align_jobs`); None for a fit of two maps
    frame: dict | None = None

    @property
    def linear(self):
        """The 3x3 part A of ``matrix``: R, or -R for a mirrored fit."""
        return self.rotation if self.hand == "same" else -self.rotation

    def apply(self, points):
        """Points (..., 3) of the moving map, (x, y, z) Å from its voxel [0, 0, 0] -> the
        same points of the molecule in the reference map's frame."""
        points = np.asarray(points, dtype=np.float64)
        return points @ self.matrix[:, :3].T + self.matrix[:, 3]

    @property
    def chimerax_matrix(self):
        """[A | t'] (3x4): ``matrix`` in ChimeraX's coordinates, where voxel [0, 0, 0] of
        a map sits at its MRC origin: a point of the moving map, in Å of ChimeraX's model
        coordinates (its origin included), to the same point in the reference map's; what
        ``measure rotation #2 toModel #1`` reports once #2 is placed. t' = t + origin_ref
        - A origin_mov; a mirrored fit includes the reflection (det -1)."""
        linear = self.matrix[:, :3]
        translation = self.matrix[:, 3] + np.asarray(self.reference_origin) - linear @ np.asarray(self.moving_origin)
        return np.column_stack([linear, translation])

    def chimerax_command(self, model="#2"):
        """``view matrix models #2,<12 numbers of chimerax_matrix>``: places the moving map
        (opened as model ``model``) on the reference (at its default, identity position)."""
        return f"view matrix models {model}," + ",".join(f"{v:.6g}" for v in self.chimerax_matrix.ravel())

    def to_json(self):
        """A JSON-ready dict: every field above, plus ``chimerax``."""
        return {
            "matrix": np.round(self.matrix, 10).tolist(),
            "rotation": np.round(self.rotation, 12).tolist(),
            "shift": [float(v) for v in self.shift],
            "euler_zyz_deg": [float(v) for v in self.euler_zyz_deg],
            "correlation": float(self.correlation),
            "mirror_correlation": float(self.mirror_correlation),
            "hand": self.hand,
            "order": int(self.order),
            "volume": self.volume,
            "moving_center": [float(v) for v in self.moving_center],
            "reference_center": [float(v) for v in self.reference_center],
            "moving_origin": [float(v) for v in self.moving_origin],
            "reference_origin": [float(v) for v in self.reference_origin],
            "reference_geometry": self.reference_geometry,
            "chimerax_matrix": np.round(self.chimerax_matrix, 10).tolist(),
            **({"frame": self.frame} if self.frame is not None else {}),
            "chimerax": self.chimerax_command(),
            "chimerax_note": "open the reference as #1 and the moving map as #2, then run this command",
            "convention": "matrix maps (x, y, z) in Å from the centre of voxel [0,0,0] of the moving map "
            "to the same point in Å from the centre of voxel [0,0,0] of the reference map (MRC origins not "
            "included); chimerax_matrix is the same map in ChimeraX's coordinates, MRC origins included "
            "(what view matrix sets and measure rotation reports)",
        }


def align(moving, reference, volume=0, order=None):
    """The rigid transform that best superimposes one volume of ``moving`` (a
    :class:`~zernike3d.moments.Moments`) on the same volume of ``reference``.

    volume: a name or an index, as :meth:`Moments.volume`. order: the expansions compared
    (default: the lower of the two stored orders). Raises ValueError when the ball radii
    (Å) differ, the order is not stored in both, or a volume has no structure (only a mean).
    """
    _check_compatible(moving, reference)
    order = min(moving.order, reference.order) if order is None else int(order)
    if not 1 <= order <= min(moving.order, reference.order):
        raise ValueError(f"order {order} must be between 1 and {min(moving.order, reference.order)} (stored in both files)")
    mov = moving.volume(volume).truncate(order)
    ref = reference.volume(volume).truncate(order)
    for what, moments in (("moving", mov), ("reference", ref)):
        if not np.any(moments.moments[0, 1:]):
            raise ValueError(f"the {what} volume {moments.names[0]!r} has no structure in the ball (all its moments "
                             "but the mean are zero): nothing to align")
    nlm = nlm_table(order)
    search_order = min(order, SEARCH_ORDER)
    rotations = _rotation_candidates(_patterson(mov, search_order), _patterson(ref, search_order), search_order)
    translation = _TranslationFunction(ref, search_order)
    fits = {}
    for hand, parity in (("same", 1.0), ("mirrored", -1.0)):
        moved = truncate(mov.moments[0], order, search_order)
        if parity < 0:
            moved = rot.mirror_moments(moved, nlm_table(search_order))
        start, shift = _best_placement(translation, moved, search_order, rotations)
        fits[hand] = _refine(mov, ref.moments[0], nlm, start, shift, parity, rounds=1)
    # only a hand that may still compete is refined to the end (a clearly wrong hand
    # keeps the correlation of its first round, a lower bound of its best)
    best_misfit = min(1.0 - fit[2] for fit in fits.values())
    for hand, parity in (("same", 1.0), ("mirrored", -1.0)):
        rotation_matrix, shift, correlation, converged = fits[hand]
        if not converged and 1.0 - correlation < CONTENDER * best_misfit:
            fits[hand] = _refine(mov, ref.moments[0], nlm, rotation_matrix, shift, parity, rounds=MAX_ROUNDS - 1)
    same, mirrored = fits["same"], fits["mirrored"]
    misfit_same, misfit_mirrored = 1.0 - same[2], 1.0 - mirrored[2]
    hand = "mirrored" if misfit_mirrored < HAND_RATIO * misfit_same else "same"
    if hand == "mirrored":
        warnings.warn(
            f"the mirror image fits better (correlation {mirrored[2]:.4f} against {same[2]:.4f}): "
            "one of the maps has the wrong hand"
        )
    elif not misfit_same < HAND_RATIO * misfit_mirrored:
        warnings.warn(
            f"the hand cannot be told (correlation {same[2]:.4f}, mirror image {mirrored[2]:.4f})"
        )
    rotation_matrix, shift, _, _ = fits[hand]
    linear = rotation_matrix if hand == "same" else -rotation_matrix
    c_mov, c_ref = np.asarray(mov.center), np.asarray(ref.center)
    matrix = np.column_stack([linear, c_ref + shift - linear @ c_mov])
    return Alignment(
        rotation=rotation_matrix,
        shift=np.asarray(shift),
        matrix=matrix,
        euler_zyz_deg=tuple(float(np.degrees(a)) for a in rot.euler_zyz(rotation_matrix, lock=EULER_LOCK)),
        correlation=float(same[2]),
        mirror_correlation=float(mirrored[2]),
        hand=hand,
        order=order,
        volume=mov.names[0],
        moving_center=tuple(mov.center),
        reference_center=tuple(ref.center),
        moving_origin=tuple(moving.origin),
        reference_origin=tuple(reference.origin),
        reference_geometry={"box": ref.box, "voxel_size": ref.voxel_size, "radius": ref.radius},
    )


def needs_recentring(alignment: Alignment) -> bool:
    """Whether the moving ball centre lands farther than :data:`RECENTRE_TOLERANCE_VOXELS`
    voxels of the reference from the reference's ball centre: closer, the moving job's
    moments (and its stored per-particle invariants) are taken about its own centre."""
    if alignment.reference_geometry is None:
        raise ValueError("the alignment records no reference geometry")
    return bool(np.linalg.norm(alignment.shift) > RECENTRE_TOLERANCE_VOXELS * alignment.reference_geometry["voxel_size"])


def express_in_reference_frame(moving: Moments, alignment: Alignment, maps: np.ndarray | None = None,
                               order: int | None = None) -> Moments:
    """All volumes (base and components) of ``moving`` as they sit in the reference frame,
    about the reference's ball centre: mirrored if ``alignment.hand`` is "mirrored",
    rotated; a :class:`~zernike3d.moments.Moments` with the reference's geometry (box,
    voxel size, centre, origin), the moving map's names and ``order`` (default: the stored
    one).

    The one way zernike3d re-expresses a map in another frame (``compare`` and ``align
    --rotated-out``). The moving map's point p that lands on the reference's ball centre
    (q = A (p - c) + c_ref + shift = c_ref, so p = c - A^-1 shift, Å) becomes the centre:
    the density is decomposed again about p, so the ball holds what the reference's ball
    holds (a rotated and shifted twin comes out as the reference, as decomposing about p
    directly does: 0.3-0.4% in the invariants of a 64^3 phantom shifted by 3 Å at orders
    20 and 50, benchmarks/bench_reexpress.py). A centre off the voxel grid has no symmetric shells
    (64^3, order 50: 11.5 s instead of 1.3 s), so the maps are moved by the fraction of a
    voxel that puts p on the grid (:func:`shifted_maps`) and expanded about that voxel.
    ``maps`` (V, N, N, N) [z, y, x]: the maps ``moving`` was decomposed from (a job's
    bundle), on its grid. Without them only the expansion is known: it is reconstructed on
    :func:`working_geometry` and its round trip's own error is subtracted (Omega + D_p - D_c
    of the reconstruction); then what lay beyond the moving ball or beyond the order is
    missing (3.7-3.8% in the invariants of that phantom; 0.6-4% for tests/test_align.py's
    helix), so give the maps where they exist. A shift below the
    tolerance (:func:`needs_recentring`) keeps the moments about the moving centre. Then
    the exact mirror and rotation of the moments (:mod:`zernike3d.maths.rotation`).
    """
    geometry = alignment.reference_geometry
    if geometry is None or not np.isclose(geometry["radius"], moving.radius, rtol=1e-6):
        raise ValueError("the alignment was made for a ball of another radius")
    moving = moving.truncate(moving.order if order is None else order)
    parity = 1.0 if alignment.hand == "same" else -1.0
    moments = moving.moments
    if needs_recentring(alignment):
        moments = _decomposed_about(moving, maps, parity * alignment.rotation.T @ np.asarray(alignment.shift))
    if parity < 0:
        moments = rot.mirror_moments(moments, moving.nlm)
    return replace(
        moving,
        moments=rot.rotate_moments(moments, moving.nlm, alignment.rotation),
        box=int(geometry["box"]),
        voxel_size=float(geometry["voxel_size"]),
        radius=float(geometry["radius"]),
        center=tuple(alignment.reference_center),
        origin=tuple(alignment.reference_origin),
    )  # maps_sha256 kept: the job's latents still apply (zernike3d.io.moments_file)


def _decomposed_about(moving: Moments, maps: np.ndarray | None, own_shift: np.ndarray) -> np.ndarray:
    """Moments (V, K) up to ``moving.order`` of the moving density about p = c - own_shift
    (Å, the moving map's frame): ``maps`` when given, else the expansion reconstructed on
    :func:`working_geometry` with its round-trip error subtracted (see
    :func:`express_in_reference_frame`)."""
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.transform import decompose, reconstruct

    if maps is None:
        grid = working_geometry(moving)
        maps = reconstruct(moving.moments, grid, moving.order)
        round_trip_error = moving.moments - decompose(maps, grid, moving.order)
    else:
        grid, round_trip_error = moving.geometry, 0.0
        if np.shape(maps)[-3:] != (grid.box,) * 3 or len(maps) != len(moving.moments):
            raise ValueError(f"maps {np.shape(maps)} are not the {len(moving.moments)} volumes of a "
                             f"{grid.box}^3 box that the moments were decomposed from")
    point = np.asarray(grid.center, dtype=np.float64) - own_shift
    on_grid = np.round(point / grid.voxel_size) * grid.voxel_size
    ball = BallGeometry(grid.box, grid.voxel_size, grid.radius, tuple(float(v) for v in on_grid))
    return decompose(shifted_maps(maps, (on_grid - point) / grid.voxel_size), ball, moving.order) + round_trip_error


def shifted_maps(maps: np.ndarray, shift_voxels) -> np.ndarray:
    """Maps (V, N, N, N) [z, y, x] moved by ``shift_voxels`` (x, y, z), in voxels:
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


def working_geometry(moments):
    """The grid on which the moments are re-expanded about another centre: the stored
    one, or, when that is finer than the order needs, 2 n + 16 voxels across the same ball (radius in Å, inscribed, centred on voxel box // 2). An expansion up to
    order n varies on a scale of about pi R / n, so 2n + 16 voxels across the ball sample
    it several times over, and the re-expansion subtracts the grid round trip's own error
    (:func:`~zernike3d.maths.rotation.translate_moments`). A 256^3 map at order 50 is
    re-expanded on 116^3 voxels, 11 times fewer."""
    from zernike3d.maths.geometry import BallGeometry

    box = WORKING_VOXELS_PER_ORDER * int(moments.order) + WORKING_MARGIN
    if box >= moments.box:
        return moments.geometry
    return BallGeometry.for_box(box, 2.0 * moments.radius / box, radius=moments.radius)


def _check_compatible(moving, reference):
    if not np.isclose(moving.radius, reference.radius, rtol=1e-6):
        raise ValueError(
            f"ball radii differ ({moving.radius:g} Å and {reference.radius:g} Å): "
            "decompose both maps with the same --radius in Å"
        )


def _patterson(moments, order):
    """Moments up to ``order`` of the Patterson function (autocorrelation) of the
    expansion with its ball mean removed, in a ball of the same radius about the zero
    vector: P(v) = sum_p f(p) f(p + v). It does not change when the map moves, it is
    centrosymmetric (only even l are non-zero), and it turns with the map; so a rotation
    search on it needs no shift, and it cannot tell the hand (both hands are tried on
    each rotation found). Computed on :func:`working_geometry`, padded to twice the box
    so that it does not wrap."""
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.transform import decompose, reconstruct

    geometry = working_geometry(moments)
    coefficients = np.array(moments.moments[:1])
    coefficients[:, 0] = 0.0
    data = reconstruct(coefficients, geometry, moments.order)[0]
    n = geometry.box
    padded = (2 * n,) * 3
    power = np.abs(np.fft.rfftn(data, s=padded, axes=(0, 1, 2))) ** 2
    autocorrelation = np.fft.fftshift(np.fft.irfftn(power, s=padded, axes=(0, 1, 2)))  # zero vector at index n
    first = n - n // 2  # so that the zero vector sits at voxel n // 2, the default ball centre
    crop = autocorrelation[first : first + n, first : first + n, first : first + n]
    return decompose(crop, BallGeometry.for_box(n, geometry.voxel_size, radius=geometry.radius), order)[0]


def _rotation_candidates(moving_patterson, reference_patterson, order, peaks=PEAKS):
    """The ``peaks`` best local maxima of the Patterson rotation function on the grid
    of :func:`~zernike3d.maths.rotation.correlation_grid`, each refined (step 2)."""
    from scipy.ndimage import maximum_filter

    nlm = nlm_table(order)
    values = rot.correlation_grid(moving_patterson, reference_patterson, nlm, SEARCH_ANGLES)[0]
    is_peak = values == maximum_filter(values, size=3, mode=("nearest", "wrap", "wrap"))  # alpha, gamma periodic
    best = np.argsort(np.where(is_peak, values, -np.inf), axis=None)[::-1][:peaks]
    return [
        _refine_rotation(moving_patterson, reference_patterson, nlm, rot.grid_rotation(SEARCH_ANGLES, *np.unravel_index(flat, values.shape)))[0]
        for flat in best
    ]


def _best_placement(translation, moving, order, rotations):
    """The (rotation, shift (Å)) among ``rotations`` whose translation function peaks
    highest for ``moving`` (moments up to ``order``, already mirrored for that hand)."""
    nlm = nlm_table(order)
    placements = [(translation.best(rot.rotate_moments(moving, nlm, r)), r) for r in rotations]
    (score, shift), rotation_matrix = max(placements, key=lambda item: item[0][0])
    return rotation_matrix, shift


class _TranslationFunction:
    """The reference expansion up to ``order`` on its :func:`working_geometry` (ball mean
    removed, zero outside), in Fourier space, for the cross-correlation with a moving expansion over
    all integer shifts at once (step 2: the shift that goes with a rotation)."""

    def __init__(self, ref, order):
        from zernike3d.maths.transform import reconstruct

        self.geometry = working_geometry(ref)
        self.order = order
        coefficients = truncate(ref.moments[:1], ref.order, order).copy()
        coefficients[:, 0] = 0.0
        self.spectrum = np.fft.rfftn(reconstruct(coefficients, self.geometry, order)[0])

    def best(self, moments):
        """(score, shift): the shift t (x, y, z) Å, a multiple of the voxel size, that
        maximises sum_q ref(q) g(q - t) for the expansion g of ``moments`` (up to
        ``order``) on the reference grid, and that maximum."""
        from zernike3d.maths.transform import reconstruct

        n = self.geometry.box
        coefficients = np.array(moments)[None, :]
        coefficients[:, 0] = 0.0
        moved = reconstruct(coefficients, self.geometry, self.order)[0]
        cross = np.fft.irfftn(self.spectrum * np.conj(np.fft.rfftn(moved)), s=(n, n, n), axes=(0, 1, 2))
        peak = np.unravel_index(np.argmax(cross), cross.shape)
        zyx = np.array([(p + n // 2) % n - n // 2 for p in peak], dtype=np.float64)
        return float(cross[peak]), zyx[::-1] * self.geometry.voxel_size


def _refine_rotation(moving, reference, nlm, start):
    """Local maximum of the correlation of rot_R(moving) with reference, from ``start``
    (rotation only). Returns (R, correlation)."""
    objective = _Objective(reference, moving[None, :], nlm, start)
    x = objective.maximise(np.zeros(3))
    return objective.rotation(x), objective.correlation(x)


def _refine(mov, reference, nlm, rotation_matrix, shift, parity, rounds):
    """Step 3 for one hand: joint refinement of the rotation and the shift at the full
    order, at most ``rounds`` rounds. Returns (R, shift (Å), correlation, converged).

    Each round re-expands the moving map about its current shift u (in its own frame,
    u = P R^T shift) with the first and second derivatives of the expansion with respect
    to u (:func:`~zernike3d.maths.rotation.translate_with_derivatives`), and maximises the
    correlation over the rotation (exact, ducc0) and a shift step d (second-order Taylor
    model; a step longer than a quarter of the finest detail, pi R / order, is shortened
    to it). The correlation maximised weights each term by cos^2(pi n / (2 (order + 1))):
    the highest orders are where truncating a shifted map differs most from shifting a
    truncated one, and without the taper they bias the fit (hand-vol.mrc, order 20: 0.45°
    and 0.07 Å off without it, 0.03° and 0.01 Å with it). The correlation returned is the
    plain one (no taper). The rounds stop when the step is below ``SHIFT_TOLERANCE`` Å: the Taylor
    model's error is then of third order in the step (below 1e-4 Å of shift), so the
    last step and the model's correlation are kept without another re-expansion.
    """
    order = int(nlm[-1, 0])
    limit = 0.25 * np.pi * mov.radius / order
    taper = np.cos(0.5 * np.pi * nlm[:, 0] / (order + 1))
    own_shift = parity * rotation_matrix.T @ shift
    grid = working_geometry(mov)
    for _ in range(rounds):
        taylor = rot.translate_with_derivatives(mov.moments, grid, order, own_shift)[:, 0]
        if parity < 0:
            taylor = rot.mirror_moments(taylor, nlm)
        objective = _Objective(reference * taper, taylor * taper, nlm, rotation_matrix)
        x = objective.maximise(np.zeros(6))
        rotation_matrix = objective.rotation(x)
        step = x[3:] * min(1.0, limit / max(np.linalg.norm(x[3:]), 1e-300))
        own_shift = own_shift + step
        converged = np.linalg.norm(step) < SHIFT_TOLERANCE
        if converged:
            break
    plain = _Objective(reference, taylor, nlm, objective.start)
    return rotation_matrix, parity * rotation_matrix @ own_shift, plain.correlation(x), converged


class _Objective:
    """Pearson correlation of the reference with the moving expansion h(d) rotated by
    R = exp([w]) start, and its exact gradient in x = (w, d).

    ``taylor``: h at d = 0 alone (rotation only, x = w), or with its 3 first and 6 second
    derivatives (:func:`~zernike3d.maths.rotation.translate_with_derivatives`), so that
    h(d) = h + d.grad h + d^T H d / 2 (x = (w, d)).

    <ref, D(R) h> = <D(R^T) ref, h>, so one rotation of the reference per evaluation;
    the rotation gradient uses the generators L_a (d/de D(exp(e J_a)) at 0): L_z
    multiplies Omega_nlm by -i m, L_x and L_y are L_z conjugated by the quarter turns
    that carry z to x and to y; <ref, L_a g> = -<L_a ref, g>, and the left Jacobian of
    the exponential map turns the derivative in e into one in w.
    """

    def __init__(self, reference, taylor, nlm, start):
        self.nlm = nlm
        self.start = start
        reference = np.array(reference)
        reference[0] = 0.0  # Pearson: the ball means (Omega_000, Z_000 is constant) removed
        self.taylor = np.array(taylor)
        self.taylor[:, 0] = 0.0
        self.stack = generator_stack(reference, nlm)  # ref, L_x ref, L_y ref, L_z ref
        self.reference_norm = np.sqrt(rot.inner_product(reference, reference, nlm))
        if len(self.taylor) > 1:  # real views: products of real shifts with complex moments stay in BLAS
            size = self.taylor.shape[1]
            self.first = np.ascontiguousarray(self.taylor[1:4]).view(np.float64)
            hessian = np.zeros((3, 3, size), dtype=np.complex128)
            for (a, b), term in zip(rot.SECOND_DERIVATIVES, self.taylor[4:10]):
                hessian[a, b] = hessian[b, a] = term
            self.hessian = hessian.view(np.float64)

    def rotation(self, x):
        from scipy.spatial.transform import Rotation

        return Rotation.from_rotvec(x[:3]).as_matrix() @ self.start

    def correlation(self, x):
        return -self(x)[0]

    def maximise(self, x0):
        from scipy.optimize import minimize

        return minimize(self, x0, jac=True, method="BFGS", options={"gtol": 1e-9}).x

    def __call__(self, x):
        """(-correlation, -gradient) at x."""
        w, d = x[:3], x[3:]
        h, dh = self.taylor[0], None
        if d.size:
            hessian_d = np.tensordot(d, self.hessian, axes=1)  # (3, 2K): sum_b d_b H_ab
            h = h + (d @ self.first + 0.5 * d @ hessian_d).view(np.complex128)
            dh = (self.first + hessian_d).view(np.complex128)  # dh/dd_a
        rotated = rot.rotate_moments(self.stack, self.nlm, self.rotation(x).T)
        h_norm = np.sqrt(rot.inner_product(h, h, self.nlm))
        scale = 1.0 / (h_norm * self.reference_norm)
        value = rot.inner_product(rotated[0], h, self.nlm) * scale
        gradient_e = -rot.inner_product(rotated[1:4], h, self.nlm) * scale
        gradient = [_left_jacobian(w).T @ gradient_e]
        if dh is not None:
            gradient.append(
                rot.inner_product(rotated[0], dh, self.nlm) * scale
                - value * rot.inner_product(h, dh, self.nlm) / h_norm**2
            )
        return -value, -np.concatenate(gradient)


def generator_stack(moments, nlm):
    """Moments (..., K) and the three rotation generators applied to them: (..., 4, K)
    = (f, L_x f, L_y f, L_z f), L_a = d/de D(exp(e J_a)) at e = 0. L_z multiplies
    Omega_nlm by -i m; L_x and L_y are L_z conjugated by the quarter turns that carry z
    to x and to y. (The curvature of a map's self-correlation about axis a is
    <L_a f, L_a f> / <f, f>: zero about an axis of continuous symmetry.)"""
    moments = np.asarray(moments, dtype=np.complex128)
    flat = moments.reshape(-1, moments.shape[-1])
    quarter_turns = (rot.rotation_from_euler_zyz(0, np.pi / 2, 0), _turn_x(-np.pi / 2))  # z -> x, z -> y
    minus_i_m = -1j * nlm[:, 2]
    generators = [rot.rotate_moments(minus_i_m * rot.rotate_moments(flat, nlm, q.T), nlm, q) for q in quarter_turns]
    stack = np.stack([flat, *generators, minus_i_m * flat], axis=1)
    return stack.reshape(*moments.shape[:-1], 4, moments.shape[-1])


def _turn_x(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _left_jacobian(w):
    """J with exp([w + dw]) = exp([J dw]) exp([w]) to first order (SO(3) left Jacobian)."""
    theta = np.linalg.norm(w)
    cross = np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])
    if theta < 1e-8:
        return np.eye(3) + cross / 2
    return np.eye(3) + (1 - np.cos(theta)) / theta**2 * cross + (theta - np.sin(theta)) / theta**3 * cross @ cross
