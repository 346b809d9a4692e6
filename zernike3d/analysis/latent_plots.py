"""Figures of a 3D Variability latent space: z_i against z_j for every pair of components.

Each panel is the particles' density (log counts in DENSITY_BINS x DENSITY_BINS cells,
from a random sample of at most :data:`DENSITY_SAMPLE` particles; empty cells blank),
with overlays: particles coloured by cluster (a random sample of at most
:data:`SCATTER_SAMPLE`), cluster centres (labelled stars), the points of reconstructed maps such as the series (black crosses) and paths (lines through
their frames). A job with a single component gets one histogram of z_0 with the overlays
as vertical marks. Latents are unitless (cryoSPARC ``components_mode_{k}/value``).

The figures are cheap to draw whatever the number of particles: a fixed layout (a
constrained one draws every text twice more), the density as one image per panel (a
hexbin drew thousands of polygons), and samples of the particles (15 panels of 1,000
particles took 3.5 s with hexbins and the constrained layout, 1.9 s now with about 6
ticks an axis, on 2 shared cores under load: ``python benchmarks/bench_startup.py
--figure``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

SCATTER_SAMPLE = 10_000
#: the density is drawn from at most this many particles (a fixed random sample)
DENSITY_SAMPLE = 200_000
#: cells of the density along each axis
DENSITY_BINS = 60


def plot_latent_pairs(path: str | Path, latents: np.ndarray, title: str, *, labels: np.ndarray | None = None,
                      centres: Mapping[str, np.ndarray] | None = None, series: np.ndarray | None = None,
                      paths: Mapping[str, np.ndarray] | None = None) -> None:
    """Write the figure to ``path`` (PNG; inside the caller's temporary output folder).

    ``latents`` (P, K); ``labels`` (P,) cluster of each particle or None; ``centres``
    {name: (K,) latent}; ``series`` (S, K) latents of series points; ``paths``
    {name: (F, K) latents along the path}.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    from zernike3d.plots import SOFTWARE

    latents = np.asarray(latents, dtype=np.float64)
    centres, paths = centres or {}, paths or {}
    k = latents.shape[1]
    pairs: list[tuple[int, int | None]] = [(i, j) for i in range(k) for j in range(i + 1, k)] or [(0, None)]
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    width, height = 4.2 * columns, 4.0 * rows + 0.4
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    # a fixed layout, in inches: tick labels and axis labels left and below, the title on top
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.8 / height,
                        wspace=0.3, hspace=0.3)
    order = np.random.default_rng(0).permutation(len(latents))
    sample, dense = order[:SCATTER_SAMPLE], np.sort(order[:DENSITY_SAMPLE])
    for ax, (i, j) in zip(axes, pairs):
        if j is None:
            _histogram_panel(ax, latents[:, 0], labels, centres, series, paths)
            continue
        counts, x_edges, y_edges = np.histogram2d(latents[dense, i], latents[dense, j], bins=DENSITY_BINS)
        _cell_image(ax, np.where(counts > 0, counts, np.nan), x_edges, y_edges, cmap="Greys",
                    norm=LogNorm(1.0, max(2.0, counts.max())))
        if labels is not None:
            ax.scatter(latents[sample, i], latents[sample, j], c=labels[sample], cmap="tab10",
                       vmin=-0.5, vmax=9.5, s=2, alpha=0.5, linewidths=0)
        if series is not None and len(series):
            ax.scatter(series[:, i], series[:, j], s=22, c="black", marker="x", linewidths=1, label="maps")
        for name, track in paths.items():
            ax.plot(track[:, i], track[:, j], "-o", ms=3, lw=1.5, label=name)
        for n, (name, z) in enumerate(centres.items()):
            ax.scatter([z[i]], [z[j]], s=120, marker="*", c=[_colour(n)], edgecolors="black", zorder=5)
            ax.annotate(name.replace("cluster_", "c"), (z[i], z[j]), xytext=(4, 4),
                        textcoords="offset points", fontsize=8)
        ax.set_xlabel(f"z_{i}")
        ax.set_ylabel(f"z_{j}")
        ax.locator_params(nbins=5)  # ticks are most of the drawing: about 6 an axis, not 9
        if (series is not None and len(series)) or paths:
            ax.legend(fontsize=7, loc="best")
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, metadata={"Software": SOFTWARE})


def index_points(path: str | Path, n_components: int) -> np.ndarray:
    """Latents (S, K) of the points of a `zernike3d reconstruct` index.csv other than the
    base map (map-space copies counted once), to mark on the figure."""
    import csv

    from zernike3d.errors import InputError

    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("kind") not in ("base", None)
                    and not r["file"].startswith("mapspace_")]
        return np.array([[float(r[f"z_{k}"]) for k in range(n_components)] for r in rows]).reshape(-1, n_components)
    except (OSError, KeyError, ValueError) as err:
        raise InputError(path, f"--index: not a reconstruct index.csv ({err})") from None


