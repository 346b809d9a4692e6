"""Zernike moments of one or more MRC maps, saved as a moments file (.npz).

All maps must share box and voxel size; they are decomposed in the same ball and stored
as one volume each, named by --names or by their file names. The input may instead be
one dataset bundle (.npz, from `zernike3d import` / `preprocess`): its base map and 3DVA
components become the volumes base, component_0, ... With --basis (the basis.json of
`zernike3d basis`) the radial table is read from the cached store when the planner
predicts reading faster than recomputing it; the log says which it did and why. Density outside the ball
is ignored: its share of the absolute density is reported, with a warning above 1%.

Choosing the order: an expansion up to order n reaches a resolution (FSC 0.5 against the
map inside the ball) of about 1.81 π R / (n + 2.5) Å (zernike3d/maths/resolution.py,
fitted on real-like maps), e.g. 6.8 Å for R = 51.2 Å and n = 40. --resolution Å picks
the smallest order that reaches it. An order past the one that reaches Nyquist (two
voxels; e.g. 89 for R = 32 Å, 1 Å voxels) only fits noise and interpolation artefacts:
it is allowed, with a warning.
"""

import sys
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io import moments_file
from zernike3d.io.dataset import Dataset
from zernike3d.io.mrc import read_map
from zernike3d.moments import Moments
from zernike3d.stages import common

#: warn when more than this fraction of the absolute density lies outside the ball
OUTSIDE_WARNING = 0.01


def add_arguments(parser):
    parser.add_argument(
        "maps", nargs="+", metavar="MAP.mrc", help="input maps (same box and voxel size), or one dataset bundle .npz"
    )
    common.add_order_arguments(parser)
    parser.add_argument("--out", required=True, metavar="M.npz", help="moments file to write")
    parser.add_argument("--names", default=None, help="comma-separated volume names (default: file names)")
    parser.add_argument(
        "--voxel-size", type=float, default=None, help="voxel size of MRC maps in Å (default: from the headers)"
    )
    parser.add_argument("--basis", metavar="basis.json", default=None, help="cached basis from `zernike3d basis`")
    common.add_geometry_arguments(parser)
    common.add_threads_argument(parser)
    common.add_device_arguments(parser)


def run(args):
    radius, center = common.parse_radius(args.radius), common.parse_center(args.center)
    common.check_outputs([*args.maps, args.basis], [(args.out, moments_file.OUTPUT)])
    volumes, voxel_size, origin, names, fingerprints = read_inputs(args.maps, common.parse_voxel_size(args.voxel_size))
    if args.names is not None:
        names = args.names.split(",")
        if len(names) != len(volumes):
            raise InputError("--names", f"{len(names)} names for {len(volumes)} volumes")
        if "" in names or len(set(names)) != len(names):
            raise InputError("--names", f"every volume needs a name of its own, got {args.names!r}")

    geometry = common.ball_geometry(volumes.shape[-1], voxel_size, radius, center, sources={"voxel_size": args.maps[0]})
    if args.basis is not None:
        from zernike3d.io.basis_store import read_basis_record

        read_basis_record(args.basis)  # a missing or malformed record fails here, before any work
    order = common.order_for(args, geometry)
    report_outside(geometry, volumes, names)
    options = common.transform_options(args, geometry, order, len(volumes), "decompose", args.basis)

    moments = Moments.from_maps(volumes, geometry, order, names=names, origin=origin, maps_sha256=fingerprints,
                                progress=True, **options)
    moments.save(args.out)
    print(f"wrote {args.out}: {len(names)} volume(s), order {order}, {moments.moments.shape[1]} coefficients each")
    return 0


def read_inputs(paths, voxel_size=None):
    """(volumes float32 (V, N, N, N) [z, y, x], voxel size Å, origin (x, y, z) Å, names,
    fingerprints) from MRC maps of one box and voxel size, or from one dataset bundle;
    fingerprints: the bundle's ``maps_sha256`` (computed once, when it was checked on
    loading), or None for MRC maps (the moments then compute them)."""
    if len(paths) == 1 and Path(paths[0]).suffix.lower() == ".npz":
        if voxel_size is not None:
            raise InputError("--voxel-size", "applies to MRC maps; a dataset bundle carries its voxel size")
        dataset = Dataset.load(paths[0])
        return dataset.maps, dataset.voxel_size, dataset.origin, dataset.names, dataset.maps_sha256
    maps = [read_map(path, voxel_size=voxel_size) for path in paths]
    first = maps[0]
    for path, other in zip(paths[1:], maps[1:]):
        if (other.data.shape, other.voxel_size) != (first.data.shape, first.voxel_size):
            raise InputError(
                path,
                f"box {other.data.shape[0]} at {other.voxel_size:g} Å differs from {paths[0]} "
                f"(box {first.data.shape[0]} at {first.voxel_size:g} Å)",
            )
    return np.stack([m.data for m in maps]), first.voxel_size, first.origin, [Path(p).stem for p in paths], None


def report_outside(geometry, volumes, labels):
    """Print the share of absolute density outside the ball; warn on stderr above 1%, and
    for a map that is zero everywhere (its moments are all zero)."""
    for label, volume in zip(labels, np.reshape(volumes, (-1, *np.shape(volumes)[-3:]))):
        if not volume.any():
            print(f"warning: {label} is zero everywhere: its moments are all zero", file=sys.stderr)
    fractions = geometry.outside_fraction(volumes)
    worst = int(np.argmax(fractions))
    which = f" (largest: {labels[worst]})" if len(labels) > 1 else ""
    print(f"absolute density outside the ball (R = {geometry.radius:g} Å): {100 * fractions[worst]:.2f}%{which}")
    if fractions[worst] > OUTSIDE_WARNING:
        print(
            f"warning: {100 * fractions[worst]:.1f}% of the absolute density of {labels[worst]} lies outside the "
            "ball and is ignored; use a larger --radius or 'circumscribed'",
            file=sys.stderr,
        )
