"""Write outputs under a temporary name and rename them when complete.

A crash, an exception or a killed job therefore never leaves a half-written file
under the final name: either the old file (or nothing) is there, or the new one.
"""

import contextlib
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    Works for files and for directories (e.g. zarr stores). The temporary name keeps
    the final suffix (``.foo.tmp-1234.npz``) so that libraries which pick a format
    from the suffix still do the right thing. On error the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(p):
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()
