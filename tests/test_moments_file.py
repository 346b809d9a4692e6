"""The moments .npz format and the Moments object."""

import re

import numpy as np
import pytest
from scipy.special import eval_jacobi, sph_harm_y

from zernike3d.errors import InputError
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.indexing import coefficient_count
from zernike3d.moments import Moments
from zernike3d.synthetic import chiral_phantom

FIELDS = ("order", "box", "voxel_size", "radius", "center", "origin", "names")


def random_moments(order=6, names=("base", "β-sheet")):
    rng = np.random.default_rng(1)
    shape = (len(names), coefficient_count(order))
    return Moments(
        moments=rng.normal(size=shape) + 1j * rng.normal(size=shape),
        order=order,
        box=40,
        voxel_size=1.37,
        radius=25.5,
        center=(27.1, 26.0, 28.3),
        names=list(names),
        origin=(-3.0, 100.5, 0.25),
    )


@pytest.fixture(scope="module")
def phantom_moments():
    """A decomposed chiral phantom (box 20, order 8): small and real."""
    data, geometry = chiral_phantom(20, 1.5), BallGeometry.for_box(20, 1.5)
    return data, geometry, Moments.from_maps(data, geometry, 8, names=["hand"])


def test_save_load_round_trip_is_exact(tmp_path):
    original = random_moments()
    original.save(tmp_path / "m.npz")
    loaded = Moments.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.moments, original.moments) and loaded.moments.dtype == np.complex128
    for name in FIELDS:
        assert getattr(loaded, name) == getattr(original, name), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_file_is_plain_numpy(tmp_path):
    random_moments().save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert str(npz["format"]) == "zernike3d-moments" and int(npz["format_version"]) == 1
        assert npz["moments"].dtype == np.complex128 and npz["moments"].shape == (2, coefficient_count(6))
        assert npz["nlm"].shape == (coefficient_count(6), 3) and npz["nlm"].dtype.kind == "i"
        assert list(npz["nlm"][:4].tolist()) == [[0, 0, 0], [1, 1, 0], [1, 1, 1], [2, 0, 0]]
        assert npz["names"].dtype.kind == "U" and list(npz["names"]) == ["base", "β-sheet"]
        assert npz["center"].tolist() == [27.1, 26.0, 28.3] and float(npz["radius"]) == 25.5


def rewrite(path, **changes):
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays.update(changes)
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"format": np.array("cryodrgn-weights")}, "not a zernike3d moments file (format: cryodrgn-weights)"),
        ({"format_version": np.array(2)}, "moments format version 2 is not supported"),
        ({"nlm": np.zeros((coefficient_count(6), 3), int)}, "nlm table does not match order 6"),
        ({"order": np.array(5)}, "nlm table does not match order 5"),
        ({"names": np.array(["only one"])}, "1 names for 2 volumes"),
    ],
)
def test_inconsistent_files_are_refused_naming_the_file(tmp_path, change, problem):
    path = tmp_path / "m.npz"
    random_moments().save(path)
    rewrite(path, **change)
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: {re.escape(problem)}"):
        Moments.load(path)


def test_other_files_are_refused_naming_the_file(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "text.npz").write_text("hello")
    cases = {
        "plain.npz": "not a zernike3d moments file (format: no 'format' key)",
        "array.npy": "not a zernike3d moments file (a single .npy array",
        "text.npz": "not a zernike3d moments file (not a NumPy .npz archive)",
        "missing.npz": "file not found",
    }
    for name, problem in cases.items():
        with pytest.raises(InputError, match=f"^{re.escape(str(tmp_path / name))}: {re.escape(problem)}"):
            Moments.load(tmp_path / name)


