"""Rotation-invariant Zernike descriptors.

    F_nl = sqrt( sum_{m=-l..l} |Omega_nlm|^2 ) = sqrt( |Omega_nl0|^2 + 2 sum_{m>0} |Omega_nlm|^2 )

(the second form for real maps, whose m < 0 moments mirror the stored m >= 0 ones). A
rotation about the expansion centre mixes the m of each (n, l) by a unitary Wigner
matrix, so F_nl does not change; a reflection only changes signs, so F_nl cannot tell a
molecule from its mirror image (the moments can).

For a 3D Variability job, a particle with latents z has moments
Omega(z) = Omega_base + sum_k z_k Omega_k, so F_nl(z)^2 = z~^T G_nl z~ with z~ = (1, z)
and the (K+1) x (K+1) real matrix G_nl[a, b] = sum_m w_m Re(Omega_a,nlm conj(Omega_b,nlm)),
w_0 = 1, w_m = 2: computed once, it makes millions of particles cheap.
"""

import numpy as np

from zernike3d.maths.indexing import coefficient_count, nlm_table


def _weights_and_groups(order):
    nlm = nlm_table(order)
    weights = np.where(nlm[:, 2] == 0, 1.0, 2.0)
    starts = np.flatnonzero(nlm[:, 2] == 0)
    return weights, starts


def invariants(moments: np.ndarray, order: int) -> np.ndarray:
    """F_nl of each volume: (V, n_nl) float64, columns ordered as :func:`nl_table`."""
    moments = np.atleast_2d(moments)
    weights, starts = _weights_and_groups(order)
    power = np.abs(moments[:, : weights.size]) ** 2 * weights
    return np.sqrt(np.add.reduceat(power, starts, axis=1))


def particle_invariant_forms(moments: np.ndarray, order: int) -> np.ndarray:
    """G (n_nl, V, V) float64 with F_nl(z)^2 = z~^T G_nl z~ (rows: base, component_0, ...)."""
    moments = np.atleast_2d(moments)[:, : coefficient_count(order)]
    weights, starts = _weights_and_groups(order)
    products = np.real(moments[:, None, :] * np.conj(moments[None, :, :])) * weights
    return np.add.reduceat(products, starts, axis=2).transpose(2, 0, 1)


def particle_invariants(forms: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """F_nl(z) for latents (P, K): (P, n_nl) float64 (small P; see io.particle_invariants)."""
    latents = np.atleast_2d(latents)
    z = np.concatenate([np.ones((latents.shape[0], 1)), latents], axis=1)
    squared = np.einsum("pa,nab,pb->pn", z, forms, z)
    return np.sqrt(np.clip(squared, 0.0, None))

