"""Rigid alignment from moments: rotation, mirror and translation of moments checked against
maps moved on the grid and decomposed again; `align` recovering a known motion and hand;
the `zernike3d align` command and its errors.

Maps are indexed [z, y, x]; positions (x, y, z) in Å from the centre of voxel [0, 0, 0].
An odd box has its ball centre, voxel box // 2, at the array's centre, so np.rot90 and
flips move the grid onto itself about it: exact motions.
"""

import json
import warnings

import numpy as np
import pytest
from scipy.ndimage import affine_transform
from scipy.spatial.transform import Rotation

from zernike3d.analysis.alignment import align, express_in_reference_frame, working_geometry
from zernike3d.cli import main
from zernike3d.maths import rotation as rot
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.indexing import nlm_table
from zernike3d.maths.invariants import invariants
from zernike3d.maths.transform import decompose
from zernike3d.moments import Moments
from zernike3d.synthetic import gaussian_blobs

BOX, VOXEL = 33, 1.5
CENTRE = (BOX // 2) * VOXEL
GEOMETRY = BallGeometry.for_box(BOX, VOXEL)


def helix(box=BOX, voxel_size=VOXEL, scale=1.0):
    """A right-handed helix of 7 smooth blobs (2-3 voxels wide) well inside the ball:
    chiral, and smooth enough that low orders describe it well."""
    half = box * voxel_size / 2
    centre = (box // 2) * voxel_size
    t = np.linspace(0, 2 * np.pi * 1.1, 7)
    centers = np.stack([centre + 0.25 * half * np.cos(t), centre + 0.25 * half * np.sin(t),
                        centre + 0.3 * half * (t / t[-1] - 0.5) * 2], axis=1)
    return gaussian_blobs(box, voxel_size, centers, np.linspace(0.10, 0.14, 7) * half * scale,
                          np.linspace(1.0, 1.5, 7)).astype(np.float64)


def moved(data, rotation, shift, voxel_size=VOXEL):
    """g(q) = f(R^T (q - c - shift) + c) about voxel box // 2, cubic splines: the map
    rotated by ``rotation`` and then shifted by ``shift`` (x, y, z) Å."""
    box = data.shape[0]
    centre = np.full(3, box // 2, dtype=np.float64)
    flip = np.eye(3)[::-1]  # (x, y, z) <-> (z, y, x)
    inverse = flip @ np.asarray(rotation).T @ flip
    offset = centre - inverse @ (centre + flip @ np.asarray(shift) / voxel_size)
    return affine_transform(data, inverse, offset=offset, order=3, mode="constant")


def random_real_moments(order, volumes, seed):
    """Moments of some real map: m = 0 terms real."""
    nlm = nlm_table(order)
    rng = np.random.default_rng(seed)
    moments = rng.normal(size=(volumes, len(nlm))) + 1j * rng.normal(size=(volumes, len(nlm)))
    moments[:, nlm[:, 2] == 0] = moments[:, nlm[:, 2] == 0].real
    return moments


def angle_between(a, b):
    return np.degrees(Rotation.from_matrix(a @ b.T).magnitude())


# --- rotation, mirror and translation of moments -------------------------------------

# np.rot90(data, 1, axes) on [z, y, x] arrays, and the rotation it performs on (x, y, z):
# g(q) = f(R^T q) with R^T read off the index map of np.rot90.
GRID_TURNS = [
    ((1, 2), np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]])),  # out(x, y) = in(-y, x): about z
    ((0, 1), np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]])),  # out(y, z) = in(-z, y): about x
    ((0, 2), np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]])),  # out(x, z) = in(-z, x): about y
]


@pytest.mark.parametrize("axes, rotation", GRID_TURNS)
def test_rotate_moments_equals_decomposing_the_map_turned_on_the_grid(axes, rotation):
    order = 10
    data = helix()
    original = decompose(data, GEOMETRY, order)
    for turns in (1, 2, 3):
        turned = decompose(np.ascontiguousarray(np.rot90(data, turns, axes=axes)), GEOMETRY, order)
        expected = np.linalg.matrix_power(rotation, turns).astype(float)
        predicted = rot.rotate_moments(original, nlm_table(order), expected)
        assert np.abs(predicted - turned).max() < 1e-9 * np.abs(turned).max()
        assert np.abs(turned - original).max() > 0.05 * np.abs(original).max()  # the test can fail


