"""The files of `zernike3d compare`: tables, JSON, the landscape and summary.html.

Written from a :class:`~zernike3d.analysis.comparison.Comparison` into one folder (the
figures beside them come from :mod:`zernike3d.analysis.compare_figures`):

* alignment_<name>.json: the alignment of each other job (as `zernike3d align`), and with
  --frame family ``frame``: how it was found (method, family and base correlations,
  candidates, symmetry copies of the base, whether the rotation is determined, the
  share of particles fitted) and ``states``: per state of the job (its mean, +-1 sd along
  each principal direction of its latents) where it lands in the reference's latents and
  its residual misfit.
* volume_distances.csv (volume_a, volume_b, invariant_distance, shape_distance) and
  volume_distances.png: every volume (base, components) of every job against every
  other in invariant space (rotation-free; shape: each volume scaled to unit norm).
* order_correlation.csv (dataset, pair, n, correlation, zcc) and order_correlation.png:
  per order n, the correlation of the aligned expansions (base with base, and each
  component with its best-matching reference component, sign fixed), and the original
  tool's ZCC (magnitudes only, m != 0 counted over m = -l..l); NaN (not drawn) at orders
  whose power is negligible.
* latent_<name>.json and latent_overlap.png: overlap of the aligned components with the
  reference's (K_B x K_A cosines of the orthonormalised components, principal angles,
  captured share) and the least-squares map z_ref = matrix @ z + offset of the job's
  latents into the reference's latent space.
* landscape.npz: coords (P_total, --axes) float32 on the joint principal axes of the
  particles' raw invariants, dataset (int32, index into names), uid (uint64), names,
  explained (variance share per axis), cluster (int16), nearest_reference_uid (uint64;
  0 where not matched) and nearest_reference_distance (float32; NaN where not matched:
  --match-particles random particles of each dataset are), reference_latents
  (P_total, K_ref) float32: each particle placed in the reference's latent space
  (its own latents for the reference's particles), beyond_reference (bool: the
  particle lies beyond every state of the reference); landscape_1d.png and
  landscape_2d.png: each job's density along the joint axes.
* cluster_populations.csv (dataset, cluster, particles, fraction, bootstrap_std,
  bootstrap_low_95, bootstrap_high_95) and cluster_populations.png: joint k-means
  clusters and each job's share in each, with bootstrap uncertainty.
* nearest_neighbours.csv (dataset, particles, matched, median_distance_to_reference,
  share_beyond_reference_states): how close each job's matched particles come to the
  reference's (for the reference: its particles' nearest other reference particle), and
  the share of its particles beyond every state of the reference
  (:mod:`zernike3d.analysis.free_energy`: a few % at most when the job holds only states
  the reference has, near 1 for a state it lacks).
* free_energy.csv (dataset, state, population, population_low, population_high, dG_kT,
  dG_kT_low, dG_kT_high): per job and joint state (the clusters of
  cluster_populations.csv), its population and ΔG = -kT ln(p / p_reference) in kT with
  95% bootstrap intervals (0 for the reference); free_energy_1d.csv (dataset, axis,
  bin_low, bin_high, particles, G_kT, G_kT_low, G_kT_high, G_kcal_per_mol) and
  free_energy_2d.csv (dataset, axis1_low, axis1_high, axis2_low, axis2_high, particles,
  G_kT, ...): each job's G = -kT ln p along each joint axis and over axes 1-2 (NaN in
  bins of fewer than 20 particles; one zero for all jobs, the reference's minimum);
  free_energy_1d.png, free_energy_2d.png, free_energy_states.png. kcal/mol at
  --temperature, assuming the populations were at equilibrium when the grid was plunged.
* summary.html: the comparison's first-page section for the workflow's report (the frame
  of each job, each state's population and ΔG, the share beyond the reference, the key
  figures inlined).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from zernike3d.analysis.comparison import Comparison

#: the figures of summary.html, with their captions
SUMMARY_FIGURES = (
    ("free_energy_states.png", "ΔG of each joint state relative to the reference, with 95% bootstrap intervals"),
    ("free_energy_2d.png", "apparent free energy over joint axes 1-2 (blank: too few particles)"),
    ("landscape_2d.png", "each job's particles over joint axes 1-2"),
    ("free_energy_1d.png", "apparent free energy along each joint axis"),
    ("cluster_populations.png", "populations of the joint states"),
)


def write_comparison_tables(folder: Path, names: list[str], comparison: Comparison) -> None:
    """Every JSON, CSV and the landscape.npz of ``comparison`` into ``folder`` (the jobs
    ``names``, the reference first)."""
    for name, alignment in comparison.alignments.items():
        _write_json(folder / f"alignment_{name}.json", alignment.to_json())
    d, labels = comparison.distances, comparison.volume_labels
    _write_csv(folder / "volume_distances.csv", ["volume_a", "volume_b", "invariant_distance", "shape_distance"],
               [[labels[i], labels[j], d.euclidean[i, j], d.shape[i, j]] for i in range(len(labels)) for j in range(len(labels))])
    rows = [[dataset, pair, n, c, z] for dataset, pair, correlation, zcc in comparison.curves
            for n, (c, z) in enumerate(zip(correlation, zcc))]
    _write_csv(folder / "order_correlation.csv", ["dataset", "pair", "n", "correlation", "zcc"], rows)
    for name, relation in comparison.relations.items():
        _write_json(folder / f"latent_{name}.json", {"reference": names[0], "dataset": name, **relation.to_json()})
    landscape = comparison.landscape
    with open(folder / "landscape.npz", "wb") as f:
        np.savez(f, **landscape)
    dataset = landscape["dataset"]
    p = comparison.populations
    counts = [np.bincount(p.labels[dataset == i], minlength=p.fractions.shape[1]) for i in range(len(names))]
    _write_csv(folder / "cluster_populations.csv",
               ["dataset", "cluster", "particles", "fraction", "bootstrap_std", "bootstrap_low_95", "bootstrap_high_95"],
               [[name, c, counts[i][c], p.fractions[i, c], p.bootstrap_std[i, c], p.bootstrap_low[i, c], p.bootstrap_high[i, c]]
                for i, name in enumerate(names) for c in range(p.fractions.shape[1])])
    nn = comparison.neighbours
    rows = []
    for i, name in enumerate(names):
        distances = nn.distance[dataset == i]
        matched = distances[np.isfinite(distances)]
        rows.append([name, len(distances), len(matched), float(np.median(matched)),
                     float(np.mean(landscape["beyond_reference"][dataset == i]))])
    _write_csv(folder / "nearest_neighbours.csv",
               ["dataset", "particles", "matched", "median_distance_to_reference", "share_beyond_reference_states"], rows)
    _write_free_energy_tables(folder, names, comparison)


def _write_free_energy_tables(folder: Path, names: list[str], comparison: Comparison) -> None:
    """free_energy.csv, free_energy_1d.csv and free_energy_2d.csv."""
    p = comparison.populations
    dg, low, high = comparison.free_energy["states"]
    _write_csv(folder / "free_energy.csv",
               ["dataset", "state", "population", "population_low", "population_high", "dG_kT", "dG_kT_low", "dG_kT_high"],
               [[name, c, p.fractions[i, c], p.bootstrap_low[i, c], p.bootstrap_high[i, c], dg[i, c], low[i, c], high[i, c]]
                for i, name in enumerate(names) for c in range(p.fractions.shape[1])])
    kt = comparison.free_energy["kt_kcal_per_mol"]
    header = ["dataset", "axis", "bin_low", "bin_high", "particles", "G_kT", "G_kT_low", "G_kT_high", "G_kcal_per_mol"]
    rows = []
    for a, profile in enumerate(comparison.free_energy["profiles_1d"]):
        edges = profile.edges[0]
        for i, name in enumerate(names):
            rows += [[name, a + 1, edges[b], edges[b + 1], int(profile.counts[i, b]), profile.g[i, b], profile.low[i, b],
                      profile.high[i, b], kt * profile.g[i, b]] for b in range(len(edges) - 1)]
    _write_csv(folder / "free_energy_1d.csv", header, rows)
    profile = comparison.free_energy["profile_2d"]
    (x, y), rows = profile.edges, []
    for i, name in enumerate(names):
        rows += [[name, x[b], x[b + 1], y[c], y[c + 1], int(profile.counts[i, b, c]), profile.g[i, b, c], profile.low[i, b, c],
                  profile.high[i, b, c], kt * profile.g[i, b, c]] for b in range(len(x) - 1) for c in range(len(y) - 1)]
    _write_csv(folder / "free_energy_2d.csv", ["dataset", "axis1_low", "axis1_high", "axis2_low", "axis2_high", "particles",
                                               "G_kT", "G_kT_low", "G_kT_high", "G_kcal_per_mol"], rows)


def write_comparison_summary(folder: Path, names: list[str], comparison: Comparison, frame: str,
                             temperature: float) -> None:
    """``folder/summary.html``: the comparison's first-page section (the ``frame`` method
    of each job, each state's population and ΔG at ``temperature`` K, the share beyond
    the reference, the figures of :data:`SUMMARY_FIGURES` inlined, so written after them),
    for the workflow's report."""
    import html

    from zernike3d.io.summary_html import html_figure, html_table, write_ascii_html

    frames = []
    for name, a in comparison.alignments.items():
        found = a.frame or {}
        angle = float(np.degrees(np.arccos(np.clip((np.trace(a.rotation) - 1) / 2, -1.0, 1.0))))
        determined = "yes" if found.get("rotation_determined", True) else \
            f"no: about {len(found['undetermined_axes'])} axis/axes"
        frames.append([name, frame, f"{angle:.2f}", ", ".join(f"{v:.2f}" for v in a.shift), a.hand,
                       f"{(a.correlation if a.hand == 'same' else a.mirror_correlation):.4f}",
                       f"{found['base_correlation']:.4f}" if "base_correlation" in found else "",
                       str(len(found.get("symmetry_copies", [])) or ""), determined])
    p = comparison.populations
    dg, low, high = comparison.free_energy["states"]
    kt = comparison.free_energy["kt_kcal_per_mol"]
    states = [[name, c, f"{p.fractions[i, c]:.3f} [{p.bootstrap_low[i, c]:.3f}, {p.bootstrap_high[i, c]:.3f}]",
               f"{dg[i, c]:+.2f} [{low[i, c]:+.2f}, {high[i, c]:+.2f}]", f"{kt * dg[i, c]:+.2f}"]
              for i, name in enumerate(names) for c in range(p.fractions.shape[1])]
    beyond = comparison.landscape["beyond_reference"]
    shares = [[name, f"{np.mean(beyond[comparison.landscape['dataset'] == i]):.3f}"] for i, name in enumerate(names)]
    title = html.escape(" vs ".join(names))
    parts = [f"<div class=\"zernike3d-compare\"><p><b>{title}</b>: each job placed in the frame of {html.escape(names[0])}</p>",
             html_table(["dataset", "frame", "rotation (deg)", "shift (A)", "hand", "correlation", "base correlation",
                         "symmetry copies of the base", "rotation determined"], frames),
             f"<p>Joint states: population and &#916;G = -kT ln(p / p<sub>{html.escape(names[0])}</sub>) "
             f"(95% bootstrap intervals; kT = {kt:.3f} kcal/mol at {temperature:g} K, assuming equilibrium "
             "before vitrification)</p>",
             html_table(["dataset", "state", "population", "dG (kT)", "dG (kcal/mol)"], states),
             "<p>Share of each job's particles beyond every state of the reference</p>",
             html_table(["dataset", "share_beyond_reference_states"], shares)]
    parts += [html_figure(folder / file_name, f"{title}: {caption}") for file_name, caption in SUMMARY_FIGURES]
    parts.append("</div>")
    write_ascii_html(folder / "summary.html", parts)


def _write_json(path: Path, record: dict) -> None:
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
