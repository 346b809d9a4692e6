"""zernike3d: 3D Zernike moments, invariants and reconstructions of cryo-EM maps.

Python entry points: :class:`zernike3d.moments.Moments`, :func:`zernike3d.io.mrc.read_map`
and :func:`zernike3d.io.mrc.write_map`, and the transforms in :mod:`zernike3d.maths`.
Command line: ``zernike3d --help``. Layout: docs/architecture.md.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zernike3d")
except PackageNotFoundError:  # a checkout run without installing (the workflow's PYTHONPATH)
    __version__ = "0+unknown"
