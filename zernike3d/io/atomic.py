"""Write outputs under a temporary name, rename them when complete, and never replace
anything that is not an earlier output of the same kind.

Rules every stage follows through :func:`atomic_path` / :func:`atomic_paths`:

* **Only our own earlier output is replaced.** Each writer says what it writes (an
  :class:`OutputKind`); whatever already sits at the output path must be recognised as
  that kind, written by zernike3d, or the write is refused with
  :class:`~zernike3d.errors.InputError` naming the path (one line, exit 2), before any
  work is done and again just before the rename. Recognition reads a few bytes: the
  ``format`` entry of our ``.npz`` files, a ``zernike3d`` label in an MRC header, the
  attributes in a zarr store's ``zarr.json``, the header row of a CSV, the keys of a JSON
  record, the ``Software`` text of a PNG, and for a folder written as a whole (``--out-dir``,
  ``--job-dir``) the marker file ``.zernike3d-output``: its first line names the stage
  that wrote the folder, the others the files it wrote (paths relative to the folder),
  each followed by a tab and the file's SHA-256. A zarr store names its stage in its
  root attributes instead (``zernike3d_output``: ``{"stage": ...}``; zarr would warn
  about a file of ours among its members), and every file in it must be zarr's own (its
  chunks are checked by their CRC32C when read). A folder that holds any other file (a
  session or notes saved there since), or a listed file that was changed since (a
  subset ``.cs`` or a table edited by hand), is not replaced: the refusal names that
  file. Nothing at the path, or an empty folder, may always be replaced. No output goes
  into such a folder or store, nor anywhere below it: its files belong to it.
* **A folder is one run's output.** An earlier output folder of ours that lacks some of
  the files its marker lists (Snakemake deletes a job's declared outputs before running
  it, so the rest would stay beside whatever the next run writes or fails to write) is
  removed as soon as a stage has checked its options and outputs
  (:func:`discard_incomplete`): after a refusal or a kill, no stale half remains.
* **All or none.** Each output is written to a temporary sibling
  ``.<stem>.tmp-<host>-<pid><suffix>`` (the suffix is kept, so libraries that pick a
  format by suffix still do the right thing). Only when every output of the call is
  complete is each earlier output moved aside (``.<stem>.old-<host>-<pid><suffix>``) and
  the new one renamed into place; if a rename fails, the ones already done are undone
  and the earlier outputs restored. A single file replaces its predecessor with one
  atomic ``os.replace``. On any error the temporaries are removed.
* **Leftovers of killed runs are removed by the next write of the same output**:
  temporaries of that output whose process is gone (same host, pid no longer alive), or,
  from another host, untouched for :data:`STALE_SECONDS`. Temporaries of jobs still
  running are left alone, so concurrent jobs never break each other.

A full disk or a read-only folder while writing raises ``OSError`` naming the final
output path (not the hidden temporary); :mod:`zernike3d.cli` prints it as one line.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zernike3d.errors import InputError

#: the file inside a folder written as a whole that names the stage which wrote it
MARKER = ".zernike3d-output"
#: the root attribute of a zarr store that names the stage which wrote it
STORE_ATTRIBUTE = "zernike3d_output"
#: files others put into our folders that are not anyone's data: Snakemake's stamp of a
#: directory() output
_BOOKKEEPING = {MARKER, ".snakemake_timestamp"}
#: a temporary from another host counts as abandoned after this long untouched (s)
STALE_SECONDS = 24 * 3600
#: recognition reads at most this many bytes of a small entry (format string, CSV header)
_SMALL = 64 * 1024
#: ... and of a JSON record (basis.json, a zarr store's root zarr.json)
_JSON_LIMIT = 2**20


@dataclass(frozen=True)
class OutputKind:
    """What a writer writes, and how to recognise an earlier output of that kind.

    ``description`` completes "is not ..." in the refusal message; ``recognise(path)``
    returns True for an earlier output of this kind (it never raises); ``marker`` (folders
    only) is written into the folder as :data:`MARKER`, with each file's SHA-256, or
    into a store's root attributes (``store``).
    """

    description: str
    recognise: Callable[[Path], bool]
    marker: str | None = None
    #: a store's files that are not zarr's own (set by :func:`zarr_kind`; a folder's are
    #: those its :data:`MARKER` does not list, :func:`foreign_files`)
    foreign: Callable[[Path], list] | None = None
    #: a zarr store: the stage is named in its root attributes, not in a marker file
    store: bool = False


def npz_kind(format_name: str, description: str) -> OutputKind:
    """An ``.npz`` whose ``format`` entry is ``format_name``."""
    return OutputKind(description, lambda path: _npz_format(path) == format_name)


def zarr_kind(description: str, attributes_match: Callable[[dict], bool], arrays: Sequence[str],
              stage: str) -> OutputKind:
    """A zarr (v3) store written by ``stage``: every file in it is zarr's own
    (``zarr.json`` or a chunk of one of our member names ``arrays``), and its root
    attributes name ``stage`` (:data:`STORE_ATTRIBUTE`), or, for a store written before
    they did, satisfy ``attributes_match(dict)``; or its root ``zarr.json`` is missing
    (Snakemake deletes a declared ``store/zarr.json`` output before re-running its job)."""

    def recognise(path: Path) -> bool:
        if _zarr_foreign(path, arrays):
            return False
        try:
            attributes = _small_json(path / "zarr.json").get("attributes")
        except (OSError, ValueError):
            attributes = None
        if isinstance(attributes, dict):
            if isinstance(attributes.get(STORE_ATTRIBUTE), dict):
                return attributes[STORE_ATTRIBUTE].get("stage") == stage
            return bool(attributes_match(attributes))
        return bool({entry.name for entry in path.iterdir()} & set(arrays))

    return OutputKind(description, recognise, marker=stage, foreign=lambda path: _zarr_foreign(path, arrays),
                      store=True)


def _zarr_foreign(path, arrays):
    """The files under ``path`` (relative paths, sorted) that are not a zarr store's own:
    ``zarr.json`` at the root or in a member of ``arrays``, or a chunk
    (``<member>/c/...``)."""
    foreign = []
    for file in Path(path).rglob("*"):
        if file.is_dir():
            continue
        parts = file.relative_to(path).parts
        if parts == ("zarr.json",):
            continue
        if not (parts[0] in arrays and (parts[-1] == "zarr.json" or "c" in parts[1:-1])):
            foreign.append(file.relative_to(path).as_posix())
    return sorted(foreign)


def json_kind(keys: Sequence[str], description: str) -> OutputKind:
    """A JSON object holding every one of ``keys``."""
    return OutputKind(description, lambda path: set(keys) <= set(_small_json(path)))


def csv_kind(columns: Sequence[str], description: str) -> OutputKind:
    """A CSV whose header row starts with ``columns``."""
    prefix = ",".join(columns)

    def recognise(path: Path) -> bool:
        with open(path, newline="") as f:
            header = f.readline(_SMALL).rstrip("\r\n")
        return header == prefix or header.startswith(prefix + ",")

    return OutputKind(description, recognise)


def folder_kind(stage: str) -> OutputKind:
    """A folder written as a whole by ``stage``: it holds :data:`MARKER` naming ``stage``
    and no file but those the marker lists (:func:`foreign_files`)."""

    def recognise(path: Path) -> bool:
        return marker_stage(path) == stage and not foreign_files(path) and not changed_files(path)

    return OutputKind(f"a folder written by `zernike3d {stage}` (it has no {MARKER} naming {stage!r})",
                      recognise, marker=stage)


def marker_stage(folder: str | Path) -> str | None:
    """The stage that the :data:`MARKER` of ``folder``, or the root attributes of a zarr
    store (:data:`STORE_ATTRIBUTE`), names; None if it has neither."""
    try:
        with open(Path(folder) / MARKER) as f:
            return f.readline(_SMALL).strip()
    except OSError:
        pass
    try:
        mark = _small_json(Path(folder) / "zarr.json").get("attributes", {}).get(STORE_ATTRIBUTE)
    except (OSError, ValueError, AttributeError):
        return None
    return mark.get("stage") if isinstance(mark, dict) else None


def written_files(folder: str | Path) -> dict[str, str | None]:
    """{relative path: SHA-256 hex digest, or None where not recorded} of the files that
    the :data:`MARKER` of ``folder`` lists as written with it."""
    with open(Path(folder) / MARKER) as f:
        lines = f.read().splitlines()[1:]
    written = {}
    for line in lines:
        name, tab, digest = line.rpartition("\t")
        written[name if tab else digest] = digest if tab else None
    return written


def foreign_files(folder: str | Path) -> list[str]:
    """The files in ``folder`` (relative paths, sorted) that its :data:`MARKER` does not
    list as written with it (Snakemake's ``.snakemake_timestamp`` aside); [] if the
    marker lists no files (written before markers listed them)."""
    folder = Path(folder)
    written = written_files(folder)
    if not written:
        return []
    return sorted(_present(folder) - set(written) - _BOOKKEEPING)


def changed_files(folder: str | Path) -> list[str]:
    """The files of ``folder`` (relative paths, sorted) whose content differs from the
    SHA-256 its :data:`MARKER` recorded when they were written (edited since)."""
    folder = Path(folder)
    return sorted(name for name, digest in written_files(folder).items()
                  if digest is not None and (folder / name).is_file() and _sha256(folder / name) != digest)


def missing_files(folder: str | Path) -> list[str]:
    """The files (relative paths, sorted) that the :data:`MARKER` of ``folder`` lists but
    that are gone."""
    folder = Path(folder)
    return sorted(set(written_files(folder)) - _present(folder))


def discard_incomplete(path: str | Path, kind: OutputKind) -> bool:
    """Remove ``path`` if it is an earlier output of ``kind`` that lacks some of the files
    its marker lists (the rest, unchanged, would otherwise outlive the run that replaces
    it: see the module docstring). Returns True if it was removed."""
    path = Path(path)
    if kind.marker is None or kind.store or not path.is_dir() or marker_stage(path) != kind.marker:
        return False
    try:
        if not missing_files(path) or not is_replaceable(path, kind):
            return False
    except OSError:
        return False
    _remove(path)
    return True


def _present(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


def _sha256(path):
    """Hex SHA-256 of the file ``path``; remembered for as long as its inode, size and
    modification time stay the same (a stage checks an earlier output several times)."""
    status = os.stat(path)
    key = (str(Path(path).absolute()), status.st_ino, status.st_size, status.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict[tuple, str] = {}


def is_replaceable(path: str | Path, kind: OutputKind) -> bool:
    """True if nothing is at ``path``, an empty folder, or an earlier output of ``kind``."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return True
    try:
        if path.is_dir() and not any(path.iterdir()):
            return True
        return bool(kind.recognise(path))
    except Exception:  # unreadable, not ours, damaged: not recognised
        return False


def check_replaceable(path: str | Path, kind: OutputKind) -> None:
    """Raise :class:`InputError` naming ``path`` unless :func:`is_replaceable` and outside
    any folder written whole by zernike3d, at any depth (what is in such a folder belongs
    to it: an input map of a later stage, or a file the folder's next write would refuse
    to lose, or replace with it)."""
    for owner in Path(path).absolute().parents:
        stage = marker_stage(owner)
        if stage is not None:
            raise InputError(path, f"is inside {owner}, a folder written whole by `zernike3d {stage}`; "
                                   "choose an output path outside it")
    if not is_replaceable(path, kind):
        foreign, changed = _strangers_of_output(path, kind)
        if foreign:
            raise InputError(path, f"holds {len(foreign)} file(s) that zernike3d did not write there "
                                   f"({_listed(foreign)}); refusing to "
                                   "replace the folder (move them away or choose another output path)")
        if changed:
            raise InputError(path, f"holds {len(changed)} file(s) changed since zernike3d wrote them "
                                   f"({_listed(changed)}); refusing to replace the folder "
                                   "(move them away or choose another output path)")
        what = "folder" if Path(path).is_dir() else "file"
        raise InputError(path, f"a {what} is already there and is not {kind.description}; refusing to "
                               "replace it (move it away or choose another output path)")


def _strangers_of_output(path, kind):
    """(:func:`foreign_files`, :func:`changed_files`) of a folder whose marker names
    ``kind``'s stage, or the foreign files of a store of ``kind``, else ([], [])."""
    if kind.store:
        return (kind.foreign(path) if Path(path).is_dir() else []), []
    if kind.marker is None or marker_stage(path) != kind.marker:
        return [], []
    try:
        return foreign_files(path), changed_files(path)
    except OSError:
        return [], []


def _listed(names):
    return f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"


@contextlib.contextmanager
def atomic_path(path: str | Path, kind: OutputKind) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    ``kind`` (:class:`OutputKind`): what is written, so that only an earlier output of
    that kind is replaced (see the module docstring). Works for files and folders.
    """
    with atomic_paths([(path, kind)]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(outputs: Sequence[tuple[str | Path, OutputKind]]) -> Iterator[list[Path]]:
    """Several outputs, all or none: ``outputs`` is a list of ``(path, kind)``; yields
    their temporary paths in the same order. A folder kind gets its temporary folder
    created, and its marker written on success."""
    items = [(Path(path), kind) for path, kind in outputs]
    for path, kind in items:
        check_replaceable(path, kind)
    for path, kind in items:
        discard_incomplete(path, kind)
    tmps = []
    try:
        for path, kind in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path)
            tmp = _sibling(path, "tmp")
            _remove(tmp)
            tmps.append(tmp)
            if kind.marker is not None:
                tmp.mkdir()
        try:
            yield list(tmps)
        except OSError as err:
            raise _naming_output(err, items, tmps) from None
        for (path, kind), tmp in zip(items, tmps):
            if kind.store:
                _mark_store(tmp, kind.marker)
            elif kind.marker is not None:  # the stage, then every file written and its hash
                (tmp / MARKER).write_text(_marker_text(tmp, kind))
            check_replaceable(path, kind)  # something may have appeared meanwhile
        _commit([path for path, _ in items], tmps)
    except BaseException:
        for tmp in tmps:
            _remove(tmp)
        raise


def _marker_text(folder, kind):
    """The :data:`MARKER` of ``folder``: ``kind``'s stage, then each file, a tab and its
    SHA-256."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() and p.name != MARKER)
    return "".join(f"{line}\n" for line in [kind.marker, *(f"{name}\t{_sha256(folder / name)}" for name in files)])


def _mark_store(store, stage):
    """Name ``stage`` in the root attributes of the zarr store ``store``
    (:data:`STORE_ATTRIBUTE`), editing its ``zarr.json`` (the format's own JSON)."""
    metadata = json.loads((store / "zarr.json").read_text())
    metadata.setdefault("attributes", {})[STORE_ATTRIBUTE] = {"stage": stage}
    (store / "zarr.json").write_text(json.dumps(metadata, indent=2))


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries (``.tmp-`` and ``.old-``) of ``path`` left by runs that are
    gone: on this host, a pid no longer alive; from another host, untouched for
    :data:`STALE_SECONDS`. Returns the paths removed."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.stem)}\.(?:tmp|old)-(?P<host>.+)-(?P<pid>\d+){re.escape(path.suffix)}$")
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f".{glob.escape(path.stem)}.*-*{glob.escape(path.suffix)}"):
        found = pattern.match(candidate.name)
        if found and _abandoned(candidate, found["host"], int(found["pid"])):
            _remove(candidate)
            removed.append(candidate)
    return removed


