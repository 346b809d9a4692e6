"""Options shared by several stages, parsed the same way everywhere."""

from zernike3d.errors import InputError


def add_geometry_arguments(parser):
    """``--radius`` and ``--center``: where the unit ball sits in the box."""
    parser.add_argument(
        "--radius",
        default="inscribed",
        help="ball radius in Å, or 'inscribed' (half the box edge, default) or "
        "'circumscribed' (half the box diagonal: every voxel counts, as the original tool)",
    )
    parser.add_argument(
        "--center",
        default=None,
        help="ball centre x,y,z in Å from the centre of voxel [0,0,0] "
        "(default: voxel index box//2 on each axis, the rotation centre of cryoSPARC/RELION)",
    )


def add_threads_argument(parser):
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: all cores)"
    )


def parse_radius(text):
    """'inscribed' | 'circumscribed' | a positive number of Å."""
    if text is None or text in ("inscribed", "circumscribed"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise InputError("--radius", f"expected Å, 'inscribed' or 'circumscribed', got {text!r}")
    if not value > 0:
        raise InputError("--radius", f"must be positive, got {text!r}")
    return value


def parse_center(text):
    """'x,y,z' in Å -> (x, y, z) floats, or None."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError("--center", f"expected x,y,z in Å, got {text!r}")
    return values


def parse_order(value, source="--order"):
    if value < 0:
        raise InputError(source, f"order must be >= 0, got {value}")
    return value
