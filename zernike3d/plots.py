"""Quality-control figures, drawn with matplotlib's Agg canvas (no display needed).

Every function takes arrays already computed and writes one PNG atomically.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from zernike3d import __version__
from zernike3d.io.atomic import OutputKind, atomic_path
from zernike3d.maths.fsc import FSC_THRESHOLDS


def plot_fsc(path, curves, title):
    """FSC curves against spatial frequency (1/Å, resolution in Å on the top axis).

    ``curves``: {label: FscCurve}. The legend gives each curve's resolution at the
    thresholds of :data:`FSC_THRESHOLDS`, drawn as dashed lines.
    """
    fig, ax = _figure(1, 1, (7.5, 4.8))
    ax = ax[0]
    for label, curve in curves.items():
        crossings = ", ".join(
            f"{t:g}: {resolution_text(curve.resolution(t))}" for t in FSC_THRESHOLDS
        )
        ax.plot(curve.frequency[1:], curve.fsc[1:], marker=".", label=f"{label} ({crossings})")
    for threshold in FSC_THRESHOLDS:
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(f"FSC = {threshold:g}", (0, threshold), xycoords=("axes fraction", "data"),
                    xytext=(4, 3), textcoords="offset points", fontsize=8, color="grey")
    ax.set_xlim(0, max(c.frequency[-1] for c in curves.values()))
    ax.set_ylim(min(-0.05, np.nanmin([np.nanmin(c.fsc) for c in curves.values()])), 1.05)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("Fourier shell correlation")
    top = ax.secondary_xaxis("top")
    ticks = [f for f in ax.get_xticks() if 0 < f <= ax.get_xlim()[1]]
    top.set_xticks(ticks, labels=[f"{1 / f:.3g}" for f in ticks])
    top.set_xlabel("resolution (Å)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left", title="map (resolution at FSC)", title_fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_invariant_maps(path, invariants, nl, names, title):
    """One heat map per volume of F_nl on a log colour scale, n down, l across.

    ``invariants`` (V, n_nl) with columns ``nl`` (n_nl, 2); cells with l > n or n - l odd
    are blank, and so are zero invariants (no value on a log scale).
    """
    order = int(nl[:, 0].max())
    columns = min(len(names), 3)
    rows = -(-len(names) // columns)
    fig, axes = _figure(rows, columns, (4.2 * columns, 3.8 * rows))
    for ax, name, values in zip(axes, names, invariants):
        grid = np.full((order + 1, order + 1), np.nan)
        grid[nl[:, 0], nl[:, 1]] = np.where(values > 0, values, np.nan)
        finite = grid[np.isfinite(grid)]
        norm = LogNorm(finite.min(), finite.max()) if finite.size else None
        image = ax.imshow(grid, origin="upper", cmap="viridis", norm=norm, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("l (angular degree)")
        ax.set_ylabel("n (radial order)")
        fig.colorbar(image, ax=ax, label="F_nl (map density units)")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title)
    _save(fig, path)


def plot_invariant_pca(path, scores, explained, colours, colour_labels, title):
    """Scatter of per-particle invariants on their first two principal components.

    ``scores`` (S, 2); ``explained`` (2,) variance fractions; one panel per column of
    ``colours`` (S, C), the points coloured by it and labelled ``colour_labels[c]``.
    """
    panels = colours.shape[1]
    fig, axes = _figure(1, panels, (4.6 * panels, 4.2))
    size = max(1.0, min(12.0, 4000.0 / len(scores)))
    for ax, values, label in zip(axes, colours.T, colour_labels):
        limit = np.percentile(np.abs(values), 99) or 1.0
        dots = ax.scatter(scores[:, 0], scores[:, 1], c=values, s=size, cmap="coolwarm",
                          vmin=-limit, vmax=limit, linewidths=0, rasterized=True)
        fig.colorbar(dots, ax=ax, label=label)
        ax.set_xlabel(f"PC 1 ({100 * explained[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC 2 ({100 * explained[1]:.1f}% of variance)")
    fig.suptitle(title)
    _save(fig, path)


def _figure(rows, columns, size):
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    return fig, list(axes)


#: the PNG "Software" text of every figure we write; only such a PNG is replaced
SOFTWARE = f"zernike3d {__version__}"


def _ours(path):
    with open(path, "rb") as f:
        return b"Software\x00zernike3d " in f.read(64 * 1024)


FIGURE_OUTPUT = OutputKind("a PNG figure written by zernike3d", _ours)


def _save(fig, path):
    with atomic_path(path, FIGURE_OUTPUT) as tmp:
        fig.savefig(tmp, dpi=120, metadata={"Software": SOFTWARE})


def resolution_text(resolution):
    """"6.02 Å", or "not reached" for None (the FSC never drops below the threshold)."""
    if resolution is None:
        return "not reached"
    return f"{resolution:.2f} Å"
