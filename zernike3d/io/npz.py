"""Reading the members of an ``.npz`` archive one by one, sizes checked before loading.

``np.load(path)`` followed by ``{key: npz[key] for key in npz.files}`` inflates every
member, whatever it declares: a 2 MB archive with one deflated member of zeros takes
2 GiB. :class:`NpzMembers` instead reads only the members a reader asks for, and for each
one first reads its ``.npy`` header (shape, dtype; a few hundred bytes) and checks it:
against the shape and dtype kinds the reader expects (which the reader derives from the
members it has already read, e.g. the number of names gives the number of rows of the
moments), against an optional byte cap for small keys, and against the size the zip
directory declares for the member (the bytes it can inflate to: zipfile never reads past
it), and against the memory available. Only then is the array read. Pickled (object)
arrays are never read.

Every problem raises :class:`~zernike3d.errors.InputError` naming the file and the key.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from zernike3d.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

#: cap on the bytes of a scalar or short-string member (format, order, voxel size, ...)
SMALL_MEMBER_BYTES = 4096


class NpzMembers:
    """An open ``.npz`` archive; use as a context manager (:func:`open_npz`)."""

    def __init__(self, path: str | Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self._archive = archive
        self._infos = {
            info.filename[: -len(".npy")]: info
            for info in archive.infolist()
            if info.filename.endswith(".npy")
        }

    @property
    def keys(self) -> set[str]:
        """Names of the arrays in the archive (member names without ``.npy``)."""
        return set(self._infos)

    def __contains__(self, key):
        return key in self._infos

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """``(shape, dtype)`` of member ``key`` from its ``.npy`` header, after checking
        that the header and the zip directory agree on the member's size."""
        info = self._info(key)
        try:
            with self._archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f".npy format version {version} is not read here")
                header_bytes = f.tell()
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            raise InputError(self.path, f"{key}: damaged array header ({err})") from None
        if dtype.hasobject:
            raise InputError(self.path, f"{key}: holds Python objects ({dtype}), which are not read for safety")
        data_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if info.file_size != header_bytes + data_bytes:
            raise InputError(
                self.path,
                f"{key}: its header describes {dtype} {shape} ({data_bytes} bytes) but the archive "
                f"declares {info.file_size - header_bytes} bytes of data (damaged or not written by NumPy)",
            )
        return tuple(shape), dtype

    def read(self, key: str, *, shape: Sequence[int | None] | None = None, kinds: str | None = None,
             max_bytes: int | None = None) -> np.ndarray:
        """The array ``key``, after checking its header: ``shape`` a tuple whose ``None``
        entries match any length (or None: any shape), ``kinds`` the allowed
        ``dtype.kind`` letters (e.g. ``"iu"``), ``max_bytes`` a cap on its data size."""
        found_shape, dtype = self.header(key)
        expect_shape(self.path, key, found_shape, shape)
        if kinds is not None and dtype.kind not in kinds:
            raise InputError(self.path, f"{key}: has dtype {dtype}, expected {_kind_names(kinds)}")
        nbytes = int(np.prod(found_shape, dtype=object)) * dtype.itemsize
        if max_bytes is not None and nbytes > max_bytes:
            raise InputError(self.path, f"{key}: {nbytes} bytes where at most {max_bytes} are expected")
        free = available_memory()
        if nbytes > free:
            raise InputError(self.path, f"{key}: needs {_size(nbytes)} of memory to read, {_size(free)} "
                             "are available; use a machine with more memory")
        try:
            with self._archive.open(self._info(key)) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            raise InputError(self.path, f"{key}: damaged array data ({err})") from None

    def scalar(self, key: str, kinds: str) -> Any:
        """A 0-d member of a dtype kind in ``kinds`` as a Python value (int, float, str)."""
        return self.read(key, shape=(), kinds=kinds, max_bytes=SMALL_MEMBER_BYTES).item()

    def _info(self, key):
        try:
            return self._infos[key]
        except KeyError:
            raise InputError(self.path, f"lacks the array {key!r}") from None


class open_npz:
    """``with open_npz(path) as members:`` an :class:`NpzMembers`; InputError naming
    ``path`` if it is missing or not a complete zip archive (empty, truncated)."""

    def __init__(self, path: str | Path, what: str = "an .npz archive") -> None:
        self.path, self.what = path, what

    def __enter__(self):
        try:
            self._archive = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise InputError(self.path, "file not found") from None
        except IsADirectoryError:
            raise InputError(self.path, f"is a directory, not {self.what}") from None
        except zipfile.BadZipFile:
            raise InputError(self.path, f"not {self.what} ({self._what_it_is()})") from None
        except OSError as err:
            raise InputError(self.path, f"cannot read the file ({err.strerror or err})") from None
        return NpzMembers(self.path, self._archive)

    def _what_it_is(self):
        with open(self.path, "rb") as f:
            start = f.read(6)
        if not start:
            return "the file is empty: an interrupted copy?"
        if start == b"\x93NUMPY":
            return "a single .npy array, not an .npz archive"
        if start.startswith(b"PK"):
            return "a truncated or damaged .npz archive: an interrupted copy?"
        return "not a NumPy .npz archive"

    def __exit__(self, *exc):
        self._archive.close()
        return False


def available_memory() -> int:
    """Bytes of memory available to this process now (psutil)."""
    import psutil

    return psutil.virtual_memory().available


def expect_shape(path: str | Path, key: str, found: Sequence[int], expected: Sequence[int | None] | None) -> None:
    """InputError unless ``found`` matches ``expected`` (None entries match anything)."""
    if expected is None:
        return
    if len(found) != len(expected) or any(e is not None and e != f for f, e in zip(found, expected)):
        text = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
        raise InputError(path, f"{key}: has shape {tuple(found)}, expected {text}")


def _size(nbytes):
    return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.3g} MiB"


def _kind_names(kinds):
    names = {"i": "integer", "u": "unsigned integer", "f": "float", "c": "complex", "U": "string",
             "S": "bytes", "b": "boolean", "V": "structured"}
    return " or ".join(names.get(k, k) for k in kinds)