def test_rotate_moments_matches_a_smooth_off_grid_rotation():
    order = 8
    data = helix(scale=1.6)  # wide blobs: cubic interpolation is accurate
    rotation = Rotation.from_euler("zyz", [31.0, 57.0, -103.0], degrees=True).as_matrix()
    original = decompose(data, GEOMETRY, order)
    turned = decompose(moved(data, rotation, np.zeros(3)), GEOMETRY, order)
    predicted = rot.rotate_moments(original, nlm_table(order), rotation)
    error = np.linalg.norm(predicted - turned) / np.linalg.norm(turned)
    assert error < 5e-3
    assert np.linalg.norm(original - turned) / np.linalg.norm(turned) > 100 * error


def test_rotate_moments_round_trip_and_composition():
    order = 14
    nlm = nlm_table(order)
    moments = random_real_moments(order, 3, seed=1)
    first, second = Rotation.random(2, random_state=7).as_matrix()
    there = rot.rotate_moments(moments, nlm, first)
    assert np.abs(rot.rotate_moments(there, nlm, first.T) - moments).max() < 1e-12
    assert np.allclose(rot.rotate_moments(there, nlm, second), rot.rotate_moments(moments, nlm, second @ first),
                       atol=1e-12)
    # rotations preserve the L2 norm, and keep a real map real (the m = 0 terms)
    assert np.allclose(rot.inner_product(there, there, nlm), rot.inner_product(moments, moments, nlm))
    assert np.abs(there[:, nlm[:, 2] == 0].imag).max() < 1e-12
    assert rot.rotate_moments(moments[0], nlm, first).shape == moments[0].shape


def test_euler_zyz_round_trip_including_gimbal_lock():
    cases = list(Rotation.random(20, random_state=3).as_matrix())
    cases += [np.eye(3), np.diag([-1.0, 1.0, -1.0]), rot.rotation_from_euler_zyz(0.3, 0.0, 0.2),
              rot.rotation_from_euler_zyz(0.3, np.pi, 0.2)]
    for matrix in cases:
        assert np.allclose(rot.rotation_from_euler_zyz(*rot.euler_zyz(matrix)), matrix, atol=1e-12)
    with pytest.raises(ValueError):
        rot.euler_zyz(np.diag([1.0, 1.0, -1.0]))
    # a turn about z off by rounding: exact angles by default, the turn itself with a lock
    for beta, expected in ((1e-9, (0.3 + 0.2, 0.0, 0.0)), (np.pi - 1e-9, (0.3 - 0.2, np.pi, 0.0))):
        nearly = rot.rotation_from_euler_zyz(0.3, beta, 0.2)
        assert np.allclose(rot.rotation_from_euler_zyz(*rot.euler_zyz(nearly)), nearly, atol=1e-14)
        np.testing.assert_allclose(rot.euler_zyz(nearly, lock=1e-6), expected, atol=1e-8)
    for beta in (1e-5, 1e-7, np.pi - 1e-7):  # beta itself accurate near 0 and pi
        assert rot.euler_zyz(rot.rotation_from_euler_zyz(0.3, beta, 0.2))[1] == pytest.approx(beta, rel=1e-6)


def test_mirror_moments_is_the_inversion_through_the_centre():
    order = 9
    data = helix()
    original = decompose(data, GEOMETRY, order)
    inverted = decompose(np.ascontiguousarray(data[::-1, ::-1, ::-1]), GEOMETRY, order)
    assert np.abs(rot.mirror_moments(original, nlm_table(order)) - inverted).max() < 1e-9 * np.abs(original).max()
    assert np.abs(original - inverted).max() > 0.05 * np.abs(original).max()


