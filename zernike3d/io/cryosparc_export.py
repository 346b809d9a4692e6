"""Particle subsets written back for cryoSPARC: a ``.cs`` table and its ``.csg`` group file.

A subset is the job's original particle rows, selected by uid, with every field and
its dtype unchanged (a string field of a NumPy ``.cs`` keeps its width, ``|S112`` stays
``|S112``) (and those of the job's passthrough file, joined by uid: see
:func:`read_table`), saved with cryosparc-tools' ``Dataset.save`` in the format of the
source file (NumPy ``.npy`` records or cryoSPARC's compressed stream, told apart by the
file's first bytes). cryoSPARC's *Import Result Group* job reads the ``.csg`` file, a
YAML document::

    created: 2026-11-30 12:00:00.000000
    group:
      name: cluster_00            # the output group's name
      title: cluster_00 (1234 particles)
      type: particle
      description: ...
    results:                      # one entry per field prefix of the .cs (uid excepted)
      blob:
        metafile: '>cluster_00.cs'  # '>' = a path relative to the .csg file
        num_items: 1234
        type: particle.blob       # particle.<result type>: see result_type
      ctf: ...
      components_mode_0:
        ...
        type: particle.components
    version: zernike3d 0.1.0      # cryoSPARC writes its own version here

as cryoSPARC's own exported groups (``exports/groups/*/*.csg``) are laid out.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zernike3d import __version__
from zernike3d.errors import InputError

if TYPE_CHECKING:
    from cryosparc.dataset import Dataset as CsDataset


def read_table(path: str | Path) -> tuple[CsDataset, int, Path | None, np.dtype | None]:
    """The particles table of ``path`` (cryosparc-tools Dataset, every field), its save
    format (``NUMPY_FORMAT`` or ``CSDAT_FORMAT``), the passthrough file whose fields
    were joined to it, or None, and the exact NumPy dtype of the table's fields as the
    files hold them (None for a compressed file, whose strings have no fixed width):
    cryosparc-tools keeps strings as Python objects and would save them at the width of
    the longest one in the subset, plus one.

    A job's own output (``J<n>_particles.cs`` of 3D Variability: uid and
    ``components_mode_*`` only) gets the fields it lacks from its passthrough file
    (:func:`zernike3d.io.cryosparc.passthrough_path`: ``blob``, ``ctf``, ``alignments3D``,
    ...), row by uid, so that a subset holds the particle images and their poses.
    :class:`InputError` if either is not a readable .cs table with uids, or the
    passthrough file lacks a particle.
    """
    from cryosparc.dataset import CSDAT_FORMAT, NUMPY_FORMAT

    from zernike3d.io.cryosparc import checked_header, is_compressed, load_table, passthrough_path

    checked_header(path)
    table = load_table(path)
    fmt = CSDAT_FORMAT if is_compressed(path) else NUMPY_FORMAT
    dtype = numpy_fields(path)
    passthrough = passthrough_path(path)
    if passthrough is None:
        return table, fmt, None, dtype
    missing = [field for field in checked_header(passthrough)["dtype"] if field[0] not in table.fields()]
    if not missing:
        return table, fmt, None, dtype
    inherited = load_table(passthrough, [field[0] for field in missing])
    rows = rows_of_uids(inherited["uid"], table["uid"], passthrough,
                        f"not the passthrough file of {Path(path).name}, or a damaged one")
    table.add_fields(missing)
    for field in missing:
        table[field[0]] = inherited[field[0]][rows]
    joined = numpy_fields(passthrough)
    if dtype is not None and joined is not None:
        dtype = np.dtype(dtype.descr + [(name, joined.fields[name][0]) for name, *_ in missing])  # type: ignore[index]  # structured: has fields
    else:
        dtype = None
    return table, fmt, passthrough, dtype


def numpy_fields(path: str | Path) -> np.dtype | None:
    """The structured dtype in the NumPy header of the ``.cs`` ``path``, or None for a
    compressed (CSDAT) file or a header that is not NumPy's."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version, np.lib.format.read_array_header_2_0)
            _, _, dtype = read_header(f, max_header_size=2**20)
    except (OSError, ValueError):
        return None
    return dtype if dtype.names else None


def latents_only(table: CsDataset) -> bool:
    """True if ``table`` holds nothing but ``uid`` and 3DVA's ``components_mode_*`` fields:
    a job's own output without the particle images, CTF and poses of its passthrough."""
    return all(field == "uid" or field.startswith("components_mode_") for field in table.fields())


def source_particles_cs(provenance: list[dict[str, Any]]) -> str | None:
    """Path of the particles .cs a dataset was imported from, or None: its import step in
    ``provenance`` (a :class:`~zernike3d.io.dataset.Dataset`'s, a list of steps) lists it
    among the files read."""
    for step in provenance:
        if step.get("stage") == "import":
            for record in step.get("inputs", []):
                if str(record.get("path", "")).endswith(".cs"):
                    return record["path"]
    return None


