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
``provenance``      str, ()                    JSON list of steps, oldest first; each step
                                               is {"stage", "parameters", "inputs"} (plus
                                               "operation" for preprocess steps), "inputs"
                                               a list of {"path", "sha256"} of the files read
==================  =========================  ==============================================

A density sample ``maps[i, z, y, x]`` sits at viewer position
``origin + (x, y, z) * voxel_size``; a particle's map is ``maps[0] + sum_k latents[p, k]
* maps[1 + k]``.
"""

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, npz_kind

FORMAT = "zernike3d-dataset"
FORMAT_VERSION = 1
#: what save may replace: an earlier dataset bundle
OUTPUT = npz_kind(FORMAT, f"a zernike3d dataset bundle (format {FORMAT!r})")
KEYS = ("format", "format_version", "maps", "names", "latents", "uid", "voxel_size",
        "origin", "provenance")


def map_names(n_components):
    """``["base", "component_0", ..., "component_{K-1}"]``."""
    return ["base"] + [f"component_{k}" for k in range(n_components)]


def sha256_of(path):
    """Hex SHA-256 of a file's bytes, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_record(path):
    """``{"path": absolute path, "sha256": checksum}`` of one input file, for provenance."""
    return {"path": str(Path(path).resolve()), "sha256": sha256_of(path)}


def provenance_step(stage, parameters, inputs, operation=None):
    """One provenance entry: ``inputs`` are :func:`input_record` dicts of the files read."""
    step = {"stage": stage}
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
    def single_map(cls, data, voxel_size, origin, provenance):
        """A dataset of one map (no components, no particles)."""
        return cls(data[None], np.zeros((0, 0)), np.zeros(0), voxel_size, origin, provenance)

    @property
    def n_components(self):
        return self.maps.shape[0] - 1

    @property
    def box(self):
        """Edge of the cubic box in voxels."""
        return self.maps.shape[-1]

    @property
    def names(self):
        return map_names(self.n_components)

    def with_step(self, step, **changes):
        """A copy with field ``changes`` applied and ``step`` (:func:`provenance_step`) appended."""
        return dataclasses.replace(self, provenance=self.provenance + [step], **changes)

    def check(self, source):
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

    def save(self, path):
        """Write the bundle atomically (see the module docstring for the format)."""
        self.check(path)
        arrays = {
            "format": np.array(FORMAT),
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "maps": self.maps,
            "names": np.array(self.names),
            "latents": self.latents,
            "uid": self.uid,
            "voxel_size": np.array(self.voxel_size, dtype=np.float64),
            "origin": np.array(self.origin, dtype=np.float64),
            "provenance": np.array(json.dumps(self.provenance, indent=1)),
        }
        with atomic_path(path, OUTPUT) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path):
        """Read and validate a bundle; :class:`InputError` naming ``path`` if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "dataset file not found")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise InputError(path, f"not a zernike3d dataset (.npz) file: {err}") from None
        if str(arrays.get("format", "")) != FORMAT:
            raise InputError(path, f"not a zernike3d dataset: no format={FORMAT!r} entry "
                             "(write one with `zernike3d import`)")
        version = int(arrays.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise InputError(path, f"dataset format_version {version}; this version of "
                             f"zernike3d reads version {FORMAT_VERSION}")
        missing = [key for key in KEYS if key not in arrays]
        if missing:
            raise InputError(path, f"dataset lacks {', '.join(missing)}")
        try:
            provenance = json.loads(str(arrays["provenance"]))
        except json.JSONDecodeError as err:
            raise InputError(path, f"provenance is not valid JSON: {err}") from None
        dataset = cls(arrays["maps"], arrays["latents"], arrays["uid"], arrays["voxel_size"],
                      arrays["origin"], provenance)
        dataset.check(path)
        if list(arrays["names"]) != dataset.names:
            raise InputError(path, f"names {list(arrays['names'])} do not match "
                             f"{dataset.names}")
        return dataset
