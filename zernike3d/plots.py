"""Quality-control figures, drawn with matplotlib's Agg canvas (no display needed).

Every function takes arrays already computed and writes one PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from zernike3d import __version__
from zernike3d.io.atomic import OutputKind, atomic_path
from zernike3d.maths.fsc import MODEL_THRESHOLD

if TYPE_CHECKING:
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
    fig, axes = _fixed_figure(rows, columns, (3.0, 3.0), margins=(0.75, 1.45, 0.6, 1.0), gaps=(0.85, 0.85))
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
    width, height = fig.get_size_inches()
    bar = fig.add_axes((1 - 1.3 / width, 0.6 / height, 0.18 / width, 1 - 1.6 / height))
    fig.colorbar(image, cax=bar, label="F_nl (map density units)\none scale for all volumes")
    fig.suptitle(_wrapped(title, width) + "\ngrey: n − l odd, no such invariant; blank: l > n")
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
    fig, axes = _fixed_figure(1, panels, (3.9, 3.4), margins=(0.75, 0.3, 0.6, 0.95), gaps=(1.25, 0.0))
    size = max(1.0, min(12.0, 4000.0 / len(scores)))
    for ax, values, label, (pc1, pc2) in zip(axes, colours.T, colour_labels, np.asarray(correlations).T):
        limit = np.percentile(np.abs(values), 99) or 1.0
        dots = ax.scatter(scores[:, 0], scores[:, 1], c=values, s=size, cmap="coolwarm",
                          vmin=-limit, vmax=limit, linewidths=0, rasterized=True)
        fig.colorbar(dots, ax=ax, label=label)
        ax.set_title(f"Spearman ρ with PC 1: {pc1:+.2f}, PC 2: {pc2:+.2f}", fontsize=9)
        ax.set_xlabel(f"PC 1 ({100 * explained[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC 2 ({100 * explained[1]:.1f}% of variance)")
    fig.suptitle(_wrapped(title, fig.get_size_inches()[0]))
    _save(fig, path)


def plot_map_slices(path: str | Path, rows: list, title: str, voxel_size: float,
                    planes: tuple[str, ...] = ("xy", "xz", "yz")) -> None:
    """Central slices (``planes`` of xy, xz, yz, through voxel N // 2) of several maps.

    ``rows``: [(label, [(column title, map (N, N, N) [z, y, x]), ...])], or with
    ``planes=("xy",)`` each map's central xy section (N, N) [y, x] alone; the maps of one
    row share one symmetric grey scale (so a map and its expansion compare directly).
    Rows may have different numbers of maps; slices are shown with x across and y (or z)
    up, each panel :data:`PANEL_INCHES` wide. The row's label is written at its left; its
    first slice carries a scale bar in Å (``voxel_size``: Å per voxel).

    All panels are images placed in ONE axes without ticks (a grid of axes costs
    matplotlib a layout pass and a draw per panel, several seconds for a job's maps).
    """
    per_map = len(planes)
    columns = max(len(maps) for _, maps in rows) * per_map
    # layout in inches: a label margin, then cells of a panel and its title, under the suptitle
    cell, gap, title_h, left = PANEL_INCHES, 0.08, 0.26, 0.34
    width = max(left + columns * (cell + gap), MIN_WIDTH_INCHES)
    heading = _wrapped(title, width)
    top = 0.25 + 0.22 * (heading.count("\n") + 1)
    height = top + len(rows) * (cell + title_h + gap)
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    for r, (label, maps) in enumerate(rows):
        y0 = height - top - (r + 1) * (cell + title_h + gap) + gap
        limit = max(float(np.max(np.abs(m))) for _, m in maps) or 1.0
        for i, (column, volume) in enumerate(maps):
            c = volume.shape[0] // 2
            sections = ({"xy": volume} if volume.ndim == 2
                        else {"xy": volume[c], "xz": volume[:, c], "yz": volume[:, :, c]})
            for j, plane in enumerate(planes):
                x0 = left + (per_map * i + j) * (cell + gap)
                ax.imshow(sections[plane], origin="lower", cmap="gray", vmin=-limit, vmax=limit,
                          interpolation="nearest", extent=(x0, x0 + cell, y0, y0 + cell))
                ax.text(x0 + cell / 2, y0 + cell + 0.04, " ".join(filter(None, [column, plane if per_map > 1 else ""])),
                        ha="center", va="bottom", fontsize=PANEL_FONT)
        ax.text(left - 0.06, y0 + cell / 2, label, rotation=90, ha="right", va="center", fontsize=PANEL_FONT + 1)
        _scale_bar(ax, (left, y0), cell, maps[0][1].shape[-1], voxel_size)
    ax.text(width / 2, height - 0.15, heading, ha="center", va="top", fontsize=12)
    _save(fig, path)


#: width (inches) of one slice of :func:`plot_map_slices`
PANEL_INCHES = 1.9
#: type size (points) of the panels' titles: readable at the report's width
PANEL_FONT = 10
#: no figure is narrower (inches), so that its title fits
MIN_WIDTH_INCHES = 6.0


def _wrapped(title, width_inches, size=12):
    """``title`` broken into lines that fit a figure ``width_inches`` wide at ``size`` points."""
    import textwrap

    characters = max(20, int(width_inches * 72 / (0.55 * size)))
    return "\n".join(textwrap.fill(line, characters) for line in title.split("\n"))


def _scale_bar(ax, corner: tuple[float, float], size: float, box: int, voxel_size: float) -> None:
    """A white bar of a round length in Å (about a quarter of the box) at the lower left
    of a slice ``box`` voxels wide drawn ``size`` data units wide from ``corner`` (its
    lower left, in data units), labelled with its length."""
    from matplotlib import patheffects

    target = box * voxel_size / 4
    length = max(n * 10.0**k for k in range(-2, 5) for n in (1, 2, 5) if n * 10.0**k <= max(target, 0.01))
    outline = [patheffects.withStroke(linewidth=3, foreground="black")]
    scale = size / box  # data units per voxel
    x0, y0 = corner[0] + 0.06 * size, corner[1] + 0.07 * size
    ax.plot([x0, x0 + length / voxel_size * scale], [y0, y0], color="white", linewidth=2.5, solid_capstyle="butt",
            path_effects=outline)
    ax.text(x0, y0 + 0.04 * size, f"{length:g} Å", color="white", fontsize=PANEL_FONT - 1, va="bottom",
            path_effects=outline)


def _fixed_figure(rows: int, columns: int, panel: tuple[float, float], margins: tuple[float, float, float, float],
                  gaps: tuple[float, float]) -> tuple[Figure, list]:
    """A figure of ``rows`` × ``columns`` axes, each ``panel`` (width, height) inches,
    with ``margins`` (left, right, bottom, top) and ``gaps`` (between columns, between
    rows) in inches, laid out once here: no layout engine (constrained layout measures
    every text of every axes again at each draw, most of a QC figure's cost)."""
    left, right, bottom, top = margins
    width = left + right + columns * panel[0] + (columns - 1) * gaps[0]
    height = bottom + top + rows * panel[1] + (rows - 1) * gaps[1]
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False, gridspec_kw={
        "left": left / width, "right": 1 - right / width, "bottom": bottom / height, "top": 1 - top / height,
        "wspace": gaps[0] / panel[0], "hspace": gaps[1] / panel[1]}).ravel()
    return fig, list(axes)


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
