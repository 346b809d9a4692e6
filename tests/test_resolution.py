"""The order ↔ resolution relation (zernike3d.maths.resolution) and `decompose --resolution`."""

from pathlib import Path

import numpy as np
import pytest

from zernike3d.cli import main
from zernike3d.io.mrc import read_map, write_map
from zernike3d.maths.fsc import masked_fsc
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.resolution import expected_resolution, max_useful_order, nyquist, order_for_resolution
from zernike3d.maths.transform import decompose, reconstruct
from zernike3d.moments import Moments
from zernike3d.synthetic import protein_like

HAND = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hand-vol.mrc"


@pytest.mark.parametrize("radius", [9.0, 24.0, 51.2, 128.0])
def test_order_for_resolution_is_the_smallest_order_that_reaches_it(radius):
    for order in range(0, 150):
        assert order_for_resolution(expected_resolution(order, radius), radius) == order
    for resolution in np.linspace(1.0, 40.0, 157):
        order = order_for_resolution(resolution, radius)
        assert expected_resolution(order, radius) <= resolution
        assert order == 0 or expected_resolution(order - 1, radius) > resolution


def test_useful_orders_stop_at_nyquist():
    order = max_useful_order(32.0, 1.0)
    assert expected_resolution(order, 32.0) <= nyquist(1.0) < expected_resolution(order - 1, 32.0)
    # finer voxels or a larger ball allow higher orders
    assert max_useful_order(32.0, 0.5) > order < max_useful_order(64.0, 1.0)


def _measured_resolution(data, geometry, order):
    moments = decompose(data, geometry, order, threads=1)
    return masked_fsc(data, reconstruct(moments, geometry, order, threads=1)[0], geometry).resolution(0.5)


@pytest.mark.parametrize("order", [12, 24])
def test_relation_matches_the_fsc_of_a_protein_like_map(order):
    """A map with detail to Nyquist: its expansion's FSC 0.5 against it lands within 12%
    of the relation (the fit's worst point is 10% off); the old rule πR/n is 1.4-1.6×
    too fine here, which this test would catch."""
    geometry = BallGeometry.for_box(48, 1.0)
    data = protein_like(48, 1.0, seed=7)
    measured = _measured_resolution(data, geometry, order)
    assert measured == pytest.approx(expected_resolution(order, geometry.radius), rel=0.12)
    assert measured > 1.3 * np.pi * geometry.radius / order


@pytest.mark.skipif(not HAND.is_file(), reason="needs ../shared/data/hand-vol.mrc")
def test_relation_matches_the_fsc_of_the_real_hand_map():
    hand = read_map(HAND)
    geometry = BallGeometry.for_box(hand.data.shape[0], hand.voxel_size)
    measured = _measured_resolution(hand.data.astype(np.float64), geometry, 24)
    assert measured == pytest.approx(expected_resolution(24, geometry.radius), rel=0.12)


def test_decompose_resolution_picks_the_order_and_reaches_it(capsys, tmp_path):
    geometry = BallGeometry.for_box(48, 1.0)
    data = protein_like(48, 1.0, seed=8)
    source, out = tmp_path / "protein.mrc", tmp_path / "m.npz"
    write_map(source, data, 1.0)
    assert main(["decompose", str(source), "--resolution", "6", "--out", str(out), "--threads", "1"]) == 0
    order = order_for_resolution(6.0, 24.0)
    assert f"order {order} chosen for --resolution 6 Å: expected resolution " in capsys.readouterr().out
    moments = Moments.load(out)
    assert moments.order == order
    expansion = reconstruct(moments.moments, geometry, order, threads=1)[0]
    reached = masked_fsc(read_map(source).data, expansion, geometry).resolution(0.5)
    assert reached <= 6.0 * 1.12


def test_decompose_refuses_a_resolution_finer_than_nyquist_and_both_options(capsys, tmp_path):
    source, out = tmp_path / "protein.mrc", tmp_path / "m.npz"
    write_map(source, protein_like(24, 1.5, seed=9), 1.5)
    assert main(["decompose", str(source), "--resolution", "2.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["zernike3d decompose: error: --resolution: 2.5 Å is finer than the voxels resolve "
                   "(Nyquist: 2 × 1.5 Å = 3 Å)"]
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["decompose", str(source), "--resolution", "6", "--order", "8", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not out.exists()
