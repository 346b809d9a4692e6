"""Marker positions from Chimera/ChimeraX marker files (``.cmm``).

A ``.cmm`` file is XML::

    <marker_set name="marker set 1">
      <marker id="1" x="61.2" y="58.0" z="70.4" r="1" g="1" b="0" radius="1.5"/>
    </marker_set>

``x``, ``y``, ``z`` are in Å in the viewer's scene coordinates, which include the map's
origin: subtract the map origin to get a position from the centre of voxel [0, 0, 0].
"""

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError


def read_markers(path: str | Path) -> np.ndarray:
    """All markers of all marker sets, in file order: float64 (M, 3) of (x, y, z) in Å."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "marker file not found")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as err:
        raise InputError(path, f"not a Chimera marker (.cmm) XML file: {err}") from None
    positions = []
    for marker in root.iter("marker"):
        try:
            positions.append([float(marker.attrib[axis]) for axis in "xyz"])
        except (KeyError, ValueError):
            raise InputError(path, f"marker {marker.attrib.get('id', '?')} lacks numeric "
                             "x, y, z attributes") from None
    return np.array(positions, dtype=np.float64).reshape(-1, 3)


def read_single_marker(path: str | Path) -> tuple[float, ...]:
    """The one marker of a file, (x, y, z) in Å; :class:`InputError` unless there is exactly one."""
    markers = read_markers(path)
    if len(markers) != 1:
        raise InputError(path, f"expected exactly one marker, found {len(markers)}")
    return tuple(float(v) for v in markers[0])
