"""A map from a moments file: the Zernike expansion of one volume, written as MRC.

By default the map has the stored box and voxel size and overlays the decomposed map
(same origin). With --box or --voxel-size the ball keeps its radius in Å and is
centred on voxel box//2 of the new box; the origin is shifted so that it stays in place.
Voxels outside the ball are 0.
"""

from zernike3d.errors import InputError
from zernike3d.io.mrc import write_map
from zernike3d.moments import Moments
from zernike3d.stages import common


def add_arguments(parser):
    parser.add_argument("moments", metavar="M.npz", help="moments file")
    parser.add_argument("--out", required=True, metavar="MAP.mrc", help="map to write")
    parser.add_argument("--order", type=int, default=None, help="highest order used (default: all stored)")
    parser.add_argument("--box", type=int, default=None, help="output box in voxels (default: stored)")
    parser.add_argument("--voxel-size", type=float, default=None, help="output voxel size in Å (default: stored)")
    parser.add_argument("--volume", default="0", help="volume name or index (default: the first)")
    common.add_threads_argument(parser)


def run(args):
    moments = Moments.load(args.moments)
    if args.order is not None:
        order = common.parse_order(args.order)
        if order > moments.order:
            raise InputError(args.moments, f"order {order} is above the stored order {moments.order}")
        moments = moments.truncate(order)
    if args.box is not None and args.box < 1:
        raise InputError("--box", f"must be a positive number of voxels, got {args.box}")
    if args.voxel_size is not None and not args.voxel_size > 0:
        raise InputError("--voxel-size", f"must be a positive number of Å, got {args.voxel_size}")
    try:
        moments = moments.volume(args.volume)
    except ValueError as err:
        raise InputError(args.moments, str(err))

    (result,) = moments.reconstruct(box=args.box, voxel_size=args.voxel_size, threads=args.threads, progress=True)
    write_map(args.out, result.data, result.voxel_size, result.origin)
    print(
        f"wrote {args.out}: volume {moments.names[0]!r} to order {moments.order}, "
        f"box {result.data.shape[0]} at {result.voxel_size:g} Å"
    )
    return 0