def particle_table(path: str | Path | None, given: bool, dataset_source: str | Path,
                   latents_only_subsets: bool = False) -> tuple[CsDataset, int, np.dtype | None]:
    """(table, format, exact dtype or None) of :func:`read_table` for the particles .cs
    ``path`` of a subset: the one given with --particles-cs (``given``) or the one the
    dataset ``dataset_source`` was imported from (:func:`source_particles_cs`); one line
    on stdout when a passthrough file's fields were joined. :class:`InputError` when
    there is none, the recorded one is gone, or it holds only uid and the latents (no
    particle images, CTF or poses: :func:`latents_only`) and ``latents_only_subsets``
    (--latents-only-subsets) does not ask for subsets of those fields alone, which then
    get a warning on stderr."""
    import sys

    from zernike3d.io.cryosparc import passthrough_name

    if path is None:
        raise InputError("--particles-cs", f"{dataset_source} does not record a particles .cs (imported from "
                         "a bundle or single map): give the job's particles .cs")
    if not given and not Path(path).is_file():
        raise InputError(path, f"the particles .cs {dataset_source} was imported from is gone: give it with --particles-cs")
    table, fmt, passthrough, dtype = read_table(path)
    if passthrough is not None:
        print(f"subsets: the fields of {path} with those of {passthrough}, joined by uid")
    if latents_only(table):
        if not latents_only_subsets:
            raise InputError(path, f"holds only uid and the latents ({len(table.fields())} fields: no particle images, "
                             f"CTF or poses) and no passthrough file {passthrough_name(path) or 'J<n>_passthrough_particles.cs'} "
                             "is beside it: put it there, give --particles-cs the job's full particles .cs, or "
                             "--latents-only-subsets to write subsets of these fields alone")
        print(f"warning: subsets of {path} hold only uid and the latents: no particle images, CTF or poses",
              file=sys.stderr)
    return table, fmt, dtype


def rows_of_uids(table_uid: np.ndarray, uid: np.ndarray, source: object,
                 hint: str = "is it the job's particles .cs?") -> np.ndarray:
    """Row of each of ``uid`` in ``table_uid`` -> int64 (len(uid),); :class:`InputError`
    naming ``source`` (the table), and ending in ``hint``, if a uid is missing or the
    table repeats one."""
    table_uid = np.asarray(table_uid, dtype=np.uint64)
    uid = np.asarray(uid, dtype=np.uint64)
    order = np.argsort(table_uid, kind="stable")
    ordered = table_uid[order]
    if len(ordered) > 1 and np.any(ordered[1:] == ordered[:-1]):
        raise InputError(source, "the particles table repeats a uid")
    place = np.minimum(np.searchsorted(ordered, uid), len(ordered) - 1)
    found = ordered[place] == uid
    if not found.all():
        raise InputError(source, f"{int((~found).sum())} of the dataset's {len(uid)} particles "
                         f"are not in this table (first missing uid {int(uid[~found][0])}): {hint}")
    return order[place]


#: result names whose type is not the name itself (cryosparc-tools ``spec.Slot``: e.g.
#: 3D Variability's ``components_mode_X`` are of type ``components``)
_RESULT_TYPES = ((re.compile(r"^components_mode_\d+$"), "components"),
                 (re.compile(r"^alignments_class_\d+$"), "alignments3D"),
                 (re.compile(r"^background_blob$"), "stat_blob"))


def result_type(prefix: str) -> str:
    """cryoSPARC's type of the result (field prefix) ``prefix``: ``components_mode_3`` ->
    ``components``, ``alignments_class_0`` -> ``alignments3D``, ``ctf`` -> ``ctf``."""
    return next((kind for pattern, kind in _RESULT_TYPES if pattern.match(prefix)), prefix)


def csg_document(name: str, cs_filename: str, prefixes: Sequence[str], count: int, description: str) -> dict[str, Any]:
    """The ``.csg`` group (a dict, see the module docstring) of one subset."""
    return {
        "created": datetime.datetime.now(),  # YAML timestamp, as cryoSPARC writes it
        "group": {
            "name": name,
            "title": f"{name} ({count} particles)",
            "type": "particle",
            "description": description,
        },
        "results": {
            prefix: {"metafile": f">{cs_filename}", "num_items": int(count), "type": f"particle.{result_type(prefix)}"}
            for prefix in prefixes
        },
        "version": f"zernike3d {__version__}",
    }


def write_subset(directory: Path, name: str, table: CsDataset, fmt: int, rows: np.ndarray, description: str,
                 dtype: np.dtype | None = None) -> Path:
    """``directory/name.cs`` (rows ``rows`` of ``table``, every field unchanged, format
    ``fmt``; with ``dtype``, the exact dtype of the source file from :func:`read_table`,
    written as NumPy records of that dtype) and ``directory/name.csg`` (the group
    cryoSPARC imports). ``directory`` is the caller's temporary output folder
    (:func:`zernike3d.io.atomic.atomic_path`), so the files are written in place."""
    import yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    subset = table.take(np.asarray(rows, dtype=np.int64))
    cs_path = directory / f"{name}.cs"
    if dtype is None:
        subset.save(cs_path, format=fmt)
    else:
        records = np.empty(len(subset), dtype=dtype)
        for field in dtype.names or ():
            values = subset[field]
            if dtype[field].kind == "S" and values.dtype == object:
                values = [v.encode() if isinstance(v, str) else v for v in values]
            records[field] = values
        with open(cs_path, "wb") as f:
            np.save(f, records)
    prefixes = sorted({field.split("/")[0] for field in table.fields() if "/" in field})
    document = csg_document(name, cs_path.name, prefixes, len(subset), description)
    with open(directory / f"{name}.csg", "w") as f:
        yaml.safe_dump(document, f, sort_keys=False)
    return cs_path
