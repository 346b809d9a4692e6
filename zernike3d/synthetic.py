"""Synthetic maps for examples, tests and benchmarks (no external data needed).

All maps are float32 arrays indexed ``data[z, y, x]`` (MRC order), with positions in Å
measured from the centre of voxel [0, 0, 0].
"""

import numpy as np


def gaussian_blobs(box, voxel_size, centers, sigmas, amplitudes):
    """Sum of isotropic Gaussians; ``centers`` are (x, y, z) in Å, ``sigmas`` in Å."""
    axis = np.arange(box) * voxel_size
    z, y, x = axis[:, None, None], axis[None, :, None], axis[None, None, :]
    out = np.zeros((box, box, box), dtype=np.float64)
    for (cx, cy, cz), sigma, amp in zip(centers, sigmas, amplitudes):
        out += amp * np.exp(
            -((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2.0 * sigma**2)
        )
    return out.astype(np.float32)


def chiral_phantom(box=48, voxel_size=1.0, turns=1.25, n_blobs=9):
    """A right-handed helix of Gaussian blobs of growing size, about the box centre.

    The helix runs counter-clockwise (x towards y) as z increases, so the object is
    chiral: its mirror image (any one axis flipped) is a different map. It fills about
    70% of the inscribed ball's radius, centred on voxel index box//2.
    """
    centre = (box // 2) * voxel_size
    half = box * voxel_size / 2.0
    t = np.linspace(0.0, 2.0 * np.pi * turns, n_blobs)
    ring = 0.45 * half
    height = 0.55 * half
    centers = np.stack(
        [centre + ring * np.cos(t), centre + ring * np.sin(t), centre + height * (t / t[-1] - 0.5) * 2],
        axis=1,
    )
    sigmas = np.linspace(0.06, 0.11, n_blobs) * half
    amplitudes = np.linspace(1.0, 1.6, n_blobs)
    return gaussian_blobs(box, voxel_size, centers, sigmas, amplitudes)
