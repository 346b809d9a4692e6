"""Points in the latent space of a 3D Variability job, picked as cryoSPARC's 3DVA Display does.

A job with K components gives each particle a latent vector z = (z_0 .. z_{K-1}); the map
at z is base + Σ_k z_k component_k, so its moments are Ω(z) = Ω_base + Σ_k z_k Ω_k
(:func:`moments_at`). A point is picked by particle (row index or uid, like the original
``--z_ind``), by explicit coordinates, along each component (simple mode) or as a k-means
cluster centre (cluster mode). Each point carries a name that says what it shows, used as
the stem of the file reconstructed from it.
"""

import warnings
from dataclasses import dataclass, replace

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.dataset import map_names

#: maps reconstructed together (`zernike3d reconstruct`) hold at most this many bytes
#: (float64 work copies); the workflow's estimate sizes its batches by it too
MAPS_BUDGET = 2**30


@dataclass(frozen=True)
class LatentPoint:
    name: str  # e.g. base, particle_uid_1234, particle_index_12, latent_00, series_c0_f03, kmeans_02
    kind: str  # "base", "particle", "latent", "series" or "cluster"
    z: np.ndarray  # (K,) float64 latent coordinates


def check_job(moments, moments_source, dataset, dataset_source):
    """Raise :class:`InputError` unless ``moments`` (a Moments) are those of the 3DVA job
    in ``dataset`` (a Dataset): volumes base, component_0.. with one per latent component,
    decomposed from the dataset's own maps (the fingerprints
    :func:`zernike3d.io.dataset.maps_fingerprint` agree). Moments that record no
    fingerprint (written by an older zernike3d) get a one-line warning instead."""
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
    check_fingerprints(moments, moments_source, dataset, dataset_source)


