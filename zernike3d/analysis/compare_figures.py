"""Figures of `zernike3d compare`, drawn with matplotlib's Agg canvas (no display needed).

Every function takes arrays already computed and writes one PNG to ``path`` (the stage
writes into a temporary folder that is renamed as a whole, so no file here needs its own
temporary name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import LogNorm

from zernike3d.plots import _figure

if TYPE_CHECKING:
    from pathlib import Path

    from zernike3d.analysis.free_energy import Profile
    from zernike3d.analysis.landscape import Populations


def _save(fig, path):
    fig.savefig(path, dpi=120)


def plot_distance_matrix(path: str | Path, matrix: np.ndarray, labels: Sequence[str], title: str,
                         colour_label: str) -> None:
    """Heat map of a symmetric (V, V) matrix with each cell's value written in it."""
    size = max(4.5, 0.55 * len(labels) + 2.5)
    fig, (ax,) = _figure(1, 1, (size + 1.2, size))
    image = ax.imshow(matrix, cmap="viridis_r", vmin=0)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if len(labels) <= 16:
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value > 0.5 * matrix.max() else "black")
    fig.colorbar(image, ax=ax, label=colour_label)
    ax.set_title(title)
    _save(fig, path)


def plot_order_curves(path: str | Path, curves: Mapping[str, Sequence[tuple[str, np.ndarray, str]]], order: int,
                      title: str) -> None:
    """Per-order curves: ``curves`` {panel title: [(label, values (order+1,), style)]}."""
    panels = len(curves)
    fig, axes = _figure(1, panels, (5.5 * panels, 4.2))
    n = np.arange(order + 1)
    for ax, (panel, lines) in zip(axes, curves.items()):
        for label, values, style in lines:
            ax.plot(n, values, style, label=label, marker=".", markersize=3)
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_ylim(-0.1 if all(np.nanmin(v) >= -0.1 for _, v, _ in lines) else -1.05, 1.05)
        ax.set_xlim(0, order)
        ax.set_xlabel("order n (an expansion to n reaches about 1.81 π R / (n + 2.5) Å)")
        ax.set_ylabel("correlation within order n")
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


