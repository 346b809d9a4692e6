"""How fine a detail a Zernike expansion of order n represents, in Å, and the order a
target resolution needs: the one place that states the relation.

"Resolution" is the FSC 0.5 crossing between a map and its expansion up to order n, both
multiplied by the ball's soft mask (:func:`zernike3d.maths.fsc.masked_fsc`), for maps with
detail up to the Nyquist frequency. It follows

    resolution ≈ RESOLUTION_FACTOR · π R / (n + ORDER_OFFSET)        (Å; R the ball radius in Å)

fitted by ``benchmarks/fit_resolution.py`` on 43 (map, order) pairs: the real hand-vol.mrc
phantom at three box/voxel sizes and four synthetic protein-like maps (chains of Gaussian
atoms 1.5 Å apart), R = 24–51 Å, n = 6–100: relative error rms 3.8%, all within −10% / +7%.
The older rule of thumb π R / n is 1.3–1.8× too optimistic (the ratio grows with n). A
map without detail at that resolution (already low-passed) reaches FSC 0.5 with a lower
order; the relation is the order's limit, not the map's.

An order can never resolve more than the voxels do: resolutions finer than Nyquist (two
voxels) are out of reach, and orders above :func:`max_useful_order` fit only noise and
interpolation artefacts.
"""

import math

#: fitted constants of resolution ≈ RESOLUTION_FACTOR · π R / (n + ORDER_OFFSET)
RESOLUTION_FACTOR = 1.81
ORDER_OFFSET = 2.5


def expected_resolution(order: int, radius: float) -> float:
    """Resolution in Å (FSC 0.5 against the map) that an expansion up to ``order`` reaches
    in a ball of ``radius`` Å, for a map with detail at least that fine."""
    if order < 0 or not radius > 0:
        raise ValueError(f"need order >= 0 and radius > 0, got {order} and {radius}")
    return RESOLUTION_FACTOR * math.pi * radius / (order + ORDER_OFFSET)


def order_for_resolution(resolution: float, radius: float) -> int:
    """The smallest order whose :func:`expected_resolution` is ``resolution`` Å or finer,
    in a ball of ``radius`` Å."""
    if not resolution > 0 or not radius > 0:
        raise ValueError(f"need resolution > 0 and radius > 0, got {resolution} and {radius}")
    exact = RESOLUTION_FACTOR * math.pi * radius / resolution - ORDER_OFFSET
    return max(0, math.ceil(exact - 1e-9))


def nyquist(voxel_size: float) -> float:
    """The finest resolution the voxels sample, two voxels, in Å."""
    return 2.0 * voxel_size


def resolves(resolution: float, voxel_size: float) -> bool:
    """Can voxels of ``voxel_size`` Å hold detail of ``resolution`` Å, i.e. is it a
    finite number no finer than Nyquist? The check of `zernike3d decompose --resolution`
    and of the workflow's ``resolution`` (with the binned voxel size)."""
    return math.isfinite(resolution) and resolution >= nyquist(voxel_size)


def chosen_order(order: int | None, resolution: float | None, radius: float) -> int:
    """The order an expansion runs to: ``order`` when given, else the smallest that
    reaches ``resolution`` Å in a ball of ``radius`` Å (:func:`order_for_resolution`).
    The rule of both `zernike3d decompose` (``--order``/``--resolution``) and the
    workflow's ``order``/``resolution``."""
    if order is not None:
        return order
    if resolution is None:
        raise ValueError("need an order or a resolution")
    return order_for_resolution(resolution, radius)


def max_useful_order(radius: float, voxel_size: float) -> int:
    """The order whose expected resolution reaches Nyquist: higher orders resolve nothing
    the voxels can hold."""
    return order_for_resolution(nyquist(voxel_size), radius)