def check_fingerprints(moments, moments_source, dataset, dataset_source):
    """Raise :class:`InputError` naming ``moments_source`` unless ``moments`` were
    decomposed from the maps of ``dataset`` (their fingerprints,
    :func:`zernike3d.io.dataset.maps_fingerprint`, agree); a one-line warning when the
    moments record none (written by an older zernike3d)."""
    if moments.maps_sha256 is None:
        warnings.warn(
            f"{moments_source} records no fingerprint of the maps it was decomposed from (an older zernike3d "
            f"wrote it), so it is not checked against {dataset_source}; decompose again to check"
        )
    elif list(moments.maps_sha256) != dataset.maps_sha256:
        differ = [name for name, ours, theirs in zip(moments.names, moments.maps_sha256, dataset.maps_sha256)
                  if ours != theirs]
        raise InputError(
            moments_source,
            f"was decomposed from other maps than those of {dataset_source} ({', '.join(differ)} differ by "
            f"fingerprint): another job, or other preprocessing; decompose {dataset_source} itself",
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


def cluster_points(latents: np.ndarray, n_clusters: int, seed: int = 0) -> list[LatentPoint]:
    """k-means centres of the particles' latents (3DVA Display "cluster" mode), fitted on
    every particle (:func:`zernike3d.analysis.clusters.kmeans`, seeded by ``seed``, so
    that runs repeat); clusters are numbered from the most populated down."""
    if not 1 <= n_clusters <= len(latents):
        raise InputError(
            "--kmeans", f"need 1..{len(latents)} clusters (one per particle at most), got {n_clusters}"
        )
    from zernike3d.analysis.clusters import kmeans

    centres, labels = kmeans(latents, n_clusters, seed=seed)
    sizes = np.bincount(labels, minlength=n_clusters)
    order = np.argsort(-sizes, kind="stable")
    return [LatentPoint(f"kmeans_{i:02d}", "cluster", centres[c]) for i, c in enumerate(order)]


def select_points(dataset, source, *, particles=(), latents=(), series=None, percentiles="5,95", kmeans=None,
                  points_csv=None):
    """The base map (z = 0) and all points asked for, in that order, each name once:
    ``particles`` (selectors of :func:`particle_points`), ``latents`` ("z0,z1,.." texts),
    ``series`` frames per component between ``percentiles`` ("low,high" in %),
    ``kmeans`` cluster centres and the points listed in ``points_csv``
    (:func:`points_from_csv`; one named like another map, ``kmeans_00`` beside
    ``kmeans``, is refused). ``source`` names the dataset in errors."""
    if (particles or series or kmeans) and len(dataset.latents) == 0:
        raise InputError(source, "has no particles (a single map): only --latent points apply")
    points = [LatentPoint("base", "base", np.zeros(dataset.n_components))]
    points += particle_points(particles, dataset.latents, dataset.uid)
    points += latent_points(latents, dataset.n_components)
    if series is not None:
        points += series_points(dataset.latents, series, parse_percentiles(percentiles))
    if kmeans is not None:
        points += cluster_points(dataset.latents, kmeans)
    points = list({p.name: p for p in points}.values())  # a name is always the same point
    if points_csv is not None:
        made = {p.name for p in points}
        for point in points_from_csv(points_csv, dataset.n_components):
            if point.name in made or point.name.startswith("mapspace_"):
                raise InputError(points_csv, f"--points: point name {point.name!r} is the name of another map "
                                             "this run writes; rename the point")
            points.append(point)
    return points


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


def maps_at_points(moments, points, reconstruct, batch, job_volumes=None):
    """Yield ``(point, MapFile)`` of the Zernike map at each of ``points``, in order.

    ``moments`` (a Moments) holds the job's volumes, base then components;
    ``reconstruct(moments)`` returns one :class:`~zernike3d.io.mrc.MapFile` per volume
    and is called on at most ``batch`` volumes at a time. The expansion is linear in its
    moments, so the map at z is base + Σ_k z_k component_k of the reconstructed volumes:
    with more points than volumes (1 + K), the job's volumes are reconstructed once and
    every point's map is that combination (float32, the same map to rounding), so the
    cost is about one reconstruction whatever the number of points; with fewer points,
    each point's moments Ω(z) are reconstructed directly. ``job_volumes``, the job's
    volumes (1 + K, N, N, N) float32 [z, y, x] on the moments' own grid already at hand
    (:func:`job_volumes_from_maps`), are combined instead: nothing is reconstructed.
    :func:`transforms_needed` says how many volumes get transformed otherwise.
    """
    from zernike3d.io.mrc import MapFile

    if job_volumes is not None:  # the stored grid: the moments' voxel size and origin
        yield from _combined(job_volumes, MapFile(None, moments.voxel_size, tuple(moments.origin)), points)
        return
    if len(points) > moments.moments.shape[0]:
        volumes = []
        for start in range(0, moments.moments.shape[0], batch):
            volumes += reconstruct(_rows(moments, slice(start, start + batch)))
        stack = np.stack([v.data for v in volumes])
        template = replace(volumes[0], data=None)  # voxel size and origin; the maps live in stack
        del volumes
        yield from _combined(stack, template, points)
        return
    at_points = replace(moments, moments=moments_at(moments.moments, points), names=[p.name for p in points])
    for start in range(0, len(points), batch):
        for point, result in zip(points[start : start + batch], reconstruct(_rows(at_points, slice(start, start + batch)))):
            yield point, result


def _combined(stack, template, points):
    """Yield ``(point, MapFile)``: base + Σ_k z_k component_k of the job's volumes
    ``stack`` (1 + K, N, N, N) float32 at each point, with ``template``'s voxel size and
    origin."""
    for point in points:
        yield point, replace(template, data=combination(stack, point.z))


def combination(stack, z):
    """base + Σ_k z_k component_k (float32) of the job's volumes ``stack`` (1 + K, N, N,
    N), base first, at the latent point ``z`` (K,)."""
    weights = np.concatenate([[1.0], z]).astype(np.float32)
    return np.tensordot(weights, stack, axes=1)


def expansion_label(moments) -> str:
    """The MRC header label of every map `zernike3d reconstruct --particles` writes from
    ``moments`` (a Moments): the order of the expansion and the job it belongs to (the
    first 16 hex digits of the base map's fingerprint), so that `zernike3d qc` can tell
    whether the maps are the expansions it would rebuild (:func:`job_volumes_from_maps`)."""
    job = moments.maps_sha256[0][:16] if moments.maps_sha256 is not None else "unknown maps"
    return f"zernike3d expansion order {moments.order} of {job}"


def independent_points(z: np.ndarray) -> list[int] | None:
    """Rows of ``z`` (P, K) whose weights w = (1, z) (the map at z is w · (base, component_0,
    ..)) are the best-conditioned 1 + K independent ones, chosen greedily (each next row
    the one farthest from the span of those chosen, in units of its own norm); None
    where the rows span fewer than 1 + K dimensions or their condition number exceeds
    10^4 (the volumes solved from them would lose more than float32 maps can spare)."""
    weights = np.column_stack([np.ones(len(z)), np.asarray(z, dtype=np.float64)])
    if len(weights) < weights.shape[1]:
        return None
    chosen: list[int] = []
    residual = weights.copy()
    for _ in range(weights.shape[1]):
        scores = np.linalg.norm(residual, axis=1) / np.linalg.norm(weights, axis=1)
        scores[chosen] = -1.0
        best = int(np.argmax(scores))
        if scores[best] < 1e-6:
            return None
        chosen.append(best)
        direction = residual[best] / np.linalg.norm(residual[best])
        residual -= np.outer(residual @ direction, direction)
    if np.linalg.cond(weights[chosen]) > 1e4:
        return None
    return chosen


def job_volumes_from_maps(moments, entries) -> tuple[np.ndarray | None, str]:
    """The expansions of the job's volumes (1 + K, N, N, N) float32 [z, y, x] (base,
    component_0, ..) solved from maps that `zernike3d reconstruct --particles` wrote from
    ``moments`` (a Moments) at the stored box, voxel size and order, so that they need
    not be rebuilt: the map at z is base + Σ_k z_k component_k, so 1 + K maps at
    independent points (:func:`independent_points`) give the volumes by one linear solve
    (float32, the same maps to rounding). ``entries``: the
    :class:`~zernike3d.io.maps_index.IndexedMap` rows of its index.csv. Returns
    ``(volumes, "")``, or ``(None, why not)`` where the maps cannot give them (no latents
    in the index, too few independent points, another order, box, voxel size or job:
    each map's header label, :func:`expansion_label`)."""
    from zernike3d.io.mrc import read_header, read_map

    usable = [e for e in entries if not e.mapspace and e.z is not None and len(e.z) == len(moments.names) - 1]
    if not usable:
        return None, "the index lists no Zernike map with its latents"
    rows = independent_points(np.array([e.z for e in usable]))
    if rows is None:
        return None, f"its {len(usable)} maps are not at {len(moments.names)} independent latent points"
    label = expansion_label(moments)
    for entry in (usable[r] for r in rows):
        header = read_header(entry.path)
        if label not in header.labels:
            return None, f"{entry.path.name} is not labelled {label!r}"
        if header.shape != (moments.box,) * 3 or not np.allclose(header.voxel_size, moments.voxel_size, rtol=1e-5):
            return None, f"{entry.path.name} is not on the moments' grid (box {moments.box} at {moments.voxel_size:g} Å)"
    weights = np.column_stack([np.ones(len(rows)), [usable[r].z for r in rows]])
    inverse = np.linalg.inv(weights).astype(np.float32)
    maps = np.empty((len(rows), *(moments.box,) * 3), dtype=np.float32)
    for i, r in enumerate(rows):  # one map at a time into the stack: no second copy of them all
        maps[i] = read_map(usable[r].path).data
    return np.tensordot(inverse, maps, axes=1), ""


def transforms_needed(moments, points):
    """How many volumes :func:`maps_at_points` reconstructs: min(points, 1 + K)."""
    return min(len(points), moments.moments.shape[0])


def mapspace_maps(dataset, points):
    """Yield ``(point, data)``: the dataset's own maps combined, base + Σ_k z_k component_k
    (float32 [z, y, x], the dataset's voxel size and origin), as 3DVA Display's simple mode
    does: full resolution, not Zernike-filtered."""
    for point in points:
        yield point, combination(dataset.maps, point.z)


def points_from_csv(path, n_components, source="--points"):
    """Latent points listed in a CSV with columns ``name``, ``kind`` and ``z_0`` ..
    ``z_{K-1}`` (other columns ignored, but not a ``z_K`` or beyond: points of a job with
    more components), e.g. the ``centres.csv`` of `zernike3d cluster` or the ``path.csv``
    of `zernike3d path`. Names are file stems: letters, digits, ``_-.``, each given once."""
    import csv
    import re

    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise InputError(path, f"cannot read the points file ({err.strerror or err})") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"{source}: not a CSV text file ({str(err).splitlines()[0][:80]})") from None
    columns = ["name", "kind", *(f"z_{k}" for k in range(n_components))]
    if not rows or any(c not in rows[0] for c in columns):
        raise InputError(path, f"{source}: expected a CSV with columns {', '.join(columns)} and one row per point")
    extra = [c for c in rows[0] if re.fullmatch(r"z_\d+", c or "") and int(c[2:]) >= n_components]
    if extra:
        raise InputError(path, f"{source}: has column {extra[0]}, but the job has {n_components} components "
                               f"(z_0..z_{n_components - 1}): are these points of another job?")
    points, seen = [], set()
    for row in rows:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", row["name"] or "") or row["name"] in ("index", "base"):
            raise InputError(path, f"{source}: point name {row['name']!r} is not usable as a file name")
        if row["name"] in seen:
            raise InputError(path, f"{source}: point name {row['name']!r} is given twice; name each point once")
        seen.add(row["name"])
        try:
            z = np.array([float(row[f"z_{k}"]) for k in range(n_components)])
        except (TypeError, ValueError):
            raise InputError(path, f"{source}: point {row['name']!r} has a non-numeric latent") from None
        if not np.all(np.isfinite(z)):
            raise InputError(path, f"{source}: point {row['name']!r} has a NaN or infinite latent")
        points.append(LatentPoint(row["name"], row["kind"] or "latent", z))
    return points


def _rows(moments, rows):
    return replace(moments, moments=moments.moments[rows], names=list(moments.names)[rows])


def _row(latents, index):
    return np.asarray(latents[index], dtype=np.float64)


def _parse_int(text, source, what):
    try:
        return int(text)
    except ValueError:
        raise InputError(source, f"expected a {what}, got {text!r}")
