"""The maths core against analytic results and a direct float64 reference."""

import numpy as np
import pytest
from scipy.special import eval_jacobi, roots_legendre, sph_harm_y

import direct_reference
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.indexing import coefficient_count, nl_table, nlm_table, truncate
from zernike3d.maths.invariants import invariants
from zernike3d.maths.legendre import normalised_legendre
from zernike3d.maths.radial import radial_polynomials
from zernike3d.maths.transform import decompose, reconstruct
from zernike3d.synthetic import chiral_phantom, gaussian_blobs


def relative_error(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_index_tables_are_ordered_and_prefix_closed():
    nlm = nlm_table(8)
    assert len(nlm) == coefficient_count(8)
    assert np.all((nlm[:, 0] - nlm[:, 1]) % 2 == 0)
    assert np.all(nlm[:, 2] <= nlm[:, 1])
    keys = nlm[:, 0] * 10000 + nlm[:, 1] * 100 + nlm[:, 2]
    assert np.all(np.diff(keys) > 0)
    assert np.array_equal(nlm_table(5), nlm[: coefficient_count(5)])
    assert len(nl_table(8)) == np.sum(nlm[:, 2] == 0)


def test_radial_polynomials_match_scipy_jacobi():
    r = np.linspace(0, 1, 17)
    table = radial_polynomials(30, r)
    for (n, l), row in zip(nl_table(30), table):
        expected = np.sqrt(2 * n + 3) * r**l * eval_jacobi((n - l) // 2, 0, l + 0.5, 2 * r * r - 1)
        np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("order", [50, 200])
def test_radial_polynomials_are_orthonormal_up_to_high_order(order):
    x, w = roots_legendre(order + 4)
    r, w = (x + 1) / 2, w / 2
    table = radial_polynomials(order, r)
    nl = nl_table(order)
    for l in (0, 1, order // 2, order - 1, order):
        rows = table[nl[:, 1] == l]
        gram = (rows * (w * r * r)) @ rows.T
        np.testing.assert_allclose(gram, np.eye(len(rows)), atol=1e-10)


def test_legendre_matches_scipy_spherical_harmonics():
    cos_theta = np.linspace(-1, 1, 11)
    table = normalised_legendre(40, cos_theta)
    for l in range(41):
        for m in range(l + 1):
            expected = sph_harm_y(l, m, np.arccos(cos_theta), 0.0).real
            np.testing.assert_allclose(table[l, m], expected, rtol=1e-10, atol=1e-12)


def test_legendre_is_orthonormal_at_degree_200():
    x, w = roots_legendre(220)
    table = normalised_legendre(200, x)
    for m in (0, 1, 77, 150, 200):
        rows = table[m:, m]
        gram = 2 * np.pi * (rows * w) @ rows.T
        np.testing.assert_allclose(gram, np.eye(len(rows)), atol=1e-10)


@pytest.mark.parametrize(
    "box, voxel_size, radius, center",
    [
        (9, 1.0, None, None),  # odd box, inscribed ball
        (10, 1.3, "circumscribed", None),  # even box, every voxel counts
        (10, 0.9, 4.0, (4.3, 5.1, 3.7)),  # off-lattice centre given in Å
        (10, 1.0, 4.5, (3.0, 6.0, 4.5)),  # x, y on voxels away from box // 2 (xy orbits cut by the box), z between
    ],
)
def test_decompose_and_reconstruct_match_direct_sums(box, voxel_size, radius, center):
    geometry = BallGeometry.for_box(box, voxel_size, radius, center)
    order = 8
    maps = np.random.default_rng(1).standard_normal((2, box, box, box))
    expected = direct_reference.decompose(maps, geometry, order)
    moments = decompose(maps, geometry, order)
    assert relative_error(moments, expected) < 1e-10
    single = decompose(maps[1], geometry, order)  # one map: with xy orbits, from the table of Pbar_lm
    assert relative_error(single, expected[1:]) < 1e-10
    assert relative_error(reconstruct(expected, geometry, order), direct_reference.reconstruct(expected, geometry, order)) < 1e-10


@pytest.mark.parametrize("box, center", [(9, None), (10, None), (10, (3.0, 6.0, 4.5)), (10, (4.3, 5.1, 3.7))])
def test_xy_orbits_count_every_point_of_the_disc_once(box, center):
    grid = BallGeometry.for_box(box, 1.0, "circumscribed" if center is None else 4.5, center).grid
    if center is not None and center[0] != int(center[0]):
        assert grid.orbit_ring.size == 0  # off-lattice: the ring step runs over points
        return
    counts = np.zeros(box * box)
    rings = np.full(box * box, -1)
    for index, ring, weight in zip(grid.orbit_index, grid.orbit_ring, grid.orbit_weight):
        np.add.at(counts, index[index >= 0], weight)
        rings[index[index >= 0]] = ring
    np.testing.assert_allclose(counts[grid.point_index], 1.0)
    assert counts.sum() == pytest.approx(grid.n_points)
    np.testing.assert_array_equal(rings[grid.point_index], grid.point_ring)


@pytest.mark.parametrize("voxel_size", [2.95, 1.06, 0.83, 1.0 / 3.0])
def test_the_default_centre_stays_on_the_grid_at_any_voxel_size(voxel_size):
    """283.2 Å / 2.95 Å is 96.00000000000001 in floating point: the centre must still be
    the voxel centre, with the xy orbits and integer shells of voxel size 1 (a hair off,
    a 192^3 box had 91,770 shells instead of thousands: the same moments at 30x the
    cost), and the moments of a map must not depend on the unit they are measured in."""
    box, order = 24, 8
    unit, scaled = BallGeometry.for_box(box, 1.0), BallGeometry.for_box(box, voxel_size)
    assert scaled.center_voxels == unit.center_voxels == (box // 2,) * 3
    assert scaled.grid.n_shells == unit.grid.n_shells
    assert scaled.grid.orbit_ring.size == unit.grid.orbit_ring.size > 0
    data = np.random.default_rng(4).standard_normal((box,) * 3)
    np.testing.assert_allclose(decompose(data, scaled, order), decompose(data, unit, order), rtol=0, atol=1e-12)


def test_m_blocks_and_volume_batches_do_not_change_results():
    geometry = BallGeometry.for_box(16, 1.0)
    maps = np.random.default_rng(2).standard_normal((3, 16, 16, 16))
    whole = decompose(maps, geometry, 12)
    blocked = decompose(maps, geometry, 12, max_workspace=1)
    single = np.concatenate([decompose(m, geometry, 12) for m in maps])
    assert relative_error(blocked, whole) < 1e-13
    assert relative_error(single, whole) < 1e-13
    moments = whole[:, :]
    assert relative_error(reconstruct(moments, geometry, 12, max_workspace=1), reconstruct(moments, geometry, 12)) < 1e-13


def test_shell_blocks_do_not_change_results():
    from zernike3d.maths.transform import _BlockLayout, channel_bytes

    geometry = BallGeometry.for_box(40, 1.0, "circumscribed")
    order, volumes = 20, 2
    grid = geometry.grid
    per_shell = 2 * volumes * (order + 1) * (order + 2) // 2 * 8
    budget = channel_bytes(grid, volumes) + grid.orbit_ring.size * (order + 1) * 32 + 400 * per_shell
    plan = _BlockLayout(geometry, order, None, volumes, budget)
    assert (plan.m_block, plan.shell_block) == (order + 1, 400) and grid.n_shells > 400
    maps = np.random.default_rng(5).standard_normal((volumes, 40, 40, 40))
    whole = decompose(maps, geometry, order)
    blocked = decompose(maps, geometry, order, max_workspace=budget)
    assert relative_error(blocked, whole) < 1e-13
    assert relative_error(reconstruct(whole, geometry, order, max_workspace=budget), reconstruct(whole, geometry, order)) < 1e-13


def test_single_maps_at_low_order_take_the_legendre_table_with_the_same_results(monkeypatch):
    from zernike3d.maths import transform
    from zernike3d.maths.transform import TABLE_MAX_ORDER, _BlockLayout, channel_bytes

    geometry = BallGeometry.for_box(40, 1.0, "circumscribed")
    grid = geometry.grid
    maps = np.random.default_rng(6).standard_normal((2, 40, 40, 40))

    def table_plan(order, volumes, budget=2**29, where=geometry):
        return _BlockLayout(where, order, None, volumes, budget).uses_legendre_table

    assert table_plan(0, 1) and table_plan(TABLE_MAX_ORDER, 1)
    assert not table_plan(TABLE_MAX_ORDER + 1, 1) and not table_plan(10, 2)
    assert not table_plan(10, 1, where=BallGeometry.for_box(10, 0.9, 4.0, (4.3, 5.1, 3.7)))  # no xy orbits
    assert not table_plan(10, 1, budget=1)  # blocks of m
    order = 20
    per_shell = 2 * (order + 1) * (order + 2) // 2 * 8
    budget = channel_bytes(grid, 1) + grid.orbit_ring.size * (order + 1) * 32 + 400 * per_shell
    plan = _BlockLayout(geometry, order, None, 1, budget)
    assert plan.uses_legendre_table and plan.shell_block == 400 < grid.n_shells
    for order, limit in ((0, None), (1, None), (7, None), (20, None), (20, budget)):
        kwargs = {} if limit is None else {"max_workspace": limit}
        table = decompose(maps[1], geometry, order, **kwargs)
        with monkeypatch.context() as patch:
            patch.setattr(transform, "TABLE_MAX_ORDER", -1)
            transform._cached_block_layout.cache_clear()
            recurrence = decompose(maps[1], geometry, order, **kwargs)
        transform._cached_block_layout.cache_clear()
        assert relative_error(table, recurrence) < 1e-13, order
        assert relative_error(table, decompose(maps, geometry, order, **kwargs)[1:]) < 1e-13, order  # two maps
    # reconstruct never needs the table: the plan builds it on decompose's first use
    reconstruct(table, geometry, 20)
    from zernike3d.maths.transform import _cached_block_layout

    _cached_block_layout.cache_clear()
    reconstruct(table, geometry, 20)
    assert "legendre_table" not in _cached_block_layout(geometry, 20, 1, 512 * 2**20, True).__dict__


def test_reused_work_arrays_keep_calls_and_threads_apart():
    from concurrent.futures import ThreadPoolExecutor

    geometry = BallGeometry.for_box(16, 1.0)
    maps = np.random.default_rng(4).standard_normal((6, 16, 16, 16))
    expected = [decompose(m, geometry, 10) for m in maps]
    again = [decompose(m, geometry, 10) for m in maps]  # the same work arrays, reused
    for e, a in zip(expected, again):
        np.testing.assert_array_equal(a, e)
    import numba

    if numba.threading_layer() != "workqueue":  # which cannot launch kernels from two threads
        with ThreadPoolExecutor(3) as pool:
            threaded = list(pool.map(lambda m: decompose(m, geometry, 10), maps))
        for e, t in zip(expected, threaded):
            np.testing.assert_array_equal(t, e)
    # the moments returned are the caller's: a later call does not change them
    before = expected[0].copy()
    decompose(maps[1], geometry, 10)
    np.testing.assert_array_equal(expected[0], before)


def test_reconstruct_is_the_adjoint_of_decompose():
    geometry = BallGeometry.for_box(14, 1.0, "circumscribed")
    rng = np.random.default_rng(3)
    f = rng.standard_normal((14, 14, 14))
    omega = rng.standard_normal(coefficient_count(10)) + 1j * rng.standard_normal(coefficient_count(10))
    weights = np.where(nlm_table(10)[:, 2] == 0, 1.0, 2.0)
    lhs = np.sum(f * reconstruct(omega, geometry, 10)[0]) * geometry.voxel_volume
    rhs = np.sum(weights * np.real(omega * np.conj(decompose(f, geometry, 10)[0])))
    assert abs(lhs - rhs) < 1e-11 * abs(rhs)


def test_discrete_basis_is_orthonormal_on_a_fine_grid():
    order = 4
    errors = []
    for box in (24, 48):
        geometry = BallGeometry.for_box(box, 1.0, box / 2 - 0.5)
        count = coefficient_count(order)
        # Z_a sampled on the grid, then its moments: the Gram matrix of the discrete basis
        gram = decompose(reconstruct(np.eye(count), geometry, order), geometry, order)
        errors.append(np.max(np.abs(gram - np.eye(count))))
    assert errors[1] < 0.05
    assert errors[1] < 0.6 * errors[0]


def test_uniform_ball_has_only_l0_moments():
    box, order = 48, 10
    geometry = BallGeometry.for_box(box, 1.0, "circumscribed")
    radius = 0.6 * box / 2  # ball of density 1, radius 0.6 of the half box
    cz, cy, cx = geometry.center_voxels
    k = np.arange(box)
    d2 = (k[:, None, None] - cz) ** 2 + (k[None, :, None] - cy) ** 2 + (k[None, None, :] - cx) ** 2
    ball = (d2 <= radius**2).astype(float)
    moments = decompose(ball, geometry, order)[0]
    nlm = nlm_table(order)
    # analytic: Omega_n00 = sqrt(4 pi) int_0^a R_n0(r) r^2 dr, a = radius / R
    a = radius / geometry.radius_voxels
    x, w = roots_legendre(64)
    r, w = a * (x + 1) / 2, a * w / 2
    l0 = nlm[:, 1] == 0
    analytic = np.sqrt(4 * np.pi) * radial_polynomials(order, r)[nl_table(order)[:, 1] == 0] @ (w * r * r)
    scale = abs(analytic[0])
    assert np.max(np.abs(moments[l0] - analytic)) < 0.01 * scale
    assert np.max(np.abs(moments[~l0])) < 0.01 * scale


def test_radial_gaussian_moments_match_quadrature_closely():
    box, order = 40, 12
    geometry = BallGeometry.for_box(box, 1.0)
    sigma = 0.2 * geometry.radius
    centre = geometry.center
    gaussian = gaussian_blobs(box, 1.0, [centre], [sigma], [1.0]).astype(np.float64)
    moments = decompose(gaussian, geometry, order)[0]
    x, w = roots_legendre(80)
    r, w = (x + 1) / 2, w / 2
    profile = np.exp(-((r * geometry.radius) ** 2) / (2 * sigma**2))
    analytic = np.sqrt(4 * np.pi) * radial_polynomials(order, r)[nl_table(order)[:, 1] == 0] @ (w * r * r * profile)
    l0 = nlm_table(order)[:, 1] == 0
    assert relative_error(moments[l0], analytic) < 1e-3
    assert np.max(np.abs(moments[~l0])) < 1e-6 * np.max(np.abs(analytic))


def smooth_map(box, seed=0):
    rng = np.random.default_rng(seed)
    half = box / 2
    centres = (box // 2) + rng.uniform(-0.4, 0.4, (6, 3)) * half
    return gaussian_blobs(box, 1.0, centres, rng.uniform(0.08, 0.15, 6) * half, rng.uniform(0.5, 1.5, 6)).astype(np.float64)


def test_parseval_and_reconstruction_error_fall_with_order():
    box = 32
    geometry = BallGeometry.for_box(box, 1.0)
    f = smooth_map(box) * geometry.inside()
    energy = np.sum(f**2) * geometry.voxel_volume
    moments = decompose(f, geometry, 30)
    weights = np.where(nlm_table(30)[:, 2] == 0, 1.0, 2.0)
    captured, errors = [], []
    for order in (6, 12, 20, 30):
        m = truncate(moments, 30, order)
        captured.append(np.sum(weights[: m.shape[1]] * np.abs(m[0]) ** 2))
        errors.append(np.linalg.norm(reconstruct(m, geometry, order)[0] - f) / np.linalg.norm(f))
    assert np.all(np.diff(captured) > 0) and captured[-1] <= energy * (1 + 1e-3)
    assert abs(captured[-1] - energy) < 2e-3 * energy
    assert np.all(np.diff(errors) < 0) and errors[-1] < 0.05


def test_invariants_unchanged_by_exact_grid_rotations_and_reflections_odd_box():
    box = 21
    geometry = BallGeometry.for_box(box, 1.0)
    f = chiral_phantom(box).astype(np.float64)
    reference = invariants(decompose(f, geometry, 12), 12)
    for transformed in (
        np.rot90(f, 1, axes=(1, 2)),
        np.rot90(f, 1, axes=(0, 2)),
        np.rot90(f, 3, axes=(0, 1)),
        f[::-1],
        np.transpose(f, (2, 0, 1)),
    ):
        F = invariants(decompose(np.ascontiguousarray(transformed), geometry, 12), 12)
        assert relative_error(F, reference) < 1e-8


def test_invariants_of_even_box_need_rotation_about_voxel_box_half():
    box = 24
    geometry = BallGeometry.for_box(box, 1.0)
    f = smooth_map(box, seed=4)
    reference = invariants(decompose(f, geometry, 12), 12)
    # np.rot90 rotates about (box-1)/2; a one-voxel roll moves that to box//2
    about_centre = np.roll(np.rot90(f, 1, axes=(1, 2)), 1, axis=1)
    about_geometric_centre = np.ascontiguousarray(np.rot90(f, 1, axes=(1, 2)))
    assert relative_error(invariants(decompose(about_centre, geometry, 12), 12), reference) < 1e-8
    assert relative_error(invariants(decompose(about_geometric_centre, geometry, 12), 12), reference) > 1e-3


def test_invariants_close_under_smooth_off_grid_rotation():
    from scipy.ndimage import affine_transform
    from scipy.spatial.transform import Rotation

    box = 40
    geometry = BallGeometry.for_box(box, 1.0)
    f = smooth_map(box, seed=5)
    rotation = Rotation.from_euler("zyx", [37, 21, -58], degrees=True).as_matrix()
    c = np.full(3, box // 2, dtype=float)
    rotated = affine_transform(f, rotation, offset=c - rotation @ c, order=3)
    a = invariants(decompose(f, geometry, 10), 10)
    b = invariants(decompose(rotated, geometry, 10), 10)
    big = a > 0.05 * a.max()
    assert np.max(np.abs(a - b)[big] / a[big]) < 0.02


def test_axis_conventions_and_handedness():
    box = 33
    geometry = BallGeometry.for_box(box, 1.0)
    c = box // 2
    moment = {}
    for axis, offset in (("x", (8, 0, 0)), ("y", (0, 8, 0)), ("z", (0, 0, 8))):
        blob = gaussian_blobs(box, 1.0, [np.add((c, c, c), offset)], [1.5], [1.0])
        moment[axis] = decompose(blob, geometry, 1)[0]
    # columns of order 1: (0,0,0), (1,1,0), (1,1,1); Y_11 = -sqrt(3/8pi) sin(theta) e^{i phi}
    assert moment["x"][2].real < 0 and abs(moment["x"][2].imag) < 1e-9 * abs(moment["x"][2])
    assert moment["y"][2].imag > 0 and abs(moment["y"][2].real) < 1e-9 * abs(moment["y"][2])
    assert moment["z"][1].real > 0 and abs(moment["z"][2]) < 1e-9 * abs(moment["z"][1])

    chiral = chiral_phantom(box).astype(np.float64)
    rebuilt = reconstruct(decompose(chiral, geometry, 24), geometry, 24)[0]
    mirror = np.ascontiguousarray(chiral[:, :, ::-1])
    inside = geometry.inside()
    correlation = np.corrcoef(rebuilt[inside], chiral[inside])[0, 1]
    mirrored = np.corrcoef(rebuilt[inside], mirror[inside])[0, 1]
    assert correlation > 0.97 and correlation - mirrored > 0.3


def test_outside_fraction_reports_density_beyond_the_ball():
    geometry = BallGeometry.for_box(16, 1.0)
    f = np.zeros((16, 16, 16))
    f[8, 8, 8] = 3.0
    f[0, 0, 0] = 1.0
    assert geometry.outside_fraction(f)[0] == pytest.approx(0.25)


def test_a_float32_map_is_never_copied_to_float64():
    """Large maps (512^3) fit a workstation only if decompose reads float32 input as is:
    the traced NumPy allocations of a decomposition stay below the size of the map itself,
    which a float64 copy (twice that) would exceed."""
    import tracemalloc

    box = 96
    geometry = BallGeometry.for_box(box, 1.0)
    maps = np.random.default_rng(3).standard_normal((1, box, box, box), dtype=np.float32)
    decompose(maps[:, :8, :8, :8].copy(), BallGeometry.for_box(8, 1.0), 2, max_workspace=1)  # the same kernels compiled
    _ = geometry.grid  # tables built (and cached) before tracing
    tracemalloc.start()
    try:
        decompose(maps, geometry, 2, max_workspace=2**20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < maps.nbytes
