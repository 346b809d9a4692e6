"""Per-particle invariants: the chunked kernel, the zarr store, the invariants stage option."""

import re
import warnings
from dataclasses import replace

import numpy as np
import pytest
from small_job import write_small_job

from zernike3d.cli import main
from zernike3d.errors import InputError
from zernike3d.io.particle_invariants import (
    particle_invariants_of,
    read_particle_invariants,
    write_particle_invariants,
)
from zernike3d.maths.indexing import coefficient_count, nl_table, nlm_table
from zernike3d.maths.invariants import invariants, particle_invariant_forms, particle_invariants

ORDER = 10


@pytest.fixture
def job():
    """Moments of a base and 3 components (decaying with n, like real maps), 1000 particles."""
    rng = np.random.default_rng(0)
    ncoef = coefficient_count(ORDER)
    decay = np.exp(-0.2 * nlm_table(ORDER)[:, 0])
    moments = (rng.normal(size=(4, ncoef)) + 1j * rng.normal(size=(4, ncoef))) * decay
    moments[1:] *= 0.1  # components are small next to the base
    latents = (3 * rng.normal(size=(1000, 3))).astype(np.float32)
    uid = rng.integers(2**63, 2**64 - 1, size=1000, dtype=np.uint64)
    return moments, latents, uid


def _combined_invariants(moments, latents):
    z = np.hstack([np.ones((len(latents), 1)), latents.astype(np.float64)])
    return invariants(z @ moments, ORDER)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_kernel_equals_invariants_of_combined_moments(job, backend):
    moments, latents, _ = job
    forms = particle_invariant_forms(moments, ORDER)
    expected = _combined_invariants(moments, latents)
    np.testing.assert_allclose(particle_invariants_of(forms, latents, backend=backend), expected, rtol=1e-10)
    np.testing.assert_allclose(particle_invariants(forms, latents), expected, rtol=1e-10)


@pytest.mark.gpu
def test_cupy_particle_invariants_match_numba(job):
    from zernike3d.maths.backends import BackendUnavailable, import_cupy

    try:
        import_cupy()
    except BackendUnavailable as err:
        pytest.skip(f"no usable GPU: {err}")
    moments, latents, _ = job
    forms = particle_invariant_forms(moments, ORDER)
    np.testing.assert_allclose(
        particle_invariants_of(forms, latents, backend="cupy"), particle_invariants_of(forms, latents), rtol=1e-12
    )


def test_store_round_trip_within_float32_rounding(job, tmp_path):
    moments, latents, uid = job
    forms = particle_invariant_forms(moments, ORDER)
    path = tmp_path / "P.zarr"
    names = ["base", "component_0", "component_1", "component_2"]
    # 1000 particles in chunks of 300: the last chunk is partial.
    write_particle_invariants(path, forms, latents, uid, nl_table(ORDER), order=ORDER, names=names, chunk=300)
    store = read_particle_invariants(path)
    assert store.invariants.dtype == np.float32 and store.invariants.chunks == (300, len(nl_table(ORDER)))
    np.testing.assert_array_equal(store.uid, uid)
    np.testing.assert_array_equal(store.nl, nl_table(ORDER))
    assert (store.order, store.names) == (ORDER, names)
    np.testing.assert_allclose(store.invariants[:], _combined_invariants(moments, latents), rtol=2**-23)
    assert [p.name for p in tmp_path.iterdir()] == ["P.zarr"]  # no temporary left

    rows, values = store.sample(250, seed=1)
    assert rows.shape == (250,) and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(values, store.invariants[:][rows])


def test_reader_rejects_other_stores(tmp_path):
    import zarr

    with pytest.raises(InputError, match="not a zarr particle invariants store"):
        read_particle_invariants(tmp_path / "missing.zarr")
    zarr.open_group(tmp_path / "other.zarr", mode="w").attrs.update(format="something-else")
    with pytest.raises(InputError, match="not a particle invariants store"):
        read_particle_invariants(tmp_path / "other.zarr")


def test_invariants_stage_writes_particle_store(tmp_path):
    paths, dataset, moments = write_small_job(tmp_path)
    out = tmp_path / "P.zarr"
    argv = ["invariants", paths.moments, "--out", tmp_path / "F.csv", "--dataset", paths.dataset,
            "--particles-out", out]
    assert main([str(a) for a in argv]) == 0
    store = read_particle_invariants(out)
    np.testing.assert_array_equal(store.uid, dataset.uid)
    assert store.names == ["base", "component_0", "component_1"]
    z = np.hstack([np.ones((len(dataset.latents), 1)), dataset.latents.astype(np.float64)])
    expected = invariants(z @ moments.moments, moments.order)
    np.testing.assert_allclose(store.invariants[:], expected, rtol=1e-6, atol=1e-6 * expected.max())


def test_old_spellings_of_renamed_options_still_work_and_warn_once(tmp_path, capsys):
    """--particles, renamed --dataset (invariants, reconstruct) and --n-particles (plan),
    works for one release and prints one deprecation line (warnings, FutureWarning)."""
    paths, dataset, _ = write_small_job(tmp_path)
    runs = [
        (["invariants", paths.moments, "--out", tmp_path / "F.csv", "--particles", paths.dataset,
          "--particles-out", tmp_path / "P.zarr"], "--dataset"),
        (["reconstruct", paths.moments, "--particles", paths.dataset, "--out-dir", tmp_path / "maps", "--latent", "0,0"],
         "--dataset"),
        (["plan", "--box", "16", "--order", "4", "--particles", "1000"], "--n-particles"),
    ]
    for argv, new in runs:
        with pytest.warns(FutureWarning, match=f"--particles is now {new}") as caught:
            assert main([str(a) for a in argv]) == 0
        assert len([w for w in caught if issubclass(w.category, FutureWarning)]) == 1
    assert len(read_particle_invariants(tmp_path / "P.zarr").uid) == len(dataset.uid)
    assert (tmp_path / "maps" / "index.csv").is_file()
    assert "particle invariants: " in capsys.readouterr().out  # plan counted the 1000 particles
    # the new spellings warn of nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert main(["plan", "--box", "16", "--order", "4", "--n-particles", "1000"]) == 0


@pytest.mark.parametrize(
    "names, problem",
    [(["base", "component_0"], "has 1 components but .* has latents for 2"),
     (["a", "b", "c"], "volumes are named a, b, c, not base, component_0, ... as a 3DVA job's")],
)
def test_invariants_stage_refuses_moments_of_another_job(capsys, tmp_path, names, problem):
    paths, _, moments = write_small_job(tmp_path)
    other = tmp_path / "other.npz"
    replace(moments, moments=moments.moments[: len(names)], names=names).save(other)
    argv = ["invariants", other, "--out", tmp_path / "F.csv", "--dataset", paths.dataset,
            "--particles-out", tmp_path / "P.zarr"]
    assert main([str(a) for a in argv]) == 2
    assert re.search(f"{other}: {problem}", capsys.readouterr().err)
    assert not (tmp_path / "P.zarr").exists() and not (tmp_path / "F.csv").exists()
