"""Index tables of the Zernike expansion.

Coefficients are stored for m >= 0 only (a real map has Omega_{n,l,-m} =
(-1)^m conj(Omega_{n,l,m})), with 0 <= l <= n and n - l even, ordered by n, then l,
then m. Because n varies slowest, the coefficients up to a lower order are a prefix of
those up to a higher one.
"""

from functools import lru_cache

import numpy as np


def nlm_table(order: int) -> np.ndarray:
    """(n, l, m) rows, shape (coefficient_count(order), 3), int32."""
    rows = [
        (n, l, m)
        for n in range(order + 1)
        for l in range(n % 2, n + 1, 2)
        for m in range(l + 1)
    ]
    return np.array(rows, dtype=np.int32).reshape(-1, 3)


def nl_table(order: int) -> np.ndarray:
    """(n, l) rows of the invariants, shape (n_nl, 2), int32, ordered by n then l."""
    rows = [(n, l) for n in range(order + 1) for l in range(n % 2, n + 1, 2)]
    return np.array(rows, dtype=np.int32).reshape(-1, 2)


@lru_cache(maxsize=64)
def coefficient_count(order: int) -> int:
    """Number of stored (m >= 0) coefficients up to ``order``: each l has l + 1 values of m
    at each of the (order - l) // 2 + 1 orders n = l, l + 2, ... <= order."""
    return sum((l + 1) * ((order - l) // 2 + 1) for l in range(order + 1))


def nlm_offsets(order: int) -> np.ndarray:
    """``offsets[n, l]``: column of (n, l, m=0) in :func:`nlm_table`; -1 where invalid."""
    offsets = np.full((order + 1, order + 1), -1, dtype=np.int64)
    column = 0
    for n in range(order + 1):
        for l in range(n % 2, n + 1, 2):
            offsets[n, l] = column
            column += l + 1
    return offsets


def truncate(moments: np.ndarray, stored_order: int, order: int) -> np.ndarray:
    """Moments up to ``order`` from moments stored up to ``stored_order`` (a prefix)."""
    if order > stored_order:
        raise ValueError(f"order {order} is above the stored order {stored_order}")
    return moments[..., : coefficient_count(order)]