def test_get_negative_m_matches_a_direct_sum(phantom_moments):
    """Omega_{n,l,-m} = sum f conj(Z_{n,l,-m}) dV evaluated voxel by voxel with scipy."""
    data, geometry, moments = phantom_moments
    n, l, m = 5, 3, -3  # odd m: the (-1)^m sign matters
    cz, cy, cx = geometry.center_voxels
    k = np.arange(geometry.box, dtype=np.float64)
    z, y, x = np.meshgrid(k - cz, k - cy, k - cx, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z) / geometry.radius_voxels
    theta = np.arccos(np.divide(z, r * geometry.radius_voxels, out=np.ones_like(r), where=r > 0))
    radial = np.sqrt(2 * n + 3) * r**l * eval_jacobi((n - l) // 2, 0, l + 0.5, 2 * r * r - 1)
    basis = np.where(geometry.inside(), radial * sph_harm_y(l, m, theta, np.arctan2(y, x)), 0)
    direct = np.sum(data * np.conj(basis)) * geometry.voxel_volume
    assert abs(moments.get(n, l, m) - direct) < 1e-9 * abs(direct) + 1e-14
    assert moments.get(n, l, -m) == moments.moments[0, list(map(tuple, moments.nlm.tolist())).index((n, l, -m))]
    with pytest.raises(ValueError, match="no coefficient"):
        moments.get(4, 3, 0)


def test_invariants_are_norms_over_all_m(phantom_moments):
    _, _, moments = phantom_moments
    expected = [
        np.sqrt(sum(abs(moments.get(n, l, m)) ** 2 for m in range(-l, l + 1))) for n, l in moments.nl.tolist()
    ]
    assert np.allclose(moments.invariants()[0], expected, rtol=1e-12)


def test_truncate_and_volume():
    moments = random_moments()
    low = moments.truncate(3)
    assert low.order == 3 and np.array_equal(low.moments, moments.moments[:, : coefficient_count(3)])
    assert np.array_equal(low.nlm, moments.nlm[: coefficient_count(3)])
    with pytest.raises(ValueError):
        moments.truncate(7)
    assert moments.volume("β-sheet").names == ["β-sheet"]
    assert np.array_equal(moments.volume("1").moments, moments.moments[1:])
    assert np.array_equal(moments.volume(0).moments, moments.moments[:1])
    with pytest.raises(ValueError, match="no volume 'loop'"):
        moments.volume("loop")


def test_text_summaries(phantom_moments):
    _, _, moments = phantom_moments
    stats = moments.stats()
    assert "1 volume" in stats and f"{coefficient_count(8)} per volume" in stats and "order 8" in stats
    assert "box 20 voxels of 1.5 Å" in stats and "complex128" in stats
    parseval = np.sqrt(np.sum(moments.invariants() ** 2))
    assert f"hand: {parseval:.6g}" in stats
    lines = moments.display(n_max=2).splitlines()
    name = moments.names[0]
    assert lines[0] == f"Ω_nlm of volume {name!r} (0 of 1 volumes, 0-based)"  # says which volume it shows
    assert len(lines) == 1 + coefficient_count(2) and lines[1].startswith("(0, 0, 0) ")
    assert moments.display(n_max=2, volume=name) == moments.display(n_max=2)
    assert moments.display(nlm=(3, 3, -2)) == f"{moments.get(3, 3, -2):.6g}"
    assert moments.display_invariants(nl=(2, 2)) == f"{moments.invariants()[0, 3]:.6g}"
    invariant_lines = moments.display_invariants(n_max=3).splitlines()
    assert invariant_lines[0].startswith(f"F_nl of volume {name!r}") and invariant_lines[4].startswith("(2, 2) ")
    with pytest.raises(ValueError, match="no volume"):
        moments.display(volume=1)


def test_a_finer_voxel_size_alone_keeps_the_field_of_view():
    """reconstruct --voxel-size without --box must not cut the ball: the box grows."""
    geometry = BallGeometry.for_box(24, 2.0)
    m = Moments(np.zeros((1, 1), complex), 0, 24, 2.0, geometry.radius, tuple(geometry.center), ["v"])
    finer = m.output_geometry(voxel_size=0.8)
    assert finer.box == 60 and finer.voxel_size == 0.8 and finer.radius == geometry.radius
    assert m.output_geometry(voxel_size=0.7).box == 69  # ceil(48 / 0.7)
    assert m.output_geometry(box=30, voxel_size=0.8).box == 30
    assert m.output_geometry() == geometry
