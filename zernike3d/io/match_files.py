"""scores.csv of `zernike3d match`: one row per particle (uid), one column per query (the
particle's score, a correlation with 6 decimals; empty where the particle's map is flat in
the ball and has no score) and ``best``, the query that scores highest (empty where none
scores). The other files of the stage are described in :mod:`zernike3d.stages.match`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