def test_correlation_grid_equals_direct_rotations():
    order = 6
    nlm = nlm_table(order)
    moving, reference = random_real_moments(order, 2, seed=4)
    parity = np.where(nlm[:, 1] % 2 == 0, 1.0, -1.0)
    grid = rot.correlation_grid(moving, reference, nlm, 16, weights=np.stack([np.ones_like(parity), parity]))
    assert grid.shape == (2, 8, 16, 16)
    for index in [(0, 0, 0), (3, 5, 7), (7, 15, 1)]:
        turn = rot.grid_rotation(16, *index)
        direct = rot.inner_product(reference, rot.rotate_moments(moving, nlm, turn), nlm)
        mirrored = rot.inner_product(reference, rot.rotate_moments(rot.mirror_moments(moving, nlm), nlm, turn), nlm)
        assert grid[(0, *index)] == pytest.approx(direct, abs=1e-12)
        assert grid[(1, *index)] == pytest.approx(mirrored, abs=1e-12)


def test_translate_moments_matches_a_map_moved_by_whole_voxels():
    order = 16
    data = helix()
    original = decompose(data, GEOMETRY, order)
    assert np.abs(rot.translate_moments(original, GEOMETRY, order, np.zeros(3)) - original).max() < 1e-12
    shift = np.array([2.0, -1.0, 1.0]) * VOXEL  # (x, y, z) Å
    rolled = decompose(np.roll(data, (1, -1, 2), axis=(0, 1, 2)), GEOMETRY, order)
    predicted = rot.translate_moments(original, GEOMETRY, order, shift)
    error = np.linalg.norm(predicted - rolled) / np.linalg.norm(rolled)
    assert error < 0.04  # the truncation of the shifted expansion is not that of the shifted map
    assert np.linalg.norm(original - rolled) / np.linalg.norm(rolled) > 10 * error


def test_translation_derivatives_match_finite_differences():
    order = 8
    original = decompose(helix(), GEOMETRY, order)
    base = np.array([0.3, -0.2, 0.5])
    taylor = rot.translate_with_derivatives(original, GEOMETRY, order, base)[:, 0]
    h = 1e-3
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = h
        plus = rot.translate_moments(original, GEOMETRY, order, base + step)[0]
        minus = rot.translate_moments(original, GEOMETRY, order, base - step)[0]
        assert np.allclose(taylor[1 + axis], (plus - minus) / (2 * h), atol=1e-6 * np.abs(taylor[1 + axis]).max())
        second = (plus - 2 * taylor[0] + minus) / h**2
        column = rot.SECOND_DERIVATIVES.index((axis, axis))
        assert np.allclose(taylor[4 + column], second, atol=1e-3 * np.abs(taylor[4 + column]).max())


# --- align ---------------------------------------------------------------------------

MOTION = Rotation.from_euler("zyz", [37.0, 71.0, -122.0], degrees=True).as_matrix()
SHIFT = np.array([2.1, -1.4, 1.2])  # Å


@pytest.fixture(scope="module")
def helix_moments():
    return Moments.from_maps(np.stack([helix(), helix(scale=1.3)]), GEOMETRY, 16, names=["base", "component_0"])


@pytest.fixture(scope="module")
def twin_moments():
    volumes = [moved(helix(), MOTION, SHIFT), moved(helix(scale=1.3), MOTION, SHIFT)]
    return Moments.from_maps(np.stack(volumes), GEOMETRY, 16, names=["base", "component_0"])


@pytest.fixture(scope="module")
def twin_fit(helix_moments, twin_moments):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no hand warning: the helix is clearly chiral
        return align(twin_moments, helix_moments)


