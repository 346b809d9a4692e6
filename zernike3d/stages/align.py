"""Rigid alignment of two maps from their moments: rotation, shift and hand, as JSON.

Finds the rotation about the moving map's ball centre, the shift (Å) and the hand that
best superimpose one volume of MOVING.npz on the same volume of REFERENCE.npz (two
moments files with the same ball radius in Å; box and voxel size may differ). The search
is global: a grid of rotations at low order, then a joint refinement of rotation and
shift at the full order; the mirror image is fitted too (see
:mod:`zernike3d.analysis.alignment`).

The JSON holds ``matrix`` (3x4 [A | t], row-major: it takes (x, y, z) in Å from the
centre of voxel [0, 0, 0] of the moving map to the same point in Å from the centre of
voxel [0, 0, 0] of the reference map; MRC origins not included), ``chimerax_matrix``
(the same map in ChimeraX's coordinates, MRC origins included: what ``view matrix``
sets and ``measure rotation`` reports), ``rotation``, ``shift`` (Å), ``euler_zyz_deg`` (ZYZ,
R = Rz(alpha) Ry(beta) Rz(gamma), degrees), ``correlation`` and ``mirror_correlation``
(Pearson, over the ball, of the aligned expansions), ``hand`` ("same" or "mirrored":
then a warning), ``order``, and ``chimerax``: the command that places the moving map
(model #2) on the reference (model #1) in ChimeraX, MRC origins included.

--rotated-out writes every volume of MOVING (base and components) expressed in the
reference's frame and geometry, as a moments file
(:func:`zernike3d.analysis.alignment.express_in_reference_frame`): from the job's own
maps, decomposed again about the point that lands on the reference's centre, when MOVING
is a results folder; from the expansion alone when it is a moments file (then what lay
beyond its ball or its order is missing: a few % in the invariants).

Given two results folders of 3D Variability jobs (results/<name>/ as the workflow writes
them) instead, it fits the jobs as `zernike3d compare` does: with --frame family (the
default there) every particle's map of MOVING is placed in REFERENCE's family of maps
(base + components), which does not depend on the jobs' populations and breaks a
symmetry of the base by the components (:mod:`zernike3d.analysis.frame`; the JSON then
holds ``frame``: how the frame was found and the residual misfit per state); --frame
base aligns the two base maps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from zernike3d.errors import InputError
from zernike3d.stages import common
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("moving", metavar="MOVING.npz", help="moments file of the map to move (or a job's results folder)")
    parser.add_argument("reference", metavar="REFERENCE.npz",
                        help="moments file of the reference map (or a job's results folder)")
    parser.add_argument("--out", required=True, metavar="alignment.json", help="alignment to write (JSON)")
    parser.add_argument(
        "--volume", default="0", metavar="NAME|INDEX",
        help="the volume aligned, in both files: a name or an index (0: the first, the base map of a 3DVA job)",
    )
    parser.add_argument(
        "--order", type=int, default=None,
        help="order of the expansions compared (default: the lower of the two stored orders)",
    )
    parser.add_argument(
        "--frame", choices=("family", "base"), default=None,
        help="two results folders: fit the jobs' families of maps (family, the default) or their base maps (base); "
        "two moments files: base only",
    )
    parser.add_argument(
        "--rotated-out", metavar="M.npz", default=None,
        help="also write every volume of MOVING expressed in the reference frame (moments file)",
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from zernike3d.analysis.alignment import align, express_in_reference_frame
    from zernike3d.io import moments_file
    from zernike3d.io.atomic import atomic_paths, json_kind
    from zernike3d.moments import Moments

    if not args.out.lower().endswith(".json"):
        raise InputError(args.out, "output must end in .json")
    if args.rotated_out is not None and not args.rotated_out.lower().endswith(".npz"):
        raise InputError(args.rotated_out, "--rotated-out must end in .npz")
    outputs = [(args.out, json_kind(("matrix", "euler_zyz_deg", "hand"), "an alignment written by `zernike3d align`"))]
    if args.rotated_out is not None:
        outputs.append((args.rotated_out, moments_file.OUTPUT))
    common.check_outputs([args.moving, args.reference], outputs)
    folders = [Path(p).is_dir() for p in (args.moving, args.reference)]
    if any(folders) and not all(folders):
        raise InputError(args.moving if not folders[0] else args.reference,
                         "give two moments files or two results folders, not one of each")
    frame = args.frame or ("family" if all(folders) else "base")
    if frame == "family" and not all(folders):
        raise InputError("--frame family", "needs two results folders of 3D Variability jobs (their latents weigh the fit)")
    if all(folders):
        from zernike3d.analysis.results_folder import read_results

        moving_job = read_results(args.moving)
        moving, reference = moving_job.moments, read_results(args.reference).moments
    else:
        moving = Moments.load(args.moving)
        reference = Moments.load(args.reference)
    if abs(moving.radius - reference.radius) > 1e-6 * reference.radius:
        raise InputError(
            args.moving,
            f"ball radius {moving.radius:g} Å differs from {reference.radius:g} Å of {args.reference}; "
            "decompose both maps with the same --radius in Å",
        )
    for path, moments in ((args.moving, moving), (args.reference, reference)):
        try:
            volume = moments.volume(args.volume).moments
        except ValueError as err:
            raise InputError(f"--volume {args.volume}", f"{path}: {err}") from None
        with np.errstate(over="ignore", invalid="ignore"):
            power = float(np.sum(np.abs(volume) ** 2))
        if not np.isfinite(power):
            raise InputError(path, "moments too large to align: their squared norm overflows float64")
    highest = min(moving.order, reference.order)
    if args.order is not None and not 1 <= args.order <= highest:
        raise InputError("--order", f"must be between 1 and {highest}, the lower of the two stored orders")
    if highest < 1:
        raise InputError(args.moving, "needs moments up to order 1 at least")

    try:
        if frame == "family":
            from zernike3d.analysis.frame import align_jobs

            alignment = align_jobs(moving, reference, moving_job.latents, order=args.order)
        else:
            alignment = align(moving, reference, volume=args.volume, order=args.order)
    except ValueError as err:  # what is left after the checks above: a blank volume
        raise InputError(f"{args.moving} and {args.reference}", str(err)) from None
    record = alignment.to_json()
    if not _finite(record):
        raise InputError(f"{args.moving} and {args.reference}", "the alignment is not finite (NaN or infinity): "
                         "are the volumes blank or their values far too large?")
    rotated = None
    if args.rotated_out is not None:  # from the job's own maps when MOVING is a results folder
        rotated = express_in_reference_frame(moving, alignment, maps=moving_job.maps if all(folders) else None)
    with atomic_paths(outputs) as temporaries:  # the JSON and the rotated moments: both or neither
        with open(temporaries[0], "w", encoding="utf-8") as f:
            f.write(_json_text(record))
        if rotated is not None:
            rotated.save(temporaries[1])
    alpha, beta, gamma = alignment.euler_zyz_deg
    what = "family correlation" if alignment.frame is not None else "correlation"
    print(
        f"wrote {args.out}: hand {alignment.hand}, {what} {alignment.correlation:.4f} "
        f"(mirror image {alignment.mirror_correlation:.4f}) at order {alignment.order}; "
        f"Euler ZYZ ({alpha:.2f}, {beta:.2f}, {gamma:.2f})°, shift "
        + ", ".join(f"{v:.2f}" for v in alignment.shift) + " Å"
    )
    from zernike3d.analysis.frame import symmetry_note

    if symmetry_note(alignment):
        print(symmetry_note(alignment))
    if rotated is not None:
        print(f"wrote {args.rotated_out}: {len(rotated.names)} volume(s) in the reference frame")
    print(f"ChimeraX (reference as #1, moving as #2): {alignment.to_json()['chimerax']}")
    return 0


def _finite(value):
    """True if every number in ``value`` (nested dicts and lists of a JSON record) is finite."""
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def _json_text(record):
    """A JSON object with one key per line, each value (a matrix too) on its line."""
    return "{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}" for key, value in record.items()) + "\n}\n"
