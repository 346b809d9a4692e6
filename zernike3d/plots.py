"""Quality-control figures, drawn with matplotlib's Agg canvas (no display needed).

Every function takes arrays already computed and writes one PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from zernike3d import __version__
from zernike3d.io.atomic import OutputKind, atomic_path
from zernike3d.maths.fsc import MODEL_THRESHOLD

if TYPE_CHECKING:
    from pathlib import Path

    from zernike3d.maths.fsc import FscCurve


def plot_fsc(path: str | Path, curves: Mapping[str, FscCurve], title: str, order: int, expected: float,
             threshold: float = MODEL_THRESHOLD) -> None:
    """FSC of maps against their expansions up to ``order``, against spatial frequency
    (1/Å; resolution in Å on the top axis).

    ``curves``: {label: FscCurve}; ``expected``: the resolution in Å that the order is
    expected to reach (:func:`zernike3d.maths.resolution.expected_resolution`), drawn as a
    vertical line. Beyond 1.25 × its frequency the curves are drawn faint over a grey
    band: there the expansion holds no detail and the FSC is only residual wiggles. The
    legend gives each map's crossing of ``threshold`` (dashed line).
    """
    fig, ax = _figure(1, 1, (7.5, 4.8))
    ax = ax[0]
    nyquist = max(c.frequency[-1] for c in curves.values())
    represented = min(1.25 / expected, nyquist)
    for label, curve in curves.items():
        inside = curve.frequency <= represented
        (line,) = ax.plot(curve.frequency[1:][inside[1:]], curve.fsc[1:][inside[1:]],
                          label=f"{label} ({resolution_text(curve.resolution(threshold))})")
        ax.plot(curve.frequency[~inside], curve.fsc[~inside], color=line.get_color(), alpha=0.25, linewidth=0.8)
    if represented < nyquist:
        ax.axvspan(represented, nyquist, color="0.9", zorder=0)
        ax.annotate(f"beyond order {order}", (represented, 0.02), xycoords=("data", "axes fraction"),
                    xytext=(4, 0), textcoords="offset points", fontsize=8, color="grey")
    ax.axvline(1 / expected, color="black", linestyle=":", linewidth=1)
    ax.annotate(f"expected for order {order}: {expected:.2f} Å", (1 / expected, 0.98),
                xycoords=("data", "axes fraction"), xytext=(-4, -4), textcoords="offset points",
                fontsize=8, ha="right", va="top")
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
    ax.annotate(f"FSC = {threshold:g}", (0, threshold), xycoords=("axes fraction", "data"),
                xytext=(4, 3), textcoords="offset points", fontsize=8, color="grey")
    ax.set_xlim(0, nyquist)
    ax.set_ylim(min(-0.05, np.nanmin([np.nanmin(c.fsc) for c in curves.values()])), 1.05)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("Fourier shell correlation")
    top = ax.secondary_xaxis("top")
    ticks = [f for f in ax.get_xticks() if 0 < f <= ax.get_xlim()[1]]
    top.set_xticks(ticks, labels=[f"{1 / f:.3g}" for f in ticks])
    top.set_xlabel("resolution (Å)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left", title=f"map (FSC {threshold:g} at)", title_fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_invariant_maps(path: str | Path, invariants: np.ndarray, nl: np.ndarray, names: Sequence[str], title: str) -> None:
    """One heat map per volume of F_nl, n down, l across, on ONE log colour scale shared
    by all volumes (so volumes compare: a 3DVA component is much weaker than the base map).

    ``invariants`` (V, n_nl) with columns ``nl`` (n_nl, 2). Cells with n − l odd hold no
    invariant (Zernike functions need n − l even) and are grey; cells with l > n
    are blank. The scale spans 6 decades below the largest value; smaller ones (and 0)
    show at its bottom.
    """
    order = int(nl[:, 0].max())
    columns = min(len(names), 3)
    rows = -(-len(names) // columns)
    fig, axes = _figure(rows, columns, (4.2 * columns, 3.8 * rows))
    top = float(np.max(invariants)) if np.max(invariants) > 0 else 1.0
    norm = LogNorm(top * 1e-6, top, clip=True)
    n, l = np.meshgrid(np.arange(order + 1), np.arange(order + 1), indexing="ij")
    odd = np.where((l <= n) & ((n - l) % 2 == 1), 1.0, np.nan)
    for ax, name, values in zip(axes, names, invariants):
        grid = np.full((order + 1, order + 1), np.nan)
        grid[nl[:, 0], nl[:, 1]] = np.maximum(values, top * 1e-6)
        image = ax.imshow(grid, origin="upper", cmap="viridis", norm=norm, interpolation="nearest")
        ax.imshow(odd, origin="upper", cmap="Greys", vmin=0, vmax=4, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("l (angular degree)")
        ax.set_ylabel("n (radial order)")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes[: len(names)], label="F_nl (map density units)\none scale for all volumes")
    fig.suptitle(title + "\ngrey: n − l odd, no such invariant; blank: l > n")
    _save(fig, path)


def plot_invariant_pca(path: str | Path, scores: np.ndarray, explained: np.ndarray, colours: np.ndarray,
                       colour_labels: Sequence[str], correlations: np.ndarray, title: str) -> None:
    """Scatter of per-particle invariants on their first two principal components.

    ``scores`` (S, 2); ``explained`` (2,) variance fractions; one panel per column of
    ``colours`` (S, C), the points coloured by it and labelled ``colour_labels[c]``;
    ``correlations`` (2, C): the rank correlation of PC 1 and PC 2 with each column,
    printed in each panel's title.
    """
    panels = colours.shape[1]
    fig, axes = _figure(1, panels, (4.6 * panels, 4.4))
    size = max(1.0, min(12.0, 4000.0 / len(scores)))
    for ax, values, label, (pc1, pc2) in zip(axes, colours.T, colour_labels, np.asarray(correlations).T):
        limit = np.percentile(np.abs(values), 99) or 1.0
        dots = ax.scatter(scores[:, 0], scores[:, 1], c=values, s=size, cmap="coolwarm",
                          vmin=-limit, vmax=limit, linewidths=0, rasterized=True)
        fig.colorbar(dots, ax=ax, label=label)
        ax.set_title(f"Spearman ρ with PC 1: {pc1:+.2f}, PC 2: {pc2:+.2f}", fontsize=9)
        ax.set_xlabel(f"PC 1 ({100 * explained[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC 2 ({100 * explained[1]:.1f}% of variance)")
    fig.suptitle(title)
    _save(fig, path)


def plot_map_slices(path: str | Path, rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], title: str,
                    voxel_size: float, planes: Sequence[str] = ("xy", "xz", "yz")) -> None:
    """Central slices (``planes`` of xy, xz, yz, through voxel N // 2) of several maps.

    ``rows``: [(label, [(column title, map (N, N, N) [z, y, x]), ...])], or with
    ``planes=("xy",)`` each map's central xy section (N, N) [y, x] alone; the maps of one
    row share one symmetric grey scale (so a map and its expansion compare directly).
    Rows may have different numbers of maps; slices are shown with x across and y (or z)
    up. The row's label is written at its left; its first slice carries a scale bar in Å
    (``voxel_size``: Å per voxel).
    """
    per_map = len(planes)
    columns = max(len(maps) for _, maps in rows) * per_map
    width = max(2.0 * columns, MIN_WIDTH_INCHES)
    fig, axes = _figure(len(rows), columns, (width, 2.2 * len(rows) + 0.9))
    axes = np.array(axes).reshape(len(rows), columns)
    for row_axes, (label, maps) in zip(axes, rows):
        limit = max(float(np.max(np.abs(m))) for _, m in maps) or 1.0
        for i, (column, volume) in enumerate(maps):
            c = volume.shape[0] // 2
            sections = ({"xy": volume} if volume.ndim == 2
                        else {"xy": volume[c], "xz": volume[:, c], "yz": volume[:, :, c]})
            for j, plane in enumerate(planes):
                ax = row_axes[per_map * i + j]
                ax.imshow(sections[plane], origin="lower", cmap="gray", vmin=-limit, vmax=limit,
                          interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(" ".join(filter(None, [column, plane if per_map > 1 else ""])), fontsize=PANEL_FONT)
        row_axes[0].set_ylabel(label, fontsize=PANEL_FONT + 1)
        _scale_bar(row_axes[0], maps[0][1].shape[-1], voxel_size)
        for ax in row_axes[per_map * len(maps):]:
            ax.set_visible(False)
    fig.suptitle(_wrapped(title, width))
    _save(fig, path)


#: type size (points) of the panels' titles: readable at the report's width
PANEL_FONT = 10
#: no figure is narrower (inches), so that its title fits
MIN_WIDTH_INCHES = 6.0


def _wrapped(title, width_inches, size=12):
    """``title`` broken into lines that fit a figure ``width_inches`` wide at ``size`` points."""
    import textwrap

    characters = max(20, int(width_inches * 72 / (0.55 * size)))
    return "\n".join(textwrap.fill(line, characters) for line in title.split("\n"))


def _scale_bar(ax, box, voxel_size):
    """A white bar of a round length in Å (about a quarter of the box) at the lower left
    of a slice ``box`` voxels wide, labelled with its length."""
    from matplotlib import patheffects

    target = box * voxel_size / 4
    length = max(n * 10.0**k for k in range(-2, 5) for n in (1, 2, 5) if n * 10.0**k <= max(target, 0.01))
    outline = [patheffects.withStroke(linewidth=3, foreground="black")]
    x0, y0 = 0.06 * box, 0.07 * box
    ax.plot([x0, x0 + length / voxel_size], [y0, y0], color="white", linewidth=2.5, solid_capstyle="butt",
            path_effects=outline)
    ax.text(x0, y0 + 0.04 * box, f"{length:g} Å", color="white", fontsize=PANEL_FONT - 1, va="bottom",
            path_effects=outline)


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


def resolution_text(resolution: float | None) -> str:
    """"6.02 Å", or "not reached" for None (the FSC never drops below the threshold)."""
    if resolution is None:
        return "not reached"
    return f"{resolution:.2f} Å"
