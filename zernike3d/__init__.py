"""zernike3d: 3D Zernike moments, invariants and reconstructions of cryo-EM maps.

Python entry points: :class:`zernike3d.moments.Moments`, :func:`zernike3d.io.mrc.read_map`
and :func:`zernike3d.io.mrc.write_map`, and the transforms in :mod:`zernike3d.maths`.
Command line: ``zernike3d --help``. Layout: docs/architecture.md.
"""



def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata when first asked for (importing
    importlib.metadata and reading it costs every stage's start-up some 50 ms otherwise)."""
    if name != "__version__":
        raise AttributeError(f"module 'zernike3d' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zernike3d")
    except PackageNotFoundError:  # a checkout run without installing (the workflow's PYTHONPATH)
        return "0+unknown"
