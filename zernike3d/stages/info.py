"""Summary of a moments file: volumes, coefficients, order, geometry, size, Parseval norms."""

from zernike3d.moments import Moments


def add_arguments(parser):
    parser.add_argument("moments", metavar="M.npz", help="moments file")


def run(args):
    print(Moments.load(args.moments).stats())
    return 0
