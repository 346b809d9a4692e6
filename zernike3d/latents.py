"""Points in the latent space of a 3D Variability job, picked as cryoSPARC's 3DVA Display does.

A job with K components gives each particle a latent vector z = (z_0 .. z_{K-1}); the map
at z is base + Σ_k z_k component_k, so its moments are Ω(z) = Ω_base + Σ_k z_k Ω_k
(:func:`moments_at`). A point is picked by particle (row index or uid, like the original
``--z_ind``), by explicit coordinates, along each component (simple mode) or as a k-means
cluster centre (cluster mode). Each point carries a name that says what it shows, used as
the stem of the file reconstructed from it.
"""

from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2

from zernike3d.errors import InputError
from zernike3d.io.dataset import map_names


@dataclass(frozen=True)
class LatentPoint:
    name: str  # e.g. base, particle_uid_1234, particle_index_12, latent_00, series_c0_f03, cluster_02
    kind: str  # "base", "particle", "latent", "series" or "cluster"
    z: np.ndarray  # (K,) float64 latent coordinates


def check_job(moments, moments_source, dataset, dataset_source):
    """Raise :class:`InputError` unless ``moments`` (a Moments) are those of the 3DVA job
    in ``dataset`` (a Dataset): volumes base, component_0.. with one per latent component."""
    names = list(moments.names)
    if names != map_names(len(names) - 1):
        raise InputError(
            moments_source,
            f"volumes are named {', '.join(names)}, not base, component_0, ... as a 3DVA job's "
            "(decompose the dataset, or pass --names base,component_0,...)",
        )
    if len(names) != 1 + dataset.n_components:
        raise InputError(
            moments_source,
            f"has {len(names) - 1} components but {dataset_source} has latents for {dataset.n_components}",
        )


def particle_points(selectors, latents, uid, source="--particle"):
    """The latents of particles given as row indices ("12") or uids ("uid:1234").

    ``latents`` is (P, K), ``uid`` (P,) uint64, both in the dataset's particle order.
    """
    points = []
    for text in selectors:
        if text.startswith("uid:"):
            value = _parse_int(text[4:], source, "uid")
            rows = np.flatnonzero(uid == np.uint64(value)) if 0 <= value < 2**64 else []
            if len(rows) == 0:
                raise InputError(source, f"no particle has uid {value}")
            points.append(LatentPoint(f"particle_uid_{value}", "particle", _row(latents, rows[0])))
        else:
            index = _parse_int(text, source, "particle index (or uid:UID)")
            if not 0 <= index < len(latents):
                raise InputError(
                    source, f"particle index {index} out of range 0..{len(latents) - 1}"
                )
            points.append(LatentPoint(f"particle_index_{index}", "particle", _row(latents, index)))
    return points


def latent_points(texts, n_components, source="--latent"):
    """Explicit latent vectors, each "z0,z1,..." with one value per component."""
    points = []
    for i, text in enumerate(texts):
        try:
            z = np.array([float(v) for v in text.split(",")])
        except ValueError:
            raise InputError(source, f"expected comma-separated numbers, got {text!r}")
        if z.shape != (n_components,) or not np.all(np.isfinite(z)):
            raise InputError(
                source, f"{text!r} has {z.size} values; the job has {n_components} components"
            )
        points.append(LatentPoint(f"latent_{i:02d}", "latent", z))
    return points


def series_points(latents, frames, percentiles=(5.0, 95.0)):
    """``frames`` points along each component, others at 0 (3DVA Display "simple" mode).

    Component k runs evenly from the lower to the upper percentile (in %) of the
    particles' z_k; the first and last frames sit exactly on those percentiles.
    """
    low, high = percentiles
    if frames < 1:
        raise InputError("--series", f"need at least 1 frame, got {frames}")
    if not 0 <= low < high <= 100:
        raise InputError("--percentiles", f"need 0 <= low < high <= 100, got {low},{high}")
    n_components = latents.shape[1]
    width = max(2, len(str(frames - 1)))
    points = []
    for k in range(n_components):
        ends = np.percentile(latents[:, k], [low, high])
        for f, value in enumerate(np.linspace(ends[0], ends[1], frames)):
            z = np.zeros(n_components)
            z[k] = value
            points.append(LatentPoint(f"series_c{k}_f{f:0{width}d}", "series", z))
    return points


def cluster_points(latents, n_clusters, seed=0):
    """k-means centres of the particles' latents (3DVA Display "cluster" mode).

    scipy's kmeans2 with k-means++ seeding and a fixed ``seed``, so that runs repeat;
    clusters are numbered from the most populated down.
    """
    if not 1 <= n_clusters <= len(latents):
        raise InputError(
            "--kmeans", f"need 1..{len(latents)} clusters (one per particle at most), got {n_clusters}"
        )
    centres, labels = kmeans2(
        np.asarray(latents, dtype=np.float64), n_clusters, minit="++", seed=seed
    )
    sizes = np.bincount(labels, minlength=n_clusters)
    order = np.argsort(-sizes, kind="stable")
    return [LatentPoint(f"cluster_{i:02d}", "cluster", centres[c]) for i, c in enumerate(order)]


def select_points(dataset, source, *, particles=(), latents=(), series=None, percentiles="5,95", kmeans=None):
    """The base map (z = 0) and all points asked for, in that order, each name once:
    ``particles`` (selectors of :func:`particle_points`), ``latents`` ("z0,z1,.." texts),
    ``series`` frames per component between ``percentiles`` ("low,high" in %) and
    ``kmeans`` cluster centres. ``source`` names the dataset in errors."""
    if (particles or series or kmeans) and len(dataset.latents) == 0:
        raise InputError(source, "has no particles (a single map): only --latent points apply")
    points = [LatentPoint("base", "base", np.zeros(dataset.n_components))]
    points += particle_points(particles, dataset.latents, dataset.uid)
    points += latent_points(latents, dataset.n_components)
    if series is not None:
        points += series_points(dataset.latents, series, parse_percentiles(percentiles))
    if kmeans is not None:
        points += cluster_points(dataset.latents, kmeans)
    return list({p.name: p for p in points}.values())  # a name is always the same point


def parse_percentiles(text, source="--percentiles"):
    """"low,high" in % -> (low, high) floats."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(source, f"expected low,high in %, e.g. 5,95, got {text!r}")
    return low, high


def moments_at(moments, points):
    """Moments Ω(z) = Ω_base + Σ_k z_k Ω_k at each point -> (len(points), ncoef).

    ``moments`` is (1 + K, ncoef): the base map's row first, then one per component.
    """
    z = np.array([p.z for p in points], dtype=np.float64).reshape(len(points), -1)
    weights = np.hstack([np.ones((len(points), 1)), z])
    return weights @ moments


def _row(latents, index):
    return np.asarray(latents[index], dtype=np.float64)


def _parse_int(text, source, what):
    try:
        return int(text)
    except ValueError:
        raise InputError(source, f"expected a {what}, got {text!r}")
