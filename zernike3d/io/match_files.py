"""scores.csv of `zernike3d match`: one row per particle (uid), one column per query (the
particle's score, a correlation with 6 decimals; empty where the particle's map is flat in
the ball and has no score) and ``best``, the query that scores highest (empty where none
scores). A query's column, and its files in the match folder, are named by the stem of its
file (:func:`check_stems`). The other files of the stage are described in :mod:`zernike3d.stages.match`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from zernike3d.errors import InputError

#: names a query's stem may not take (columns of scores.csv)
RESERVED_STEMS = ("uid", "best")


def query_stem(path: str | Path) -> str:
    """The stem of a query file: ``adk_open`` for adk_open.pdb or adk_open.cif.gz."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return Path(name).stem


def check_stems(paths: Iterable[str | Path]) -> list[str]:
    """The stems of the query files ``paths``, which name the columns of scores.csv and
    the files of the match folder: each usable and once; :class:`InputError` otherwise."""
    stems: dict[str, str | Path] = {}
    for path in paths:
        stem = query_stem(path)
        if stem in stems:
            raise InputError(path, f"its stem {stem!r} repeats that of {stems[stem]}: scores.csv names a column by it; "
                             "rename one of the files")
        if stem in RESERVED_STEMS:
            raise InputError(path, f"its stem {stem!r} is a column of scores.csv already; rename the file")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", stem):
            raise InputError(path, f"its stem {stem!r} names a column and files: use letters, digits and _.+- only")
        stems[stem] = path
    for stem, path in stems.items():
        if stem.endswith("_fitted") and stem[: -len("_fitted")] in stems:
            raise InputError(path, f"its stem {stem!r} is the name of the fitted map of {stems[stem[:-7]]}; rename the file")
    return list(stems)


def write_scores_csv(path: Path, uid: list | np.ndarray, stems: list[str], scores: np.ndarray, chunk: int = 100_000) -> None:
    """scores.csv: uid, a column per query (6 decimals; empty where NaN), best. Rows are
    formatted a chunk at a time by one %-operation (three times faster than row by row)."""
    best = np.argmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1)
    names = np.array(stems, dtype=object)[best]
    names[~np.isfinite(scores).any(axis=1)] = ""
    line = "%s" + ",%.6f" * len(stems) + ",%s\n"
    uids = np.asarray(uid, dtype=object)
    with open(path, "w", newline="") as f:
        f.write(",".join(["uid", *stems, "best"]) + "\n")
        for start in range(0, len(scores), chunk):
            values = scores[start : start + chunk]
            rows = np.empty((len(values), len(stems) + 2), dtype=object)
            rows[:, 0], rows[:, 1:-1], rows[:, -1] = uids[start : start + chunk], values, names[start : start + chunk]
            if np.isfinite(values).all():
                f.write((line * len(values)) % tuple(rows.ravel().tolist()))
                continue
            for row in rows.tolist():  # a particle whose map is flat in the ball has no score
                f.write(",".join([str(row[0]), *("" if v != v else f"{v:.6f}" for v in row[1:-1]), row[-1]]) + "\n")
