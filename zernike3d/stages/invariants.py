"""Rotation-invariant descriptors F_nl of every volume in a moments file.

F_nl = sqrt(sum over m = -l..l of |Omega_nlm|^2) does not change when the map is rotated
about the ball's centre. Output by suffix:

* .csv: header ``n,l,<name>...``, one row per (n, l) ordered by n then l;
* .npz: ``format`` ("zernike3d-invariants"), ``invariants`` (volumes, n_nl) float64, ``nl``
  (n_nl, 2) int, ``names`` (volumes,).

The table and the store are written together: both, or (on any failure) neither.

With --dataset (a dataset of a 3D Variability job, moments of base, component_0, ..)
the invariants of every particle's map, F_nl(z) for its latents z, are also written to
the zarr store --particles-out (format: :mod:`zernike3d.io.particle_invariants`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, atomic_paths, csv_kind, npz_kind
from zernike3d.io.dataset import Dataset
from zernike3d.moments import Moments
from zernike3d.stages import common
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from pathlib import Path
    import numpy as np
    from zernike3d.io.atomic import OutputKind


#: the ``format`` entry of an invariants .npz
NPZ_FORMAT = "zernike3d-invariants"


def table_kind(path: str | Path) -> OutputKind:
    """What the invariants table at ``path`` (.csv or .npz by suffix) may replace."""
    if Path(path).suffix.lower() == ".csv":
        return csv_kind(["n", "l"], "an invariants CSV written by zernike3d (header n,l,...)")
    return npz_kind(NPZ_FORMAT, f"an invariants file written by zernike3d (format {NPZ_FORMAT!r})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("moments", metavar="M.npz", help="moments file")
    parser.add_argument("--out", required=True, metavar="F.csv|F.npz", help="invariants file to write")
    parser.add_argument("--dataset", metavar="dataset.npz", help="3DVA dataset: also write per-particle invariants")
    common.add_renamed_option(parser, "--particles", "--dataset")
    parser.add_argument("--particles-out", metavar="P.zarr", help="per-particle invariants store (with --dataset)")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto",
        help="where per-particle invariants are computed: gpu uses CuPy (fails if unusable); auto and cpu use "
        "the CPU kernel, which outpaces writing the store (about 1 s per million particles on 2 cores)",
    )


def run(args: argparse.Namespace) -> int:
    """The stage: the table of the moments' invariants, and with --dataset the
    particles' store (numba and zarr are imported only for that store)."""
    from zernike3d.maths.backends import BackendUnavailable, import_cupy

    suffix = Path(args.out).suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise InputError(args.out, "output must end in .csv or .npz")
    if (args.dataset is None) != (args.particles_out is None):
        raise InputError("--dataset", "give both --dataset dataset.npz and --particles-out P.zarr")
    outputs = [(args.out, table_kind(args.out))]
    if args.particles_out is not None:
        from zernike3d.io import particle_invariants

        outputs.append((args.particles_out, particle_invariants.OUTPUT))
    common.check_outputs([args.moments, args.dataset], outputs)
    backend = "cupy" if args.device == "gpu" else "numba"
    if backend == "cupy":
        try:
            import_cupy()
        except BackendUnavailable as err:
            raise InputError("--device gpu", str(err))
    moments = Moments.load(args.moments)
    dataset = None
    if args.dataset:
        dataset = Dataset.load(args.dataset)
        if len(dataset.uid) == 0:
            raise InputError(args.dataset, "has no particles (a single map)")
        from zernike3d.analysis.latents import check_job

        check_job(moments, args.moments, dataset, args.dataset)
    with atomic_paths(outputs) as temporaries:  # the table and the store: both or neither
        write_invariants(temporaries[0], moments.invariants(), moments.nl, moments.names)
        if dataset is not None:
            from zernike3d.io.particle_invariants import write_particle_invariants
            from zernike3d.maths.invariants import particle_invariant_forms

            forms = particle_invariant_forms(moments.moments, moments.order)
            write_particle_invariants(
                temporaries[1], forms, dataset.latents, dataset.uid, moments.nl, order=moments.order,
                names=moments.names, backend=backend, progress=True,
            )
    print(f"wrote {args.out}: {moments.nl.shape[0]} invariants (n, l) for {len(moments.names)} volume(s)")
    if dataset is not None:
        print(f"wrote {args.particles_out}: {moments.nl.shape[0]} invariants for each of {len(dataset.uid)} particles")
    return 0


def write_invariants(path: str | Path, invariants: np.ndarray, nl: np.ndarray, names: Sequence[str]) -> None:
    """Write invariants (V, n_nl) as CSV (one row per (n, l), full float precision) or as
    .npz (with ``format`` = :data:`NPZ_FORMAT`), by the suffix of ``path``; atomically."""
    with atomic_path(path, table_kind(path)) as tmp:
        if Path(path).suffix.lower() == ".csv":
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(["n", "l", *names])
                for (n, l), values in zip(nl.tolist(), invariants.T.tolist()):
                    writer.writerow([n, l, *values])  # str(float) round-trips exactly
        else:
            with open(tmp, "wb") as f:
                np.savez(f, format=np.array(NPZ_FORMAT), invariants=invariants, nl=nl, names=np.asarray(names, dtype=str))
