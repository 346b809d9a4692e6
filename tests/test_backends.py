"""The array-operation backend (the GPU code path) against the numba CPU kernels.

The 'numpy' backend runs exactly the code that runs on the GPU with CuPy, so these tests
check the GPU path's logic on any machine; the 'cupy' tests run only where CuPy and a
CUDA GPU are present.
"""

import numpy as np
import pytest

from zernike3d.maths.backends import BackendUnavailable, import_cupy
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.transform import decompose, reconstruct


def relative_error(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


GEOMETRIES = [
    BallGeometry.for_box(11, 1.0),
    BallGeometry.for_box(12, 1.4, "circumscribed"),
    BallGeometry.for_box(12, 1.0, 5.0, (5.3, 6.2, 4.9)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["odd", "even-circumscribed", "off-lattice"])
@pytest.mark.parametrize("max_workspace", [1, 2**30], ids=["m-blocks", "one-block"])
def test_array_backend_matches_numba_kernels(geometry, max_workspace):
    order = 9
    maps = np.random.default_rng(7).standard_normal((2,) + (geometry.box,) * 3)
    expected = decompose(maps, geometry, order)
    moments = decompose(maps, geometry, order, backend="numpy", max_workspace=max_workspace)
    assert relative_error(moments, expected) < 1e-12
    rebuilt = reconstruct(expected, geometry, order, backend="numpy", max_workspace=max_workspace)
    assert relative_error(rebuilt, reconstruct(expected, geometry, order)) < 1e-12


def test_streamed_radial_table_gives_the_same_moments():
    from zernike3d.maths.backends import make_backend
    from zernike3d.maths.transform import _BlockLayout

    geometry = GEOMETRIES[0]
    plan = _BlockLayout(geometry, 6, None, 1, 2**30)
    streamed = make_backend("numpy", plan, 1, radial_resident=False)
    resident = make_backend("numpy", plan, 1, radial_resident=True)
    for l in range(7):
        assert np.array_equal(streamed.radial(l), resident.radial(l))
    maps = np.random.default_rng(8).standard_normal((geometry.box,) * 3)
    assert np.array_equal(
        decompose(maps, geometry, 6, backend="numpy", radial_resident=False),
        decompose(maps, geometry, 6, backend="numpy"),
    )


def gpu_or_skip():
    try:
        return import_cupy()
    except BackendUnavailable as err:
        pytest.skip(f"no usable GPU: {err}")


@pytest.mark.gpu
def test_cupy_backend_matches_cpu_at_order_50_on_128_box():
    gpu_or_skip()
    geometry = BallGeometry.for_box(128, 1.0)
    maps = np.random.default_rng(0).standard_normal((128, 128, 128)).astype(np.float32)
    expected = decompose(maps, geometry, 50)
    moments = decompose(maps, geometry, 50, backend="cupy")
    assert relative_error(moments, expected) < 1e-10
    rebuilt = reconstruct(expected, geometry, 50, backend="cupy")
    assert relative_error(rebuilt, reconstruct(expected, geometry, 50)) < 1e-10


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        decompose(np.zeros((5, 5, 5)), BallGeometry.for_box(5, 1.0), 2, backend="fortran")


def test_csr_group_sums_match_numpy_group_sums():
    """The CSR products the GPU runs (here with scipy.sparse) give the numpy backend's sums."""
    import scipy.sparse

    from zernike3d.maths.backends import ArrayBackend
    from zernike3d.maths.transform import _BlockLayout

    for geometry in GEOMETRIES:
        layout = _BlockLayout(geometry, 7, None, 2, 2**30, shell_blocks=False)
        maps = np.random.default_rng(9).standard_normal((2,) + (geometry.box,) * 3)
        csr, numpy_only = (ArrayBackend(layout, 2, np, sparse) for sparse in (scipy.sparse, None))
        for backend in (csr, numpy_only):
            backend.load_maps(maps)
        shells = numpy_only.shell_sums(0, 8, 0, geometry.grid.n_shells)
        assert relative_error(csr.shell_sums(0, 8, 0, geometry.grid.n_shells), shells) < 1e-14
        for backend in (csr, numpy_only):
            backend.add_maps(shells, 0, 8, 0, geometry.grid.n_shells)
        assert relative_error(csr.maps(), numpy_only.maps()) < 1e-14


def test_auto_backend_runs_numpy_on_small_work_and_numba_beyond():
    from zernike3d.maths.backends import (
        AUTO_NUMPY_WORK,
        resolve_backend,
        transform_work,
    )

    grid = BallGeometry.for_box(64, 1.0).grid
    assert resolve_backend("auto", transform_work(grid.n_pairs, 20, 1)) == "numpy"
    assert resolve_backend("auto", AUTO_NUMPY_WORK + 1) == "numba"
    assert resolve_backend("cupy", 1) == "cupy"
    maps = np.random.default_rng(3).standard_normal((2,) + (12,) * 3)
    geometry = BallGeometry.for_box(12, 1.0)
    expected = decompose(maps, geometry, 8, backend="numba")
    assert relative_error(decompose(maps, geometry, 8, backend="auto"), expected) < 1e-12
    rebuilt = reconstruct(expected, geometry, 8, backend="auto")
    assert relative_error(rebuilt, reconstruct(expected, geometry, 8, backend="numba")) < 1e-12