def test_align_recovers_a_rotated_and_shifted_twin(twin_fit, twin_moments, helix_moments):
    fit = twin_fit
    # moving(p) = f(M^T (p - c - shift) + c): the fit is R = M^T, shift' = -M^T shift
    assert fit.hand == "same"
    assert angle_between(fit.rotation, MOTION.T) < 0.1
    assert np.linalg.norm(fit.shift + MOTION.T @ SHIFT) < 0.05
    assert fit.correlation > 0.999 and fit.mirror_correlation < 0.95
    assert fit.order == 16 and fit.volume == "base"
    assert fit.moving_origin == twin_moments.origin and fit.reference_center == helix_moments.center
    # the matrix takes points of the moving map (Å from its voxel [0, 0, 0]) onto the reference
    rng = np.random.default_rng(0)
    points = CENTRE + rng.uniform(-10, 10, size=(20, 3))  # reference points
    in_moving = (points - CENTRE) @ MOTION.T + CENTRE + SHIFT
    assert np.abs(fit.apply(in_moving) - points).max() < 0.05
    assert np.allclose(fit.matrix[:, :3], fit.rotation)
    assert np.allclose(rot.rotation_from_euler_zyz(*np.radians(fit.euler_zyz_deg)), fit.rotation)


def test_align_flags_the_mirror_image(helix_moments):
    flip_x = np.diag([-1.0, 1.0, 1.0])
    mirror = Moments.from_maps(moved(np.ascontiguousarray(helix()[:, :, ::-1]), MOTION, SHIFT), GEOMETRY, 16)
    with pytest.warns(UserWarning, match="mirror image fits better"):
        fit = align(mirror, helix_moments)
    assert fit.hand == "mirrored"
    assert fit.mirror_correlation > 0.999 > 0.95 > fit.correlation
    assert np.linalg.det(fit.matrix[:, :3]) == pytest.approx(-1.0)
    # a point x of the helix (about the centre) sits in the mirror at M F x + c + shift
    rng = np.random.default_rng(1)
    points = CENTRE + rng.uniform(-10, 10, size=(20, 3))
    in_moving = (points - CENTRE) @ (MOTION @ flip_x).T + CENTRE + SHIFT
    assert np.abs(fit.apply(in_moving) - points).max() < 0.05
    # and the mirror image expressed in the reference frame is the helix again
    aligned = express_in_reference_frame(mirror, fit).moments[0]
    assert np.linalg.norm(aligned - helix_moments.moments[0]) < 0.05 * np.linalg.norm(helix_moments.moments[0])


def test_align_says_when_the_hand_cannot_be_told():
    """Three blobs in the plane z = centre: the object is its own mirror image (through
    that plane), so both hands fit and a warning says so."""
    half = BOX * VOXEL / 2
    centers = [(CENTRE + 0.3 * half, CENTRE, CENTRE), (CENTRE - 0.2 * half, CENTRE + 0.25 * half, CENTRE),
               (CENTRE - 0.1 * half, CENTRE - 0.3 * half, CENTRE)]
    flat = gaussian_blobs(BOX, VOXEL, centers, [0.12 * half, 0.15 * half, 0.1 * half], [1.0, 1.3, 0.8])
    reference = Moments.from_maps(flat.astype(np.float64), GEOMETRY, 10)
    moving = Moments.from_maps(moved(flat.astype(np.float64), MOTION, SHIFT), GEOMETRY, 10)
    with pytest.warns(UserWarning, match="hand cannot be told"):
        fit = align(moving, reference)
    assert fit.hand == "same"
    assert fit.correlation > 0.99 and fit.mirror_correlation == pytest.approx(fit.correlation, abs=1e-6)


def test_express_in_reference_frame_gives_the_reference_moments(helix_moments, twin_moments, twin_fit):
    aligned = express_in_reference_frame(twin_moments, twin_fit)
    assert aligned.names == twin_moments.names and aligned.order == twin_moments.order
    assert (aligned.box, aligned.voxel_size, aligned.center) == (helix_moments.box, helix_moments.voxel_size,
                                                                 helix_moments.center)
    for volume in range(2):
        error = np.linalg.norm(aligned.moments[volume] - helix_moments.moments[volume])
        before = np.linalg.norm(twin_moments.moments[volume] - helix_moments.moments[volume])
        assert error < 0.05 * np.linalg.norm(helix_moments.moments[volume])  # order 16: truncation
        assert before > 10 * error


