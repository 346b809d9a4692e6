"""Progress of long loops, readable on a terminal and in a log file.

On a terminal: a tqdm bar, shown only after 2 s. In a log (stderr not a terminal, as in
every workflow job): tqdm would write each update after a carriage return, which a log
file keeps as one ever-growing line; instead, one plain line per tenth of the work,
also only after 2 s, e.g. ``decompose: 4/8 block (50%), 3.1 s``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import TypeVar

DELAY_S = 2.0

T = TypeVar("T")


def progress(iterable: Sequence[T], label: str, unit: str) -> Iterable[T]:
    """``iterable`` (a sized sequence), reporting progress on stderr as described above."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, desc=label, unit=unit, delay=DELAY_S)
    return _log_lines(iterable, label, unit)


def _log_lines(items, label, unit):
    total, start, next_tenth = len(items), time.monotonic(), 1
    for done, item in enumerate(items, start=1):
        yield item
        if done * 10 >= next_tenth * total:
            elapsed = time.monotonic() - start
            if elapsed >= DELAY_S:
                print(f"{label}: {done}/{total} {unit} ({100 * done // total}%), {elapsed:.1f} s",
                      file=sys.stderr, flush=True)
            next_tenth = done * 10 // total + 1
