"""The dataset bundle written by ``zernike3d import`` and ``zernike3d preprocess``.

One uncompressed ``.npz`` (NumPy zip, readable without pickle) with these keys:

==================  =========================  ==============================================
key                 dtype, shape               meaning
==================  =========================  ==============================================
``format``          str, ()                    always ``"zernike3d-dataset"``
``format_version``  int64, ()                  1
``maps``            float32, (1+K, N, N, N)    the maps, each indexed [z, y, x]: row 0 the
                                               base (consensus) map, row 1+k the 3DVA
                                               component k; density units of the input maps
``names``           str, (1+K,)                ``"base"``, ``"component_0"``, ...
``latents``         float32, (P, K)            per-particle latent coordinate along each
                                               component (cryoSPARC
                                               ``components_mode_{k}/value``, unitless);
                                               shape (0, 0) for a single map (K = 0)
``uid``             uint64, (P,)               cryoSPARC particle uid, row for row with
                                               ``latents``; shape (0,) for a single map
``voxel_size``      float64, ()                Å per voxel (the same on every axis)
``origin``          float64, (3,)              (x, y, z) in Å: where the centre of voxel
                                               [0, 0, 0] lies in viewer (ChimeraX)
                                               coordinates, as the MRC header origin
``maps_sha256``     str, (1+K,)                fingerprint of each map with ``voxel_size``
                                               (:func:`maps_fingerprint`): moments decomposed
                                               from these maps carry them; checked on reading
                                               when present (bundles written before it was
                                               recorded lack it)
``provenance``      str, ()                    JSON list of steps, oldest first; each step
                                               is {"stage", "parameters", "inputs"} (plus
                                               "operation" for preprocess steps), "inputs"
                                               a list of {"path", "sha256"} of the files read
==================  =========================  ==============================================

A density sample ``maps[i, z, y, x]`` sits at viewer position
``origin + (x, y, z) * voxel_size``; a particle's map is ``maps[0] + sum_k latents[p, k]
* maps[1 + k]``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, npz_kind
from zernike3d.io.npz import expect_shape, open_npz

FORMAT = "zernike3d-dataset"
FORMAT_VERSION = 1
#: what save may replace: an earlier dataset bundle
OUTPUT = npz_kind(FORMAT, f"a zernike3d dataset bundle (format {FORMAT!r})")
#: cap on the provenance JSON (bytes of its UTF-32 NumPy string)
PROVENANCE_BYTES = 256 * 2**20
KEYS = ("format", "format_version", "maps", "names", "latents", "uid", "voxel_size",
        "origin", "provenance")


def map_names(n_components: int) -> list[str]:
    """``["base", "component_0", ..., "component_{K-1}"]``."""
    return ["base"] + [f"component_{k}" for k in range(n_components)]


def maps_fingerprint(maps: np.ndarray, voxel_size: float) -> list[str]:
    """One hex SHA-256 per map that identifies it, a list: of the bytes
    ``zernike3d-map``, NUL, the shape (N, N, N) as little-endian int64, the voxel size in
    Å as little-endian float64, then the map as little-endian float32 in C order
    (``[z, y, x]``). ``maps`` is (V, N, N, N) or one map (N, N, N).

    A dataset bundle records them of its own maps (base, component_0, ..., after any
    preprocessing) as ``maps_sha256``; a moments file records them of the maps decomposed
    (:meth:`zernike3d.moments.Moments.from_maps`), so moments of the same maps, read from
    the bundle or from the MRC files it was imported from, carry the same fingerprints.
    """
    maps = np.asarray(maps)
    maps = maps.reshape((-1,) + maps.shape[-3:])
    prefix = b"zernike3d-map\0" + np.asarray(maps.shape[1:], dtype="<i8").tobytes()
    prefix += np.asarray(float(voxel_size), dtype="<f8").tobytes()
    fingerprints = []
    for volume in maps:
        digest = hashlib.sha256(prefix)
        digest.update(np.ascontiguousarray(volume, dtype="<f4").reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # an array is a buffer
        fingerprints.append(digest.hexdigest())
    return fingerprints


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_record(path: str | Path) -> dict[str, str]:
    """``{"path": absolute path, "sha256": checksum}`` of one input file, for provenance."""
    return {"path": str(Path(path).resolve()), "sha256": sha256_of(path)}


def provenance_step(stage: str, parameters: dict[str, Any], inputs: Sequence[dict[str, str]],
                    operation: str | None = None) -> dict[str, Any]:
    """One provenance entry: ``inputs`` are :func:`input_record` dicts of the files read."""
    step: dict[str, Any] = {"stage": stage}
    if operation is not None:
        step["operation"] = operation
    step.update(parameters=parameters, inputs=list(inputs))
    return step


@dataclasses.dataclass
class Dataset:
    """A base map, its 3DVA components and the particles' latent coordinates.

    ``maps`` float32 (1+K, N, N, N) [z, y, x]; ``latents`` float32 (P, K) ((0, 0) for a
    single map); ``uid`` uint64 (P,); ``voxel_size`` in Å; ``origin`` (x, y, z) in Å;
    ``provenance`` a list of step dicts (see the module docstring).
    """

    maps: np.ndarray
    latents: np.ndarray
    uid: np.ndarray
    voxel_size: float
    origin: tuple
    provenance: list

    def __post_init__(self):
        self.maps = np.asarray(self.maps, dtype=np.float32)
        self.latents = np.asarray(self.latents, dtype=np.float32)
        self.uid = np.asarray(self.uid, dtype=np.uint64)
        self.voxel_size = float(self.voxel_size)
        self.origin = tuple(float(v) for v in self.origin)
        self.provenance = list(self.provenance)

    @classmethod
    def single_map(cls, data: np.ndarray, voxel_size: float, origin: Sequence[float], provenance: list) -> Dataset:
        """A dataset of one map (no components, no particles)."""
        return cls(data[None], np.zeros((0, 0)), np.zeros(0), voxel_size, tuple(origin), provenance)

    @property
    def n_components(self) -> int:
        return self.maps.shape[0] - 1

    @property
    def box(self) -> int:
        """Edge of the cubic box in voxels."""
        return self.maps.shape[-1]

    @property
    def names(self) -> list[str]:
        return map_names(self.n_components)

    @functools.cached_property
    def maps_sha256(self) -> list[str]:
        """:func:`maps_fingerprint` of the maps: one pass over them, on first use only (a
        bundle's maps are not changed in place; :meth:`with_step` makes a new bundle)."""
        return maps_fingerprint(self.maps, self.voxel_size)

    def with_step(self, step: dict[str, Any], **changes: Any) -> Dataset:
        """A copy with field ``changes`` applied and ``step`` (:func:`provenance_step`) appended."""
        return dataclasses.replace(self, provenance=self.provenance + [step], **changes)

    def check(self, source: str | Path) -> None:
        """Raise :class:`InputError` naming ``source`` if the fields are inconsistent."""
        maps, latents = self.maps, self.latents
        if maps.ndim != 4 or maps.shape[0] < 1 or len(set(maps.shape[1:])) != 1:
            raise InputError(source, f"maps must be (1+K, N, N, N), got shape {maps.shape}")
        k = self.n_components
        if k == 0:
            if latents.shape != (0, 0) or self.uid.shape != (0,):
                raise InputError(source, "a single map must have empty latents and uid, got "
                                 f"latents {latents.shape}, uid {self.uid.shape}")
        else:
            if latents.ndim != 2 or latents.shape[1] != k or latents.shape[0] == 0:
                raise InputError(source, f"latents must be (P, {k}) with P >= 1 for {k} "
                                 f"components, got shape {latents.shape}")
            if self.uid.shape != (latents.shape[0],):
                raise InputError(source, f"uid has shape {self.uid.shape}, expected "
                                 f"({latents.shape[0]},) to match latents")
            if not np.isfinite(latents).all():
                raise InputError(source, "latents contain NaN or infinite values")
        if not (np.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise InputError(source, f"voxel size must be a positive number of Å, "
                             f"got {self.voxel_size}")
        if len(self.origin) != 3 or not np.isfinite(self.origin).all():
            raise InputError(source, f"origin must be finite (x, y, z) in Å, got {self.origin}")
        bad = maps.size - int(np.count_nonzero(np.isfinite(maps)))
        if bad:
            raise InputError(source, f"{bad} map voxels are NaN or infinite")

    def save(self, path: str | Path) -> None:
        """Write the bundle atomically (see the module docstring for the format)."""
        self.check(path)
        arrays: dict[str, Any] = {
            "format": np.array(FORMAT),
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "maps": self.maps,
            "names": np.array(self.names),
            "latents": self.latents,
            "uid": self.uid,
            "voxel_size": np.array(self.voxel_size, dtype=np.float64),
            "origin": np.array(self.origin, dtype=np.float64),
            "provenance": np.array(json.dumps(self.provenance, indent=1)),
            "maps_sha256": np.array(self.maps_sha256),
        }
        with atomic_path(path, OUTPUT) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read and validate a bundle; :class:`InputError` naming ``path`` if it is not one."""
        path = Path(path)
        if not path.exists():
            raise InputError(path, "dataset file not found")
        with open_npz(path, "a zernike3d dataset (.npz) file") as npz:
            if "format" not in npz or npz.scalar("format", "US") != FORMAT:
                raise InputError(path, f"not a zernike3d dataset: no format={FORMAT!r} entry "
                                 "(write one with `zernike3d import`)")
            version = npz.scalar("format_version", "iu") if "format_version" in npz else -1
            if version != FORMAT_VERSION:
                raise InputError(path, f"dataset format_version {version}; this version of "
                                 f"zernike3d reads version {FORMAT_VERSION}")
            missing = [key for key in KEYS if key not in npz]
            if missing:
                raise InputError(path, f"dataset lacks {', '.join(missing)}")
            # each array's declared shape is checked against the others before it is read
            names_shape, _ = npz.header("names")
            expect_shape(path, "names", names_shape, (None,))
            n_components = names_shape[0] - 1
            latents_shape, _ = npz.header("latents")
            expect_shape(path, "latents", latents_shape, (None, n_components))
            voxel_size = npz.scalar("voxel_size", "iuf")
            origin = npz.read("origin", shape=(3,), kinds="iuf")
            names = npz.read("names", kinds="U")
            uid = npz.read("uid", shape=latents_shape[:1], kinds="iu")
            latents = npz.read("latents", kinds="f")
            maps = npz.read("maps", shape=(n_components + 1, None, None, None), kinds="f")
            provenance_text = npz.read("provenance", shape=(), kinds="U", max_bytes=PROVENANCE_BYTES).item()
            recorded = None
            if "maps_sha256" in npz:
                recorded = npz.read("maps_sha256", shape=names_shape, kinds="U", max_bytes=names_shape[0] * 4 * 64).tolist()
        try:
            provenance = json.loads(provenance_text)
        except json.JSONDecodeError as err:
            raise InputError(path, f"provenance is not valid JSON: {err}") from None
        dataset = cls(maps, latents, uid, voxel_size, origin, provenance)
        dataset.check(path)
        if list(names) != dataset.names:
            raise InputError(path, f"names {list(names)} do not match {dataset.names}")
        if recorded is not None and recorded != dataset.maps_sha256:
            raise InputError(path, "maps_sha256 does not match the maps (the bundle was edited "
                             "after it was written); import it again")
        return dataset