def test_align_across_boxes_and_voxel_sizes():
    """Reference: box 33 of 1.5 Å; moving: box 41 of 1.2 Å, the same 24.75 Å ball, the
    helix rotated and shifted. The matrix still maps moving points onto reference points.
    At order 10 the moving map is re-expanded on a coarser working grid (36 voxels)."""
    radius = GEOMETRY.radius
    other = BallGeometry.for_box(41, 1.2, radius=radius)
    reference = Moments.from_maps(helix(), GEOMETRY, 10)
    # the same helix in the other grid, about its voxel 20 (24 Å), then moved
    half, centre = BOX * VOXEL / 2, (41 // 2) * 1.2
    t = np.linspace(0, 2 * np.pi * 1.1, 7)
    centers = np.stack([centre + 0.25 * half * np.cos(t), centre + 0.25 * half * np.sin(t),
                        centre + 0.3 * half * (t / t[-1] - 0.5) * 2], axis=1)
    data = gaussian_blobs(41, 1.2, centers, np.linspace(0.10, 0.14, 7) * half, np.linspace(1.0, 1.5, 7))
    moving = Moments.from_maps(moved(data.astype(np.float64), MOTION, SHIFT, voxel_size=1.2), other, 10)
    assert working_geometry(moving).box == 36 and working_geometry(reference) == reference.geometry
    fit = align(moving, reference)
    points = CENTRE + np.random.default_rng(2).uniform(-8, 8, size=(10, 3))
    in_moving = (points - CENTRE) @ MOTION.T + centre + SHIFT
    assert fit.hand == "same"
    assert np.abs(fit.apply(in_moving) - points).max() < 0.1


# --- the command ---------------------------------------------------------------------


def test_align_command_writes_json_and_rotated_moments(tmp_path, helix_moments, twin_moments):
    helix_moments.save(tmp_path / "ref.npz")
    twin_moments.save(tmp_path / "twin.npz")
    out, rotated = tmp_path / "alignment.json", tmp_path / "rotated.npz"
    assert main(["align", str(tmp_path / "twin.npz"), str(tmp_path / "ref.npz"), "--out", str(out),
                 "--volume", "component_0", "--order", "12", "--rotated-out", str(rotated)]) == 0
    record = json.loads(out.read_text())
    for key in ("matrix", "euler_zyz_deg", "correlation", "mirror_correlation", "hand", "order", "chimerax"):
        assert key in record
    assert record["hand"] == "same" and record["order"] == 12 and record["volume"] == "component_0"
    assert np.array(record["matrix"]).shape == (3, 4)
    command = record["chimerax"]
    assert command.startswith("view matrix models #2,")
    numbers = np.array([float(v) for v in command.split(",")[1:]]).reshape(3, 4)
    assert np.allclose(numbers, record["matrix"], atol=1e-4)  # origins are zero here
    aligned = Moments.load(rotated)
    assert aligned.names == ["base", "component_0"] and aligned.box == BOX


def test_chimerax_command_includes_the_map_origins(twin_fit):
    from dataclasses import replace

    fit = replace(twin_fit, moving_origin=(10.0, 0.0, -5.0), reference_origin=(1.0, 2.0, 3.0))
    numbers = np.array([float(v) for v in fit.chimerax_command().split(",")[1:]]).reshape(3, 4)
    # ChimeraX places voxel [0, 0, 0] at the origin: scene = matrix (p + o_mov) must be q + o_ref
    p = np.array([12.0, 20.0, 25.0])
    scene = numbers[:, :3] @ (p + [10.0, 0.0, -5.0]) + numbers[:, 3]
    assert np.allclose(scene, fit.apply(p) + [1.0, 2.0, 3.0], atol=1e-3)
    # the JSON's chimerax_matrix is that same map (the command's numbers, unrounded)
    chimerax = np.array(fit.to_json()["chimerax_matrix"])
    assert np.allclose(chimerax[:, :3] @ (p + [10.0, 0.0, -5.0]) + chimerax[:, 3], fit.apply(p) + [1.0, 2.0, 3.0])
    assert np.allclose(chimerax, numbers, atol=1e-4)


def test_align_command_errors_are_one_line_and_write_nothing(tmp_path, capsys, helix_moments):
    helix_moments.save(tmp_path / "ref.npz")
    Moments.from_maps(helix(), BallGeometry.for_box(BOX, 1.0), 6).save(tmp_path / "small_ball.npz")
    Moments.from_maps(np.zeros((BOX,) * 3), GEOMETRY, 16).save(tmp_path / "blank.npz")
    out = tmp_path / "alignment.json"
    cases = [
        (["small_ball.npz", "ref.npz"], "ball radius"),
        (["ref.npz", "ref.npz", "--volume", "nope"], "--volume nope"),
        (["ref.npz", "ref.npz", "--order", "17"], "--order"),
        (["ref.npz", "missing.npz"], "missing.npz"),
        (["blank.npz", "ref.npz"], "no structure in the ball"),
    ]
    for arguments, expected in cases:
        paths = [str(tmp_path / a) if a.endswith(".npz") else a for a in arguments]
        assert main(["align", *paths, "--out", str(out), "--rotated-out", str(tmp_path / "r.npz")]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and expected in error, error
        assert not out.exists() and not (tmp_path / "r.npz").exists()
    assert main(["align", str(tmp_path / "ref.npz"), str(tmp_path / "ref.npz"), "--out", str(tmp_path / "a.txt")]) == 2
    assert ".json" in capsys.readouterr().err


def test_align_command_never_overwrites_an_input_or_a_strangers_file(tmp_path, capsys, helix_moments):
    reference = tmp_path / "ref.npz"
    helix_moments.save(reference)
    before = reference.read_bytes()
    assert main(["align", str(reference), str(reference), "--out", str(tmp_path / "a.json"),
                 "--rotated-out", str(reference)]) == 2
    assert "input" in capsys.readouterr().err and reference.read_bytes() == before
    theirs = tmp_path / "notes.json"
    theirs.write_text('{"mine": true}\n')
    assert main(["align", str(reference), str(reference), "--out", str(theirs)]) == 2
    assert "refusing to replace" in capsys.readouterr().err and theirs.read_text() == '{"mine": true}\n'


def test_a_shifted_twin_decomposed_again_from_its_maps_is_the_reference_as_the_direct_route(helix_moments, twin_fit):
    """The rotated and shifted twin, re-expressed from its own maps (the fraction of a
    voxel by a phase ramp, then about the nearest voxel), has the reference's invariants
    as decomposing the twin directly about the true off-grid point does, and closer than
    from its expansion alone (which lacks what lay beyond the order)."""
    maps = np.stack([moved(helix(), MOTION, SHIFT), moved(helix(scale=1.3), MOTION, SHIFT)])
    twin = Moments.from_maps(maps, GEOMETRY, 12, names=["base", "component_0"])
    reference = helix_moments.truncate(12)
    from_maps = express_in_reference_frame(twin, twin_fit, maps=maps)
    from_expansion = express_in_reference_frame(twin, twin_fit)
    point = np.asarray(twin.center) + SHIFT  # where the reference's centre sits in the twin
    direct = decompose(maps, BallGeometry(BOX, VOXEL, GEOMETRY.radius, tuple(point)), 12)

    def error(invariants):
        return np.linalg.norm(invariants - reference.invariants()) / np.linalg.norm(reference.invariants())

    assert error(from_maps.invariants()) < 0.003 and error(invariants(direct, 12)) < 0.003
    assert error(from_expansion.invariants()) > 10 * error(from_maps.invariants())
    assert np.linalg.norm(from_maps.moments - reference.moments) < 0.005 * np.linalg.norm(reference.moments)
    with pytest.raises(ValueError, match="are not the 2 volumes"):
        express_in_reference_frame(twin, twin_fit, maps=maps[:1])
