"""The zarr basis store: round trip, atomic builds, stale stores, concurrent jobs."""

import hashlib
import json
import logging
import multiprocessing
import os
import time

import numpy as np
import pytest
import zarr

from zernike3d.cli import main as cli_main
from zernike3d.io import basis_store
from zernike3d.io.basis_store import (StaleStore, StreamedBasis, ensure_store, load_basis,
                                      open_store)
from zernike3d.io.mrc import write_map
from zernike3d.maths.basis import TABLE_FORMAT, Basis
from zernike3d.maths.geometry import BallGeometry
from zernike3d.maths.transform import decompose, reconstruct
from zernike3d.synthetic import chiral_phantom

BOX, ORDER = 24, 12


@pytest.fixture
def geometry():
    return BallGeometry.for_box(BOX, 1.5)


def arrays_equal(a, b):
    a, b = a.arrays(), b.arrays()
    return sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def digest_of(basis):
    digest = hashlib.sha256()
    for name, values in sorted(basis.arrays().items()):
        digest.update(name.encode() + np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def test_round_trip_in_every_radial_mode(tmp_path, geometry):
    result = ensure_store(tmp_path, geometry, ORDER)
    assert result.built and result.path.name == f"{Basis.build(geometry, ORDER).key}.zarr"
    reference = Basis.build(geometry, ORDER, radial_table=True)
    assert arrays_equal(open_store(result.path, geometry, ORDER, "memory"), reference)
    streamed = open_store(result.path, geometry, ORDER, "stream")
    assert isinstance(streamed, StreamedBasis)
    for l in range(ORDER + 1):
        np.testing.assert_array_equal(streamed.radial(l), reference.radial(l))
    assert open_store(result.path, geometry, ORDER, "recompute").radial_table is None
    attrs = zarr.open_group(result.path, mode="r").attrs
    assert attrs["order"] == ORDER and set(attrs["versions"]) == {"zernike3d", "numpy", "zarr"}
    assert not ensure_store(tmp_path, geometry, ORDER).built


def test_decompose_with_a_stored_basis_equals_decompose_without(tmp_path, geometry):
    maps = np.stack([chiral_phantom(BOX, 1.5), chiral_phantom(BOX, 1.5)[::-1]])
    expected = decompose(maps, geometry, ORDER)
    path = ensure_store(tmp_path, geometry, ORDER).path
    for mode in ("memory", "stream", "recompute"):
        basis = open_store(path, geometry, ORDER, mode)
        np.testing.assert_array_equal(decompose(maps, geometry, ORDER, basis=basis), expected)
    np.testing.assert_array_equal(
        reconstruct(expected, geometry, ORDER, basis=open_store(path, geometry, ORDER, "stream")),
        reconstruct(expected, geometry, ORDER),
    )


def test_exception_in_the_writer_leaves_no_store(tmp_path, geometry, monkeypatch):
    def fail_midway(group, basis):
        raise RuntimeError("injected failure after the grid tables were written")

    monkeypatch.setattr(basis_store, "_write_radial", fail_midway)
    with pytest.raises(RuntimeError, match="injected"):
        ensure_store(tmp_path, geometry, ORDER)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def _killed_build(cache, geometry):
    def die(group, basis):
        os._exit(3)

    basis_store._write_radial = die
    ensure_store(cache, geometry, ORDER)


def test_killed_build_leaves_no_store_and_the_next_build_cleans_up(tmp_path, geometry):
    child = multiprocessing.get_context("fork").Process(target=_killed_build, args=(tmp_path, geometry))
    child.start()
    child.join()
    assert child.exitcode == 3
    final = basis_store.store_path(tmp_path, Basis.build(geometry, ORDER).key)
    assert not final.exists()
    assert any(".tmp-" in p.name for p in tmp_path.iterdir())  # the killed job's leftover
    assert ensure_store(tmp_path, geometry, ORDER).built
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_damaged_chunk_is_detected_and_rebuilt(tmp_path, geometry, caplog):
    path = ensure_store(tmp_path, geometry, ORDER).path
    chunk = path / "radial" / "c" / "0" / "0"
    chunk.write_bytes(b"\x00garbage" + chunk.read_bytes()[8:])
    with pytest.raises(StaleStore, match="radial"):
        open_store(path, geometry, ORDER)
    with caplog.at_level(logging.WARNING, logger="zernike3d.io.basis_store"):
        result = ensure_store(tmp_path, geometry, ORDER)
    assert result.built and result.reason == "checksum of radial does not match"
    assert len(caplog.records) == 1 and "rebuilding" in caplog.records[0].getMessage()
    assert arrays_equal(open_store(path, geometry, ORDER), Basis.build(geometry, ORDER, radial_table=True))


def test_changed_values_fail_the_checksum(tmp_path, geometry):
    path = ensure_store(tmp_path, geometry, ORDER).path
    chunk = path / "grid" / "shell_radius" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[40] ^= 0x01  # one bit of one value: still a valid float64, not what was written
    chunk.write_bytes(bytes(data))
    with pytest.raises(StaleStore, match="checksum of grid/shell_radius does not match"):
        open_store(path, geometry, ORDER)
    # a caller that holds the grid tables reads only the radial table, which is intact
    assert arrays_equal(open_store(path, geometry, ORDER, grid=geometry.grid),
                        Basis.build(geometry, ORDER, radial_table=True))
    result = ensure_store(tmp_path, geometry, ORDER)
    assert result.built and result.reason == "checksum of grid/shell_radius does not match"


def test_missing_chunk_is_detected(tmp_path, geometry):
    path = ensure_store(tmp_path, geometry, ORDER).path
    (path / "radial" / "c" / "0" / "0").unlink()
    result = ensure_store(tmp_path, geometry, ORDER)
    assert result.built and result.reason == "array radial lacks 1 of its chunks"


def test_key_needs_no_tables(geometry, monkeypatch):
    from zernike3d.maths import geometry as geometry_module

    monkeypatch.setattr(geometry_module, "_grid_tables", lambda g: pytest.fail("grid tables were built"))
    assert basis_store.basis_key(geometry, ORDER) == f"{geometry.key()}-n{ORDER}-t{TABLE_FORMAT}"


def test_changed_attributes_are_detected(tmp_path, geometry):
    path = ensure_store(tmp_path, geometry, ORDER).path
    metadata = json.loads((path / "zarr.json").read_text())
    metadata["attributes"]["order"] = ORDER + 1
    (path / "zarr.json").write_text(json.dumps(metadata))
    result = ensure_store(tmp_path, geometry, ORDER)
    assert result.built and result.reason.startswith("attribute order is 13")


def test_store_for_another_geometry_is_not_reused(tmp_path, geometry):
    path = ensure_store(tmp_path, geometry, ORDER).path
    other = BallGeometry.for_box(BOX, 1.5, radius="circumscribed")
    with pytest.raises(StaleStore, match="attribute key"):
        open_store(path, other, ORDER)


def _build_and_digest(cache, geometry, barrier, queue):
    real_write = basis_store.write_store

    def slow_write(path, basis):
        time.sleep(0.5)  # keep the lock long enough for the other job to wait on it
        real_write(path, basis)

    basis_store.write_store = slow_write
    barrier.wait()
    result = ensure_store(cache, geometry, ORDER)
    queue.put((result.built, digest_of(open_store(result.path, geometry, ORDER))))


def test_two_jobs_build_the_same_store_once(tmp_path, geometry):
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(2), context.Queue()
    jobs = [context.Process(target=_build_and_digest, args=(tmp_path, geometry, barrier, queue)) for _ in range(2)]
    for job in jobs:
        job.start()
    results = [queue.get(timeout=120) for _ in jobs]
    for job in jobs:
        job.join()
    assert sorted(built for built, _ in results) == [False, True]
    assert results[0][1] == results[1][1] == digest_of(Basis.build(geometry, ORDER, radial_table=True))


def test_basis_stage_writes_a_record_that_loads(tmp_path, geometry):
    write_map(tmp_path / "map.mrc", chiral_phantom(BOX, 1.5), 1.5)
    out = tmp_path / "basis.json"
    argv = ["basis", str(tmp_path / "map.mrc"), "--order", str(ORDER), "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert cli_main(argv) == 0
    record = json.loads(out.read_text())
    assert record["key"] == Basis.build(geometry, ORDER).key and record["order"] == ORDER
    assert arrays_equal(load_basis(out, geometry, ORDER), Basis.build(geometry, ORDER, radial_table=True))
    assert load_basis(out).geometry == geometry


def test_basis_stage_reads_the_geometry_of_a_dataset_bundle(tmp_path):
    from zernike3d.io.dataset import Dataset

    Dataset.single_map(chiral_phantom(BOX, 1.5), 1.5, (0.0, 0.0, 0.0), []).save(tmp_path / "data.npz")
    out = tmp_path / "basis.json"
    argv = ["basis", str(tmp_path / "data.npz"), "--order", str(ORDER), "--radius", "circumscribed",
            "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert cli_main(argv) == 0
    expected = BallGeometry.for_box(BOX, 1.5, radius="circumscribed")
    assert load_basis(out).geometry == expected
    assert cli_main(["basis", str(tmp_path / "data.txt"), "--order", "3", "--cache", str(tmp_path), "--out", str(out)]) == 2
    assert cli_main(["basis", str(tmp_path / "data.npz"), "--order", "3", "--cache", str(tmp_path / "data.npz"),
                     "--out", str(tmp_path / "b2.json")]) == 2  # a file where the folder of stores should be


def test_the_radial_table_is_read_only_when_reading_is_predicted_faster(geometry):
    from dataclasses import replace

    from zernike3d.scheduling.planner import CPU_RATES, radial_table_source

    fast_disk = replace(CPU_RATES, zarr_read_seconds=0.0, zarr_bytes_per_s=1e12)
    slow_disk = replace(CPU_RATES, zarr_read_seconds=1.0)
    read, why = radial_table_source(geometry.grid, ORDER, fast_disk)
    assert read and why.startswith("reading (")
    read, why = radial_table_source(geometry.grid, ORDER, slow_disk)
    # order 12 has 49 (n, l) rows, stored ORDER // 2 + 1 = 7 a chunk: 7 chunks at 1 s each
    assert not read and why.endswith("faster than reading the store (7 s)")


def test_decompose_with_basis_says_where_the_radial_table_came_from(tmp_path, geometry, capsys):
    write_map(tmp_path / "map.mrc", chiral_phantom(BOX, 1.5), 1.5)
    record = tmp_path / "basis.json"
    assert cli_main(["basis", str(tmp_path / "map.mrc"), "--order", str(ORDER), "--cache", str(tmp_path / "cache"),
                     "--out", str(record)]) == 0
    assert cli_main(["decompose", str(tmp_path / "map.mrc"), "--order", str(ORDER), "--basis", str(record),
                     "--out", str(tmp_path / "m.npz")]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("basis: radial table"))
    assert ("read from" in line and "is faster than recomputing" in line) or (
        "recomputed" in line and ("is faster than reading the store" in line or "not read" in line))