def plot_overlaps(path: str | Path, overlaps: Mapping[str, np.ndarray], reference_name: str) -> None:
    """One panel per job: the (K_B, K_A) cosines between its aligned components and the
    reference's, ``overlaps`` {job name: matrix}."""
    panels = len(overlaps)
    fig, axes = _figure(1, panels, (4.2 * panels, 3.8))
    for ax, (name, overlap) in zip(axes, overlaps.items()):
        image = ax.imshow(overlap, cmap="coolwarm", vmin=-1, vmax=1)
        for (j, i), value in np.ndenumerate(overlap):
            ax.text(i, j, f"{value:+.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(overlap.shape[1]), [f"{reference_name} c{i}" for i in range(overlap.shape[1])], fontsize=8)
        ax.set_yticks(range(overlap.shape[0]), [f"{name} c{j}" for j in range(overlap.shape[0])], fontsize=8)
        ax.set_title(f"{name} onto {reference_name}", fontsize=9)
        fig.colorbar(image, ax=ax, label="cosine of components (after alignment)")
    fig.suptitle("3DVA components: inner products over the ball, normalised")
    _save(fig, path)


def plot_landscape_1d(path: str | Path, coords: np.ndarray, dataset: np.ndarray, names: Sequence[str],
                      explained: np.ndarray, bins: int = 100) -> None:
    """One panel per joint axis: each job's density of particles along it."""
    axes_count = coords.shape[1]
    fig, axes = _figure(axes_count, 1, (7.0, 2.1 * axes_count + 0.6))
    for a, ax in enumerate(axes):
        low, high = np.percentile(coords[:, a], [0.1, 99.9])
        edges = np.linspace(low, high, bins + 1) if high > low else bins
        for index, name in enumerate(names):
            values = coords[dataset == index, a]
            density, edge = np.histogram(values, bins=edges, density=True)
            ax.stairs(density, edge, label=f"{name} ({len(values):,})", linewidth=1.2)
        ax.set_xlabel(f"joint axis {a + 1} ({100 * explained[a]:.1f}% of variance)")
        ax.set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.suptitle("Particles of each job along the joint principal axes of their invariants")
    _save(fig, path)


def plot_landscape_2d(path: str | Path, coords: np.ndarray, dataset: np.ndarray, names: Sequence[str],
                      explained: np.ndarray, bins: int = 80) -> None:
    """One panel per job: 2-D histogram of its particles on joint axes 1 and 2, on the
    same ranges and the same logarithmic colour scale."""
    panels = len(names)
    fig, axes = _figure(1, panels, (4.3 * panels, 4.0))
    ranges = [np.percentile(coords[:, a], [0.1, 99.9]) for a in (0, 1)]
    ranges = [r if r[1] > r[0] else (r[0] - 1, r[0] + 1) for r in ranges]
    histograms = [np.histogram2d(coords[dataset == i, 0], coords[dataset == i, 1], bins=bins, range=ranges, density=True)[0]
                  for i in range(panels)]
    positive = np.concatenate([h[h > 0] for h in histograms]) if any((h > 0).any() for h in histograms) else np.ones(1)
    norm = LogNorm(positive.min(), positive.max())
    for ax, name, histogram in zip(axes, names, histograms):
        image = ax.imshow(np.where(histogram > 0, histogram, np.nan).T, origin="lower", aspect="auto",
                          extent=[*ranges[0], *ranges[1]], cmap="magma", norm=norm)
        ax.set_title(name)
        ax.set_xlabel(f"joint axis 1 ({100 * explained[0]:.1f}%)")
        ax.set_ylabel(f"joint axis 2 ({100 * explained[1]:.1f}%)")
    fig.colorbar(image, ax=axes, label="share of the job's particles per unit area of axes 1-2 (invariant units$^{-2}$)")
    fig.suptitle("Joint landscape of the particles' invariants")
    _save(fig, path)


def plot_populations(path: str | Path, populations: Populations, names: Sequence[str]) -> None:
    """Bars: each job's share of particles in each joint cluster, 95% bootstrap interval."""
    clusters = populations.fractions.shape[1]
    fig, (ax,) = _figure(1, 1, (max(5.0, 1.2 * clusters * len(names) / 2 + 3), 4.0))
    width = 0.8 / len(names)
    x = np.arange(clusters)
    for index, name in enumerate(names):
        values = populations.fractions[index]
        errors = np.clip([values - populations.bootstrap_low[index], populations.bootstrap_high[index] - values], 0, None)
        ax.bar(x + (index - (len(names) - 1) / 2) * width, values, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks(x, [f"cluster {c}" for c in range(clusters)])
    ax.set_ylabel("share of the job's particles")
    ax.set_title("Populations of the joint clusters (95% bootstrap interval)")
    ax.legend(fontsize=8)
    _save(fig, path)


def _kcal_axis(ax, kt_kcal_per_mol, temperature, side="right"):
    """A second y axis in kcal/mol beside one in kT."""
    second = ax.secondary_yaxis(side, functions=(lambda g: g * kt_kcal_per_mol, lambda e: e / kt_kcal_per_mol))
    second.set_ylabel(f"kcal/mol at {temperature:g} K")


def plot_free_energy_1d(path: str | Path, profiles: Sequence[Profile], names: Sequence[str], explained: np.ndarray,
                        kt_kcal_per_mol: float, temperature: float) -> None:
    """One panel per joint axis: each job's G = -kT ln p along it (masked bins left out),
    its 95% bootstrap interval shaded; ``profiles``: one 1-D Profile per axis."""
    fig, axes = _figure(len(profiles), 1, (7.0, 2.3 * len(profiles) + 0.6))
    for a, (ax, profile) in enumerate(zip(axes, profiles)):
        edges = profile.edges[0]
        centres = 0.5 * (edges[1:] + edges[:-1])
        for i, name in enumerate(names):
            (line,) = ax.plot(centres, profile.g[i], label=name, linewidth=1.3)
            ax.fill_between(centres, profile.low[i], profile.high[i], color=line.get_color(), alpha=0.25, linewidth=0)
        ax.set_xlabel(f"joint axis {a + 1} ({100 * explained[a]:.1f}% of variance)")
        ax.set_ylabel("G (kT)")
        ax.grid(alpha=0.3)
        _kcal_axis(ax, kt_kcal_per_mol, temperature)
    axes[0].legend(fontsize=8)
    fig.suptitle("Apparent free energy G = -kT ln p along the joint axes (one zero: the reference's minimum)")
    _save(fig, path)


def plot_free_energy_2d(path: str | Path, profile: Profile, names: Sequence[str], explained: np.ndarray,
                        kt_kcal_per_mol: float, temperature: float) -> None:
    """One panel per job: G = -kT ln p over joint axes 1 and 2, one colour scale, bins
    with too few particles left blank."""
    fig, axes = _figure(1, len(names), (4.3 * len(names), 4.0))
    (x, y) = profile.edges
    finite = profile.g[np.isfinite(profile.g)]
    top = float(np.percentile(finite, 99)) if finite.size else 1.0
    for ax, name, g in zip(axes, names, profile.g):
        image = ax.imshow(g.T, origin="lower", aspect="auto", extent=[x[0], x[-1], y[0], y[-1]], cmap="viridis",
                          vmin=0.0, vmax=max(top, 1e-6))
        ax.set_title(name)
        ax.set_xlabel(f"joint axis 1 ({100 * explained[0]:.1f}%)")
        ax.set_ylabel(f"joint axis 2 ({100 * explained[1]:.1f}%)")
    fig.colorbar(image, ax=axes, label=f"G = -kT ln p (kT; 1 kT = {kt_kcal_per_mol:.3f} kcal/mol at {temperature:g} K)")
    fig.suptitle("Apparent free-energy landscape (blank: too few particles)")
    _save(fig, path)


def plot_state_free_energies(path: str | Path, populations: Populations,
                             free_energies: tuple[np.ndarray, np.ndarray, np.ndarray], names: Sequence[str],
                             kt_kcal_per_mol: float, temperature: float) -> None:
    """Bars: each job's ΔG of each joint state relative to the reference, -kT ln(p / p_ref),
    with its 95% bootstrap interval."""
    dg, low, high = free_energies
    clusters = dg.shape[1]
    fig, (ax,) = _figure(1, 1, (max(5.0, 1.2 * clusters * len(names) / 2 + 3), 4.0))
    width = 0.8 / len(names)
    x = np.arange(clusters)
    for index, name in enumerate(names):
        values = np.where(np.isfinite(dg[index]), dg[index], np.nan)
        errors = np.clip(np.nan_to_num([values - low[index], high[index] - values], nan=0.0, posinf=0.0, neginf=0.0), 0, None)
        ax.bar(x + (index - (len(names) - 1) / 2) * width, values, width, yerr=errors, capsize=3, label=name)
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_xticks(x, [f"state {c}" for c in range(clusters)])
    ax.set_ylabel(f"ΔG relative to {names[0]} (kT)")
    _kcal_axis(ax, kt_kcal_per_mol, temperature)
    ax.set_title("Free energy of each joint state, -kT ln(p / p_reference) (95% bootstrap interval)", fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_comparison(folder, names: list[str], comparison, temperature: float) -> None:
    """Every figure of a :class:`~zernike3d.analysis.comparison.Comparison` into
    ``folder`` (the jobs ``names``, the reference first; free energies in kcal/mol at
    ``temperature`` K): the PNGs listed in :mod:`zernike3d.io.comparison_files`."""
    from pathlib import Path

    folder = Path(folder)
    plot_distance_matrix(folder / "volume_distances.png", comparison.distances.shape, comparison.volume_labels,
                         f"Invariant distances of all volumes (each scaled to unit norm), order {comparison.order}",
                         "shape distance ||F_a/|F_a| - F_b/|F_b|||")
    panels: dict[str, list] = {}
    for dataset, pair, correlation, zcc in comparison.curves:
        panel = panels.setdefault(f"{dataset} onto {names[0]} (aligned)", [])
        panel.append((f"{pair} correlation", correlation, "-"))
        if pair == "base~base":
            panel.append((f"{pair} ZCC (original, no phases)", zcc, "--"))
    plot_order_curves(folder / "order_correlation.png", panels, comparison.order,
                      "Correlation per Zernike order of the aligned expansions")
    plot_overlaps(folder / "latent_overlap.png", {n: r.overlap for n, r in comparison.relations.items()}, names[0])
    landscape = comparison.landscape
    coords, dataset, explained = landscape["coords"], landscape["dataset"], landscape["explained"]
    plot_landscape_1d(folder / "landscape_1d.png", coords, dataset, names, explained)
    plot_landscape_2d(folder / "landscape_2d.png", coords, dataset, names, explained)
    plot_populations(folder / "cluster_populations.png", comparison.populations, names)
    energy = comparison.free_energy
    kt = energy["kt_kcal_per_mol"]
    plot_free_energy_1d(folder / "free_energy_1d.png", energy["profiles_1d"], names, explained, kt, temperature)
    plot_free_energy_2d(folder / "free_energy_2d.png", energy["profile_2d"], names, explained, kt, temperature)
    plot_state_free_energies(folder / "free_energy_states.png", comparison.populations, energy["states"], names, kt,
                             temperature)
