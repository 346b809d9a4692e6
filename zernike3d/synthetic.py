"""Synthetic maps for examples, tests and benchmarks (no external data needed).

All maps are float32 arrays indexed ``data[z, y, x]`` (MRC order), with positions in Å
measured from the centre of voxel [0, 0, 0].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path


def gaussian_blobs(box: int, voxel_size: float, centers: Iterable[Iterable[float]], sigmas: Iterable[float],
                   amplitudes: Iterable[float]) -> np.ndarray:
    """Sum of isotropic Gaussians; ``centers`` are (x, y, z) in Å, ``sigmas`` in Å."""
    axis = np.arange(box) * voxel_size
    z, y, x = axis[:, None, None], axis[None, :, None], axis[None, None, :]
    out = np.zeros((box, box, box), dtype=np.float64)
    for (cx, cy, cz), sigma, amp in zip(centers, sigmas, amplitudes):
        out += amp * np.exp(
            -((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2.0 * sigma**2)
        )
    return out.astype(np.float32)


def chiral_phantom(box: int = 48, voxel_size: float = 1.0, turns: float = 1.25, n_blobs: int = 9) -> np.ndarray:
    """A right-handed helix of Gaussian blobs of growing size, about the box centre.

    The helix runs counter-clockwise (x towards y) as z increases, so the object is
    chiral: its mirror image (any one axis flipped) is a different map. It fills about
    70% of the inscribed ball's radius, centred on voxel index box//2.
    """
    return gaussian_blobs(box, voxel_size, *_helix_blobs(box, voxel_size, turns, n_blobs))


def _helix_blobs(box, voxel_size, turns=1.25, n_blobs=9):
    """(centres (n, 3) Å, sigmas (n,) Å, amplitudes (n,)) of :func:`chiral_phantom`."""
    centre = (box // 2) * voxel_size
    half = box * voxel_size / 2.0
    t = np.linspace(0.0, 2.0 * np.pi * turns, n_blobs)
    ring = 0.45 * half
    height = 0.55 * half
    centers = np.stack(
        [centre + ring * np.cos(t), centre + ring * np.sin(t), centre + height * (t / t[-1] - 0.5) * 2],
        axis=1,
    )
    sigmas = np.linspace(0.06, 0.11, n_blobs) * half
    amplitudes = np.linspace(1.0, 1.6, n_blobs)
    return centers, sigmas, amplitudes


def two_state_job(box: int, voxel_size: float, open_share: float, particles: int, seed: int = 0,
                  rotation: np.ndarray | None = None, shift: Sequence[float] = (0.0, 0.0, 0.0),
                  symmetry: int = 1, jitter: float = 0.2, growth_sd: float = 0.6,
                  swing_deg: float = 60.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic 3D Variability job of a molecule in two states, as 3DVA would give it.

    The molecule: the chiral helix of :func:`chiral_phantom` (or, with ``symmetry`` n > 1,
    two rings of n blobs, C_n about z), a lid of three blobs on an arm that swings by ``swing_deg``
    (about z) between a closed and an open place, and a blob that grows or shrinks continuously.
    With ``symmetry`` n > 1 the job's base is the C_n body exactly (the lid and the growth
    are added about it with zero mean over the particles): a symmetric base whose
    components break the symmetry. A share ``open_share`` of the
    ``particles`` is open; each particle's map is closed + o (open - closed) + g growth,
    o = 0 or 1 plus Gaussian ``jitter``, g Gaussian with sd ``growth_sd``. Like 3DVA, the
    job's base is the mean particle map (so it depends on the populations) and its
    components are the principal directions of the particles' maps (unit L2 norm over
    the box, strongest first, sign fixed so that the largest voxel is positive), with
    latents the coordinates along them: two jobs with other populations have other
    bases, other components and other latents for the same states.

    The job's frame: every blob is placed at R (p - c) + c + shift, c the centre of
    voxel box // 2, R = ``rotation`` (3x3, default identity), ``shift`` (x, y, z) Å; the
    maps are analytic Gaussians, so the turn is exact. Returns (maps (3, N, N, N)
    float32 [z, y, x], latents (P, 2) float64, is_open (P,) bool).
    """
    rng = np.random.default_rng(seed)
    centre = np.full(3, (box // 2) * voxel_size)
    half = box * voxel_size / 2.0
    rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)

    def place(points: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(points) - centre) @ rotation.T + centre + np.asarray(shift, dtype=np.float64)

    if symmetry > 1:
        angles = 2 * np.pi * np.arange(symmetry) / symmetry
        ring = np.stack([np.cos(angles), np.sin(angles), np.zeros(symmetry)], axis=1) * 0.42 * half
        core = np.concatenate([centre + ring, centre + 0.6 * ring + [0, 0, 0.3 * half]])
        body_blobs = (core, np.full(len(core), 0.12 * half), np.ones(len(core)))
    else:
        body_blobs = _helix_blobs(box, voxel_size)
    # the lid: three blobs on an arm from a hinge, swung about the hinge's z axis
    lid_sigma, grow_sigma = 0.09 * half, 0.11 * half
    hinge = centre + np.array([0.1, -0.3, -0.45]) * half
    arm = np.outer([1.0, 2.0, 3.0], [0.17, 0.0, 0.03]) * half
    cos, sin = np.cos(np.radians(swing_deg)), np.sin(np.radians(swing_deg))
    swing = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    closed_at, open_at = hinge + arm, hinge + arm @ swing.T
    grow_at = centre + np.array([-0.4, -0.35, 0.35]) * half

    def blobs(at: np.ndarray, sigma: float) -> np.ndarray:
        at = np.atleast_2d(at)
        return gaussian_blobs(box, voxel_size, place(at), [sigma] * len(at), [1.0] * len(at)).astype(np.float64)

    body = gaussian_blobs(box, voxel_size, place(body_blobs[0]), body_blobs[1], body_blobs[2]).astype(np.float64)
    closed = body + blobs(closed_at, lid_sigma)
    opening = blobs(open_at, lid_sigma) - blobs(closed_at, lid_sigma)
    growth = blobs(grow_at, 1.1 * grow_sigma) - blobs(grow_at, grow_sigma)
    is_open = rng.random(particles) < open_share
    factors = np.column_stack([is_open + rng.normal(0, jitter, particles), rng.normal(0, growth_sd, particles)])
    directions = np.stack([opening.ravel(), growth.ravel()], axis=1)  # (voxels, 2)
    mean = factors.mean(axis=0)
    if symmetry > 1:  # the base is the C_n body alone: the lid and growth average out about it
        closed = body - mean[0] * opening - mean[1] * growth
    base = closed + mean[0] * opening + mean[1] * growth
    # principal directions of the particles' maps: eigenvectors of M S M^T, M the two
    # directions, S the factors' covariance (a 2 x 2 problem)
    covariance = np.cov(factors, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    root = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    gram = root @ directions.T @ directions @ root
    strengths, mixing = np.linalg.eigh(gram)
    mixing = mixing[:, ::-1]
    components = directions @ root @ mixing / np.sqrt(strengths[::-1])  # orthonormal columns
    components *= np.sign(components[np.argmax(np.abs(components), axis=0), [0, 1]])
    latents = (factors - mean) @ (components.T @ directions).T
    maps = np.stack([base.reshape((box,) * 3)] + [c.reshape((box,) * 3) for c in components.T])
    return maps.astype(np.float32), latents, is_open


#: particles of a synthetic job made without a particles .cs to copy (the workflow's
#: example without ``particles_cs``)
SYNTHETIC_PARTICLE_COUNT = 2000


def synthetic_particles(
    count: int = SYNTHETIC_PARTICLE_COUNT, voxel_size: float = 2.0, box: int = 32, seed: int = 0
) -> np.ndarray:
    """A minimal cryoSPARC particles table (NumPy structured array, as in a ``.cs`` file):
    ``uid`` (uint64, random), ``blob/psize_A`` (float32, Å) and ``blob/shape`` (uint32 x2)."""
    rng = np.random.default_rng(seed)
    table = np.zeros(count, dtype=[("uid", "<u8"), ("blob/psize_A", "<f4"), ("blob/shape", "<u4", (2,))])
    table["uid"] = rng.integers(2**62, 2**64 - 1, size=count, dtype=np.uint64)
    table["blob/psize_A"] = voxel_size
    table["blob/shape"] = box
    return table


def write_3dva_job(directory: str | Path, box: int = 32, voxel_size: float | None = None, n_components: int = 3, *,
                   particles_cs: str | Path | None = None, seed: int = 0, open_share: float | None = None,
                   rotation: np.ndarray | None = None,
                   shift: Sequence[float] = (0.0, 0.0, 0.0)) -> tuple[Path, list[Path], Path]:
    """Write a small, deterministic synthetic cryoSPARC 3D Variability job into ``directory``.

    Files: ``J1_map.mrc`` (the chiral phantom), ``J1_component_{k}.mrc`` (smooth difference
    maps: a Gaussian blob moved by a quarter of its width for even k, grown by 10% for odd
    k) and ``J1_particles.cs`` (NumPy .cs format): the particles table ``particles_cs``
    (either .cs format), or :func:`synthetic_particles` when None, with every field kept as
    it is and
    ``components_mode_{k}/component`` (uint32, = k) and ``components_mode_{k}/value``
    (float32, Gaussian latents with standard deviation 1 / (k + 1)) added.

    With ``open_share`` (0..1) the job is instead :func:`two_state_job`'s molecule with that
    share of its particles open (2 components; ``n_components`` must be 2), placed by
    ``rotation`` (3x3) and ``shift`` (x, y, z) Å about voxel box // 2.

    ``voxel_size`` in Å defaults to the particles' ``blob/psize_A`` (2 Å for synthetic
    particles), so that the maps and particles agree as in a real job. Returns
    ``(map_path, component_paths, particles_path)``.
    """
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if particles_cs is None:
        particles = synthetic_particles(voxel_size=voxel_size or 2.0, box=box, seed=seed)
    else:
        particles = _particle_records(particles_cs)
    if voxel_size is None:
        voxel_size = float(particles["blob/psize_A"][0])
    if open_share is not None:
        if n_components != 2:
            raise ValueError(f"a two-state job has 2 components, not {n_components}")
        maps, latents, _ = two_state_job(box, voxel_size, open_share, len(particles), seed=seed, rotation=rotation,
                                         shift=shift)
        return _write_job_files(directory, maps, latents, particles, voxel_size)
    base = chiral_phantom(box, voxel_size)
    rng = np.random.default_rng(seed)
    half = box * voxel_size / 2.0
    components = []
    for k in range(n_components):
        centre = (box // 2) * voxel_size + rng.uniform(-0.3, 0.3, size=3) * half
        sigma = 0.12 * half
        if k % 2 == 0:  # a blob moving by a quarter of its width
            direction = rng.normal(size=3)
            moved = centre + 0.25 * sigma * direction / np.linalg.norm(direction)
            component = gaussian_blobs(box, voxel_size, [moved, centre], [sigma] * 2, [1.0, -1.0])
        else:  # a blob growing by 10%
            component = gaussian_blobs(box, voxel_size, [centre] * 2, [1.1 * sigma, sigma], [1.0, -1.0])
        components.append(component)
    latents = rng.normal(size=(len(particles), n_components)) / np.arange(1, n_components + 1)
    return _write_job_files(directory, np.stack([base, *components]), latents, particles, voxel_size)


def _write_job_files(directory, maps, latents, particles, voxel_size):
    """J1_map.mrc, J1_component_{k}.mrc and J1_particles.cs of a job: maps (1+K, N, N, N),
    latents (P, K) added to the ``particles`` table. Returns (map, components, particles) paths."""
    from zernike3d.io.mrc import write_map

    n_components = len(maps) - 1
    map_path = directory / "J1_map.mrc"
    write_map(map_path, maps[0], voxel_size, output=False)  # inputs: unlabelled
    component_paths = []
    for k in range(n_components):
        path = directory / f"J1_component_{k}.mrc"
        write_map(path, maps[1 + k], voxel_size, output=False)
        component_paths.append(path)
    extra = []
    for k in range(n_components):
        extra += [(f"components_mode_{k}/component", "<u4"), (f"components_mode_{k}/value", "<f4")]
    table = np.zeros(len(particles), dtype=particles.dtype.descr + extra)
    for name in particles.dtype.names:
        table[name] = particles[name]
    for k in range(n_components):
        table[f"components_mode_{k}/component"] = k
        table[f"components_mode_{k}/value"] = latents[:, k]
    particles_path = directory / "J1_particles.cs"
    with open(particles_path, "wb") as f:
        np.save(f, table)
    return map_path, component_paths, particles_path


def _particle_records(path):
    """The rows of the cryoSPARC particles table ``path`` (either .cs format) as a NumPy
    structured array, strings as fixed-length bytes as the NumPy format stores them;
    :class:`~zernike3d.errors.InputError` naming ``path`` unless it is a readable table
    with uids and ``blob/psize_A`` (the job's maps take their voxel size from it)."""
    from zernike3d.errors import InputError
    from zernike3d.io.cryosparc import checked_header, load_table

    if "blob/psize_A" not in [field[0] for field in checked_header(path)["dtype"]]:
        raise InputError(path, "particles table has no blob/psize_A field: the job's maps take the particles' pixel size")
    return load_table(path).to_records(fixed=True)


def protein_like(box: int, voxel_size: float, seed: int, blur: float = 0.8, step: float = 1.5, fill: float = 0.75,
                 atoms_per_A3: float = 0.045) -> np.ndarray:
    """A globular "protein" (box, box, box) [z, y, x] float64: a random chain of atoms
    ``step`` Å apart confined to a ball of ``fill`` × the inscribed radius about voxel
    box // 2, ``atoms_per_A3`` atoms per Å³ of that ball (about a protein's heavy-atom
    density), each a Gaussian of ``blur`` Å (atomic size and B-factor together). Atoms are
    spread to the grid trilinearly and the Gaussian is applied in Fourier space, so the
    map has detail up to Nyquist, decaying as in a real map."""
    rng = np.random.default_rng(seed)
    centre = (box // 2) * voxel_size
    limit = fill * box * voxel_size / 2
    count = int(atoms_per_A3 * 4 / 3 * np.pi * limit**3)
    atoms = np.empty((count, 3))
    position = np.zeros(3)
    for i in range(count):
        while True:
            direction = rng.standard_normal(3)
            trial = position + step * direction / np.linalg.norm(direction)
            if np.linalg.norm(trial) <= limit:
                break
        atoms[i] = position = trial
    grid = np.zeros((box,) * 3)
    index = (atoms[:, ::-1] + centre) / voxel_size  # (z, y, x) in voxels
    base = np.floor(index).astype(int)
    frac = index - base
    for corner in np.ndindex(2, 2, 2):
        weight = np.prod(np.where(corner, frac, 1 - frac), axis=1)
        np.add.at(grid, tuple((base + corner).T), weight)
    fz = np.fft.fftfreq(box, voxel_size)[:, None, None]
    fx = np.fft.rfftfreq(box, voxel_size)[None, None, :]
    transfer = np.exp(-2 * np.pi**2 * blur**2 * (fz**2 + np.swapaxes(fz, 0, 1) ** 2 + fx**2))
    return np.fft.irfftn(np.fft.rfftn(grid) * transfer, s=grid.shape, axes=(0, 1, 2))


def write_results_folder(folder: Path, maps: np.ndarray, latents: np.ndarray, uid: np.ndarray, voxel_size: float,
                         order: int) -> Path:
    """Write ``folder`` as the workflow writes ``results/<dataset>/`` for a 3DVA job:
    ``dataset.npz`` (maps (1+K, N, N, N) [z, y, x], latents (P, K), uids, voxel size in
    Å, origin 0), ``moments.npz`` (every volume to ``order``, inscribed ball centred on
    voxel N // 2) and ``particle_invariants.zarr``. Returns ``folder``."""
    from zernike3d.io.dataset import Dataset
    from zernike3d.io.particle_invariants import write_particle_invariants
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.invariants import particle_invariant_forms
    from zernike3d.moments import Moments

    folder.mkdir(parents=True)
    dataset = Dataset(maps, latents, uid, voxel_size, (0.0, 0.0, 0.0), provenance=[])
    dataset.save(folder / "dataset.npz")
    geometry = BallGeometry.for_box(dataset.box, voxel_size)
    moments = Moments.from_maps(dataset.maps, geometry, order, names=dataset.names)
    moments.save(folder / "moments.npz")
    forms = particle_invariant_forms(moments.moments, order)
    write_particle_invariants(folder / "particle_invariants.zarr", forms, dataset.latents, dataset.uid, moments.nl,
                              order=order, names=moments.names)
    return folder
