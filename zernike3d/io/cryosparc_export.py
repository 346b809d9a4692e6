"""Particle subsets written back for cryoSPARC: a ``.cs`` table and its ``.csg`` group file.

A subset is the job's original particle rows, selected by uid, with every field and
its dtype unchanged, saved with cryosparc-tools' ``Dataset.save`` in the format of the
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
        type: particle.blob
      ctf: ...
    version: zernike3d 0.1.0      # cryoSPARC writes its own version here

as cryoSPARC's own exported groups (``exports/groups/*/*.csg``) are laid out.
"""

import datetime
from pathlib import Path

import numpy as np

from zernike3d import __version__
from zernike3d.errors import InputError


def read_table(path):
    """The particles table of ``path`` (cryosparc-tools Dataset, every field) and its save
    format (``NUMPY_FORMAT`` or ``CSDAT_FORMAT``). :class:`InputError` if it is not a
    readable .cs table with uids; a compressed file's framing is checked before it is
    decoded (:func:`zernike3d.io.cryosparc.check_csdat_framing`)."""
    from cryosparc.dataset import CSDAT_FORMAT, NUMPY_FORMAT
    from cryosparc.dataset import Dataset as CsDataset
    from cryosparc.dataset import DatasetLoadError

    from zernike3d.io.cryosparc import CSDAT_MAGIC, check_csdat_framing

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "particles file not found")
    try:
        header = CsDataset.inspect(path)
    except (DatasetLoadError, ValueError, OSError) as err:
        cause = str(err.__cause__ or err).splitlines()[0][:120]
        raise InputError(path, f"not a readable cryoSPARC .cs file, or a truncated one ({cause})") from None
    if "uid" not in [field[0] for field in header["dtype"]]:
        raise InputError(path, "particles table has no uid field: subsets are selected by uid")
    with open(path, "rb") as f:
        fmt = CSDAT_FORMAT if f.read(len(CSDAT_MAGIC)) == CSDAT_MAGIC else NUMPY_FORMAT
    if fmt == CSDAT_FORMAT:
        check_csdat_framing(path, header)
    try:
        table = CsDataset.load(path)
    except (DatasetLoadError, ValueError, OSError) as err:
        cause = str(err.__cause__ or err).splitlines()[0][:120]
        raise InputError(path, f"not a readable cryoSPARC .cs file, or a truncated one ({cause})") from None
    return table, fmt


def rows_of_uids(table_uid, uid, source):
    """Row of each of ``uid`` in ``table_uid`` -> int64 (len(uid),); :class:`InputError`
    naming ``source`` (the table) if a uid is missing or the table repeats one."""
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
                         f"are not in this table (first missing uid {int(uid[~found][0])}): "
                         "is it the job's particles .cs?")
    return order[place]


def csg_document(name, cs_filename, prefixes, count, description):
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
            prefix: {"metafile": f">{cs_filename}", "num_items": int(count), "type": f"particle.{prefix}"}
            for prefix in prefixes
        },
        "version": f"zernike3d {__version__}",
    }


def write_subset(directory, name, table, fmt, rows, description):
    """``directory/name.cs`` (rows ``rows`` of ``table``, every field unchanged, format
    ``fmt``) and ``directory/name.csg`` (the group cryoSPARC imports). ``directory`` is
    the caller's temporary output folder (:func:`zernike3d.io.atomic.atomic_path`), so the
    files are written in place."""
    import yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    subset = table.take(np.asarray(rows, dtype=np.int64))
    cs_path = directory / f"{name}.cs"
    subset.save(cs_path, format=fmt)
    prefixes = sorted({field.split("/")[0] for field in table.fields() if "/" in field})
    document = csg_document(name, cs_path.name, prefixes, len(subset), description)
    with open(directory / f"{name}.csg", "w") as f:
        yaml.safe_dump(document, f, sort_keys=False)
    return cs_path
