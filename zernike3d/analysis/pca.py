"""Principal components and rank correlations of per-particle descriptors.

One implementation of each, for every analysis of the package: the principal axes come
from the small (D, D) covariance of the centred columns (cheap for millions of rows),
each axis signed so that its largest loading is positive (runs repeat exactly).
"""

from __future__ import annotations

import numpy as np


def principal_components(values: np.ndarray, dimensions: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores (S, d) float64 of the rows of ``values`` (S, D) on the first
    d = min(``dimensions``, D) principal components of its centred columns, and the
    fraction of the total variance along each (d,).

    The columns are centred, not standardised (standardise them first where every
    column should weigh the same); a total variance of 0 gives fractions of 0.
    """
    x = np.array(values, dtype=np.float64)  # the one copy, centred in place
    x -= x.mean(axis=0)
    axes, explained = principal_axes(x.T @ x / max(len(x), 1), dimensions)
    return x @ axes, explained


def principal_axes(covariance: np.ndarray, dimensions: int) -> tuple[np.ndarray, np.ndarray]:
    """The first d = min(``dimensions``, D) principal axes (D, d) of a (D, D) covariance,
    by decreasing variance, each signed so that its largest loading is positive, and the
    fraction of the total variance along each (d,) (0 where the total is 0). The one
    eigen-step of every PCA in the package (qc's plot, the clusters' invariant features,
    compare's joint axes)."""
    variances, vectors = np.linalg.eigh(covariance)
    keep = np.argsort(variances)[::-1][: min(dimensions, covariance.shape[0])]
    axes = vectors[:, keep]
    axes *= np.where(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])] < 0, -1.0, 1.0)
    total = float(np.trace(covariance))
    explained = np.clip(variances[keep], 0.0, None) / total if total > 0 else np.zeros(len(keep))
    return axes, explained


def rank_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation (Ka, Kb) of each column of ``a`` (S, Ka) with each column
    of ``b`` (S, Kb): the Pearson correlation of their ranks, ties sharing their mean rank
    (as :func:`scipy.stats.spearmanr`); 0 where either column does not vary."""
    ranks = [_ranks(column) for column in np.column_stack([a, b]).T]
    first, second = ranks[: np.shape(a)[1]], ranks[np.shape(a)[1] :]
    return np.array([[_correlation(x, y) for y in second] for x in first])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..S-1 of ``values``, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    unique, inverse = np.unique(values, return_inverse=True)
    if len(unique) < len(values):
        ranks = (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]
    return ranks


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / norm) if norm > 0 else 0.0