def _abandoned(candidate, host, pid):
    if host != socket.gethostname():
        try:
            return time.time() - candidate.lstat().st_mtime > STALE_SECONDS
        except FileNotFoundError:
            return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _sibling(path, tag):
    return path.with_name(f".{path.stem}.{tag}-{socket.gethostname()}-{os.getpid()}{path.suffix}")


def _commit(paths, tmps):
    """Rename every temporary into place; undo all of it if one rename fails."""
    if len(paths) == 1 and not paths[0].is_dir():
        os.replace(tmps[0], paths[0])  # one file: atomic, no moment without it
        return
    done = []  # (path, where the earlier output was moved, or None)
    try:
        for path, tmp in zip(paths, tmps):
            aside = None
            if path.exists() or path.is_symlink():
                aside = _sibling(path, "old")
                _remove(aside)
                os.rename(path, aside)
            try:
                os.rename(tmp, path)
            except BaseException:
                if aside is not None:
                    os.rename(aside, path)
                raise
            done.append((path, aside))
    except BaseException:
        for path, aside in reversed(done):
            _remove(path)
            if aside is not None:
                os.rename(aside, path)
        raise
    for _, aside in done:
        if aside is not None:
            _remove(aside)


def _naming_output(err, items, tmps):
    """The OSError ``err`` with its file name made the final output path when it was a
    temporary (or unnamed): the user should read ``results/moments.npz``, not a hidden name."""
    if not err.filename:
        return OSError(err.errno, err.strerror or str(err), " and ".join(str(path) for path, _ in items))
    name = str(err.filename)
    for (path, _), tmp in zip(items, tmps):
        if name == str(tmp) or name.startswith(str(tmp) + os.sep):
            return OSError(err.errno, err.strerror or str(err), str(path))
    return err


def _npz_format(path):
    """The ``format`` string of an .npz, read alone (:mod:`zernike3d.io.npz`: its header
    and declared size checked first); None if it has none."""
    from zernike3d.io.npz import open_npz

    with open_npz(path) as members:
        return members.scalar("format", "U") if "format" in members else None


def _small_json(path):
    with open(path) as f:
        text = f.read(_JSON_LIMIT + 1)
    if len(text) > _JSON_LIMIT:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _remove(p):
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()
