"""A worked example with no input data: decompose and reconstruct a chiral phantom.

Writes into --out (default zernike3d-example/):

* example.mrc                the phantom, a right-handed helix of Gaussian blobs (1 Å voxels)
* example_moments.npz        its Zernike moments (see `zernike3d info`)
* example_reconstructed.mrc  the map rebuilt from the moments (overlays example.mrc)
* example_invariants.csv     its rotation invariants F_nl

and prints how close the reconstruction is to the phantom inside the ball.

With --job-dir it writes instead a small synthetic cryoSPARC 3D Variability job (the
phantom as J1_map.mrc, --components component maps, and J1_particles.cs: the rows of
--particles-cs with latents added), the input of the workflow's example datasets. With
--open-share F the job is a molecule in two states instead (a lid closed or open, F of
the particles open; 2 components; its base the particles' mean, as 3DVA's), which
--turn (ZYZ degrees) and --shift (Å) place: two such jobs are one molecule under two
conditions, as the workflow's example compares them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, folder_kind
from zernike3d.io.mrc import write_map
from zernike3d.maths.geometry import BallGeometry
from zernike3d.moments import Moments
from zernike3d.stages import common
from zernike3d.stages.decompose import report_outside
from zernike3d.stages.invariants import write_invariants
from zernike3d.synthetic import SYNTHETIC_PARTICLE_COUNT, chiral_phantom, write_3dva_job
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

VOXEL_SIZE = 1.0
#: what --out and --job-dir may replace: folders written by earlier runs of the same mode
EXAMPLE_FOLDER = folder_kind("example")
JOB_FOLDER = folder_kind("example --job-dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="zernike3d-example", metavar="DIR", help="output folder")
    parser.add_argument("--box", type=int, default=48, help="phantom box in voxels")
    parser.add_argument("--order", type=int, default=30, help="highest Zernike order n")
    common.add_threads_argument(parser)
    job = parser.add_argument_group("a synthetic 3DVA job instead (the workflow's example input)")
    job.add_argument("--job-dir", metavar="DIR", help="write the job into DIR and stop")
    job.add_argument("--components", type=int, default=3, help="number of 3DVA components")
    job.add_argument("--seed", type=int, default=0, help="seed of the component maps and latents")
    job.add_argument("--particles-cs", metavar="P.cs", help="cryoSPARC particles whose rows the job copies "
                     f"(default: {SYNTHETIC_PARTICLE_COUNT} synthetic particles)")
    job.add_argument("--open-share", type=float, default=None, metavar="F",
                     help="instead, a molecule in two states (a lid closed or open, 2 components) with this share of "
                     "its particles open: two such jobs are two conditions of one molecule")
    job.add_argument("--turn", default=None, metavar="A,B,G",
                     help="with --open-share: turn the molecule by ZYZ Euler angles (degrees) about voxel box // 2")
    job.add_argument("--shift", default=None, metavar="X,Y,Z", help="with --open-share: then move it by this (Å)")


def run(args: argparse.Namespace) -> int:
    if args.box < 1:
        raise InputError("--box", f"must be a positive number of voxels, got {args.box}")
    common.require_box_memory("--box", BallGeometry.for_box(args.box, VOXEL_SIZE), maps=3)
    if args.job_dir is not None:
        return write_job(args)
    order = common.parse_order(args.order)
    out = Path(args.out)
    common.check_outputs([], [(out, EXAMPLE_FOLDER)])
    phantom_path = out / "example.mrc"
    moments_path = out / "example_moments.npz"
    reconstruction_path = out / "example_reconstructed.mrc"
    invariants_path = out / "example_invariants.csv"

    phantom = chiral_phantom(args.box, VOXEL_SIZE)
    geometry = BallGeometry.for_box(args.box, VOXEL_SIZE)
    report_outside(geometry, phantom, [phantom_path])
    moments = Moments.from_maps(phantom, geometry, order, names=["example"], threads=args.threads, progress=True)
    (reconstruction,) = moments.reconstruct(threads=args.threads, progress=True)
    with atomic_path(out, EXAMPLE_FOLDER) as folder:  # all four files, or none
        write_map(folder / phantom_path.name, phantom, VOXEL_SIZE, output=False)  # a map to try: the user's
        moments.save(folder / moments_path.name)
        write_map(folder / reconstruction_path.name, reconstruction.data, reconstruction.voxel_size, reconstruction.origin)
        write_invariants(folder / invariants_path.name, moments.invariants(), moments.nl, moments.names)

    inside = geometry.inside()
    reference, rebuilt = phantom[inside].astype(np.float64), reconstruction.data[inside].astype(np.float64)
    correlation = np.corrcoef(reference, rebuilt)[0, 1]
    relative_error = np.linalg.norm(rebuilt - reference) / np.linalg.norm(reference)

    print(f"\nwrote into {out.resolve()}/:")
    print(f"  {phantom_path.name:28s} the chiral phantom, box {args.box}, {VOXEL_SIZE:g} Å voxels")
    print(f"  {moments_path.name:28s} its Zernike moments (see: zernike3d info {moments_path})")
    print(f"  {reconstruction_path.name:28s} the map rebuilt from the moments")
    print(f"  {invariants_path.name:28s} its rotation invariants F_nl, one row per (n, l)")
    print(
        f"\nreconstruction to order {order} ({moments.moments.shape[1]} coefficients) inside the ball "
        f"(R = {geometry.radius:g} Å): correlation {correlation:.4f}, relative error {relative_error:.3f}"
    )
    print("first invariants F_nl (unchanged by any rotation of the map):")
    print(moments.display_invariants(n_max=4))
    print(f"\nopen {phantom_path.name} and {reconstruction_path.name} together in ChimeraX to compare them.")
    return 0


def write_job(args: argparse.Namespace) -> int:
    """The --job-dir mode: :func:`zernike3d.synthetic.write_3dva_job`, atomically."""
    if args.components < 1:
        raise InputError("--components", f"must be at least 1, got {args.components}")
    placement = {}
    if args.open_share is not None:
        if not 0.0 <= args.open_share <= 1.0:
            raise InputError("--open-share", f"must be between 0 and 1, got {args.open_share}")
        if args.components != 2:
            raise InputError("--components", f"a two-state job (--open-share) has 2 components, got {args.components}")
        turn = common.parse_center(args.turn, "--turn", "degrees") or (0.0, 0.0, 0.0)
        shift = common.parse_center(args.shift, "--shift") or (0.0, 0.0, 0.0)
        from zernike3d.maths.rotation import rotation_from_euler_zyz

        placement = {"open_share": args.open_share, "rotation": rotation_from_euler_zyz(*np.radians(turn)), "shift": shift}
    elif args.turn is not None or args.shift is not None:
        raise InputError("--turn" if args.turn is not None else "--shift", "needs --open-share (a two-state job)")
    common.check_outputs([args.particles_cs], [(args.job_dir, JOB_FOLDER)])
    with atomic_path(args.job_dir, JOB_FOLDER) as tmp:
        write_3dva_job(tmp, box=args.box, n_components=args.components, particles_cs=args.particles_cs, seed=args.seed,
                       **placement)
    source = "synthetic particles" if args.particles_cs is None else f"the particles of {args.particles_cs}"
    print(f"wrote a synthetic 3DVA job into {args.job_dir}: J1_map.mrc, {args.components} components, "
          f"J1_particles.cs ({source})")
    return 0

