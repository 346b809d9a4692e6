"""Paths between two states of a 3D Variability job that stay where the particles are.

The straight line between two states in latent space may cross empty space: states no
particle shows. Instead the path follows the particles: the shortest path between the two
end particles on the k-nearest-neighbour graph of the particles' latents (edge weight the
Euclidean distance between neighbours; with ``density=True`` each edge is also scaled by
the local spacing, r_i r_j / median(r)^2 with r_i the distance from particle i to its
k-th neighbour, so that the path prefers dense regions over short cuts through sparse
ones). The particles along it are then resampled to evenly spaced frames by arc length;
a frame between two consecutive particles lies on the segment joining neighbours.

Latents are unitless (cryoSPARC ``components_mode_{k}/value``); rows index the particles
in the dataset's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from zernike3d.errors import InputError

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

#: paths are searched among at most this many particles (a fixed random sample, plus the
#: two ends): the graph of a million particles is no better and much slower
MAX_PARTICLES = 200_000
#: most neighbours per particle in the graph: far more than a path needs (10 is the
#: default), and the graph's size and the search grow with them
MAX_NEIGHBOURS = 100
#: most frames along one path: each becomes a map of `reconstruct --points`
MAX_FRAMES = 1000


def check_counts(frames: int, neighbours: int, particles: int, names: tuple[str, str] = ("--frames", "--neighbours")) -> None:
    """Refuse, naming the option (``names``: how the caller calls frames and
    neighbours), frames outside 2..MAX_FRAMES and neighbours outside 1..MAX_NEIGHBOURS
    or not fewer than the ``particles``."""
    if not 2 <= frames <= MAX_FRAMES:
        raise InputError(names[0], f"need 2..{MAX_FRAMES} frames along a path (each becomes a map), got {frames}")
    most = min(MAX_NEIGHBOURS, particles - 1)
    if not 1 <= neighbours <= most:
        raise InputError(names[1], f"need 1..{most} neighbours (fewer than the {particles} particles, and at most "
                                   f"{MAX_NEIGHBOURS}), got {neighbours}")


def knn_graph(latents: np.ndarray, neighbours: int, density: bool = False) -> csr_matrix:
    """The symmetric k-nearest-neighbour graph (scipy CSR, P x P) of ``latents`` (P, K)."""
    from scipy.sparse import csr_matrix
    from scipy.spatial import cKDTree

    latents = np.asarray(latents, dtype=np.float64)
    count = len(latents)
    k = min(neighbours, count - 1)
    if k < 1:
        raise InputError("--neighbours", f"need at least 2 particles and 1 neighbour, got {count} particles")
    distances, index = cKDTree(latents).query(latents, k=k + 1)
    distances, index = distances[:, 1:], index[:, 1:]  # drop each particle itself
    weights = distances.copy()
    if density:
        spacing = np.maximum(distances[:, -1], np.finfo(float).tiny)
        spacing = spacing / np.median(spacing)
        weights *= spacing[:, None] * spacing[index]
    # zero-length edges (duplicate latents) would vanish from a sparse matrix: keep them tiny
    weights = np.maximum(weights, np.finfo(float).tiny)
    rows = np.repeat(np.arange(count), k)
    graph = csr_matrix((weights.ravel(), (rows, index.ravel())), shape=(count, count))
    return graph.maximum(graph.T)


def particle_path(latents: np.ndarray, start: int, end: int, neighbours: int = 10, density: bool = False,
                  max_particles: int = MAX_PARTICLES, seed: int = 0) -> np.ndarray:
    """Rows of the particles along the shortest graph path from row ``start`` to row
    ``end`` (both included, in order) -> int64 (m,). :class:`InputError` if the graph does
    not connect them (raise ``neighbours``)."""
    from scipy.sparse.csgraph import dijkstra

    latents = np.asarray(latents, dtype=np.float64)
    rows = np.arange(len(latents))
    if len(latents) > max_particles:
        sample = np.random.default_rng(seed).choice(len(latents), max_particles, replace=False)
        rows = np.union1d(sample, [start, end])
    local = {int(r): i for i, r in enumerate(rows)}
    graph = knn_graph(latents[rows], neighbours, density)
    distance, predecessors = dijkstra(graph, directed=False, indices=local[int(start)], return_predecessors=True)
    target = local[int(end)]
    if not np.isfinite(distance[target]):
        raise InputError("--neighbours", f"the {neighbours}-nearest-neighbour graph of the particles does not connect "
                         "the two states; raise --neighbours")
    path = [target]
    while path[-1] != local[int(start)]:
        path.append(predecessors[path[-1]])
    return rows[np.array(path[::-1], dtype=np.int64)]


def resample(track: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` points evenly spaced by arc length along the polyline ``track`` (m, K),
    the first and last exactly at its ends -> (frames, K)."""
    track = np.asarray(track, dtype=np.float64)
    if frames < 2:
        raise InputError("--frames", f"need at least 2 frames along a path, got {frames}")
    if len(track) == 1:
        return np.repeat(track, frames, axis=0)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(track, axis=0), axis=1))])
    if arc[-1] == 0:
        return np.repeat(track[:1], frames, axis=0)
    wanted = np.linspace(0.0, arc[-1], frames)
    return np.stack([np.interp(wanted, arc, track[:, k]) for k in range(track.shape[1])], axis=1)