def _histogram_panel(ax, values, labels, centres, series, paths):
    if labels is None:
        ax.hist(values, bins=80, color="0.5")
    else:
        groups = [values[labels == c] for c in range(int(labels.max()) + 1)]
        ax.hist(groups, bins=80, stacked=True, color=[_colour(c) for c in range(len(groups))])
    for n, (name, z) in enumerate(centres.items()):
        ax.axvline(z[0], color=_colour(n), ls="--", label=name)
    if series is not None:
        for z in series:
            ax.axvline(z[0], color="black", lw=0.5)
    for name, track in paths.items():
        ax.plot(track[:, 0], np.zeros(len(track)), "-o", ms=3, label=name)
    ax.set_xlabel("z_0")
    ax.set_ylabel("particles")


def _colour(index):
    from matplotlib import colormaps

    return colormaps["tab10"](index % 10)


def plot_latent_scores(path: str | Path, latents: np.ndarray, scores: np.ndarray, stems: Sequence[str],
                       best_points: np.ndarray, title: str) -> None:
    """Write the figure of each query's score over the latent space to ``path`` (PNG).

    One row per query (``stems``), one panel per pair of components: the mean score of
    the particles in each of 50 x 50 cells (from a random sample of at most
    :data:`DENSITY_SAMPLE`), the best latent point marked by a star. ``latents`` (P, K);
    ``scores`` (P, Q); ``best_points`` (Q, K). One component: the score of each particle
    (a sample of :data:`SCATTER_SAMPLE`) against z_0, the best point a vertical line. No
    particles (a single map): one bar per query.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from zernike3d.plots import SOFTWARE

    latents = np.asarray(latents, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    k = latents.shape[1] if latents.ndim == 2 else 0
    if k == 0 or len(latents) == 0:
        fig = Figure(figsize=(1.2 * len(stems) + 3, 3.5), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ax.bar(range(len(stems)), scores[0], color="0.5")
        ax.set_xticks(range(len(stems)), stems, rotation=30, ha="right")
        ax.set_ylabel("correlation with the map")
        fig.suptitle(title, fontsize=10)
        fig.savefig(path, dpi=110, metadata={"Software": SOFTWARE})
        return
    pairs: list[tuple[int, int | None]] = [(i, j) for i in range(k) for j in range(i + 1, k)] or [(0, None)]
    # a fixed layout: the constrained one took longer than everything else at 1,000,000 particles
    fig = Figure(figsize=(4.2 * len(pairs) + 1.2, 3.8 * len(stems) + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(stems), len(pairs), squeeze=False)
    fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.9, bottom=0.6 / fig.get_figheight(),
                        top=1 - 0.6 / fig.get_figheight(), wspace=0.3, hspace=0.45)
    order = np.random.default_rng(0).permutation(len(latents))
    dense, sample = np.sort(order[:DENSITY_SAMPLE]), order[:SCATTER_SAMPLE]
    for q, stem in enumerate(stems):
        finite = np.isfinite(scores[:, q])
        low, high = np.quantile(scores[finite, q], [0.01, 1.0]) if finite.any() else (0.0, 1.0)
        for ax, (i, j) in zip(axes[q], pairs):
            if j is None:
                shown = sample[finite[sample]]
                ax.scatter(latents[shown, 0], scores[shown, q], s=2, c="0.3", alpha=0.4, linewidths=0)
                ax.axvline(best_points[q][0], color="crimson", ls="--", label="best point")
                ax.set_xlabel("z_0")
                ax.set_ylabel(f"score: {stem}")
                ax.legend(fontsize=7)
                continue
            shown = dense[finite[dense]]
            image = _mean_image(ax, latents[shown, i], latents[shown, j], scores[shown, q], low, high)
            ax.scatter([best_points[q][i]], [best_points[q][j]], s=160, marker="*", c="crimson", edgecolors="white",
                       zorder=5, label="best point")
            ax.set_xlabel(f"z_{i}")
            ax.set_ylabel(f"z_{j}")
            ax.set_title(f"{stem}: score over z_{i}, z_{j} (star: best point)", fontsize=9)
        if pairs[0][1] is not None:
            fig.colorbar(image, ax=list(axes[q]), label=f"mean score: {stem}", fraction=0.04, pad=0.02)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, metadata={"Software": SOFTWARE})


def _mean_image(ax, x: np.ndarray, y: np.ndarray, values: np.ndarray, low: float, high: float, bins: int = 50):
    """The mean of ``values`` in each of ``bins`` x ``bins`` cells spanning ``x`` and
    ``y`` (empty cells blank), drawn on ``ax``; returns the image (for a colour bar)."""
    counts, x_edges, y_edges = np.histogram2d(x, y, bins=bins)
    sums, _, _ = np.histogram2d(x, y, bins=(x_edges, y_edges), weights=values)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    return _cell_image(ax, means, x_edges, y_edges, cmap="viridis", vmin=low, vmax=high)


def _cell_image(ax, cells: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray, **style):
    """Draw ``cells`` (x cells, y cells; nan: blank) on ``ax`` as one image spanning the
    edges, each cell a flat rectangle; returns the image (for a colour bar)."""
    return ax.imshow(cells.T, origin="lower", extent=(x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]), aspect="auto",
                     interpolation="nearest", **style)
