"""ChimeraX scripts (Python, ``.py``) that show a folder of maps as a volume series.

``open DIR/NAME.py`` in ChimeraX opens the folder's base map (a transparent grey surface,
for reference) and the maps of the group NAME as one volume series (``open ... vseries
true``: one model that steps through the maps in order), both at the same contour level,
into new model numbers (ChimeraX's next free ones), and plays the series from its first
map, looping. Nothing else of the user's session is closed or changed: the script closes
only the models an earlier run of the same script opened (it marks its models with the
script's path), so opening it again replaces its own two models. The log says which model
numbers they got. The scripts are Python rather than ``.cxc`` command files because a
``.cxc`` cannot learn the number ChimeraX gave the model it just opened, and so can only
address models by fixed numbers that may be the user's. They name the maps relative to
their own folder (``__file__``), so they keep working when the folder is moved.

The level is the base map's value above which :data:`ENCLOSED_FRACTION` of the box's
voxels lie: the top 5% of the density, a level that shows the molecule in a typical box;
change it in ChimeraX with ``volume #B,S level X`` (B, S: the numbers in the log).

``NAME_movie.py`` shows the same models and records one pass there and back into
``NAME.mp4``: ``vseries play direction forward`` from the first map to the last (it stops
there), then ``direction backward`` to the first, then ``movie encode``;
:func:`record_movie` runs it where ChimeraX is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: share of the box's voxels above the contour level of the scripts
ENCLOSED_FRACTION = 0.05
_FRAME = re.compile(r"^(?P<group>.+)_f\d+$")
_NUMBERED = re.compile(r"^(?P<stem>.+)_\d+$")

_PRELUDE = '''\
import os
from chimerax.core.commands import run

FOLDER = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(FOLDER, {script!r})


def quoted(name):
    return '"' + os.path.join(FOLDER, name) + '"'


def open_new(command):
    """Run an `open` command -> "#N,..": the new top-level models it made (with their
    submodels), each marked as this script's."""
    before = set(session.models.list())
    run(session, command)
    new = [m for m in session.models.list() if m not in before and len(m.id) == 1]
    for m in new:
        setattr(m, "zernike3d_script", SCRIPT)
    return "#" + ",".join(str(n) for n in sorted(m.id[0] for m in new))


ours = [m for m in session.models.list() if len(m.id) == 1 and getattr(m, "zernike3d_script", None) == SCRIPT]
if ours:
    session.models.close(ours)  # what an earlier run of this script opened (with its submodels), nothing else
'''

_BODY = _PRELUDE + '''\
base_spec = open_new("open " + quoted({base!r}))
series_spec = open_new("open " + " ".join(quoted(name) for name in {files!r}) + " vseries true")
run(session, f"volume {{base_spec}} level {level:.6g} style surface color #b4b4b4 transparency 0.7")
run(session, f"volume {{series_spec}} level {level:.6g} style surface color #3c8cd2")
run(session, f"view {{base_spec}}")
session.logger.info(f"zernike3d: {{base_spec}} is {base}, {{series_spec}} the series of {count} maps; "
                    f"contour: volume {{base_spec}},{{series_spec[1:]}} level X")
'''

_PLAY = '''\
run(session, f"vseries play {{series_spec}} loop true direction forward")
'''

_RECORD = '''\
run(session, "movie record")
run(session, f"vseries play {{series_spec}} direction forward")  # first map to last, then stops
run(session, "wait {frames}")
run(session, f"vseries play {{series_spec}} direction backward")  # last map back to the first
run(session, "wait {frames}")
run(session, "movie encode " + quoted({movie!r}) + " framerate 10 wait true")
'''


def contour_level(data: np.ndarray, fraction: float = ENCLOSED_FRACTION) -> float:
    """The level above which ``fraction`` of the voxels of ``data`` lie (density units)."""
    return float(np.quantile(np.asarray(data, dtype=np.float64), 1.0 - fraction))


def series_groups(names: Sequence[str], kinds: Sequence[str]) -> dict[str, list[str]]:
    """{group: [names in order]} of the maps that form a series: frames named
    ``GROUP_fNN`` (series along a component, paths) make one group each; cluster centres
    make a group named by their stem: ``clusters`` for ``cluster_NN`` (the centres of
    `zernike3d cluster`), ``kmeans`` for ``kmeans_NN`` (reconstruct's own --kmeans).
    Other maps (base, single particles, latents) form none."""
    groups: dict[str, list[str]] = {}
    for name, kind in zip(names, kinds):
        frame = _FRAME.match(name)
        if frame:
            groups.setdefault(frame["group"], []).append(name)
        elif kind == "cluster":
            numbered = _NUMBERED.match(name)
            stem = numbered["stem"] if numbered else name
            groups.setdefault("clusters" if stem == "cluster" else stem, []).append(name)
    return groups


def series_script(script_name: str, files: list[str], base_file: str, level: float, title: str,
                  movie_name: str | None = None) -> str:
    """The text of the ChimeraX Python script ``script_name`` that shows ``files`` (names
    in the script's folder, in order) as a volume series over ``base_file`` at contour
    ``level``, then plays it (looping), or with ``movie_name`` records one pass there and
    back into that file."""
    header = [
        f"# {title}",
        f"# ChimeraX: open {script_name}. It opens {base_file} and the {len(files)} maps as a volume series",
        "# into new model numbers (the log says which) and closes nothing of your session but the models",
        "# an earlier run of this script opened.",
    ]
    if movie_name is None:
        header.append("# The series plays from its first map, looping: vseries stop #N stops it.")
    else:
        header.append(f"# Records {movie_name}: the series from its first map to its last and back.")
    body = _BODY.format(script=script_name, base=base_file, files=list(files), level=level, count=len(files))
    tail = (_PLAY.format() if movie_name is None
            else _RECORD.format(frames=len(files) + 1, movie=movie_name))
    return "\n".join(header) + "\n" + body + tail


def write_scripts(folder: Path, names: list[str], kinds: list[str], base_file: str, level: float,
                  prefix: str = "") -> list[str]:
    """Write ``folder/PREFIX+GROUP.py`` and ``..._movie.py`` for every series group of the
    maps ``folder/PREFIX+NAME.mrc`` -> the names of the scripts that play (not the movie
    ones)."""
    written = []
    for group, members in series_groups(names, kinds).items():
        stem = f"{prefix}{group}"
        files = [f"{prefix}{name}.mrc" for name in members]
        title = f"{len(files)} maps {files[0]} .. {files[-1]} over {base_file}, written by zernike3d reconstruct"
        (folder / f"{stem}.py").write_text(series_script(f"{stem}.py", files, base_file, level, title))
        (folder / f"{stem}_movie.py").write_text(
            series_script(f"{stem}_movie.py", files, base_file, level, title, movie_name=f"{stem}.mp4"))
        written.append(f"{stem}.py")
    return written


_MATCH = _PRELUDE + '''\
state_spec = open_new("open " + quoted({state!r}))
run(session, f"volume {{state_spec}} level {state_level:.6g} style surface color #b4b4b4 transparency 0.5")
fitted_spec = open_new("open " + quoted({fitted!r}))
run(session, f"volume {{fitted_spec}} level {fitted_level:.6g} style mesh color #d2783c")
shown = f"{{state_spec}} is {state}, {{fitted_spec}} {fitted}"
QUERY = {query!r}
if QUERY is not None:
    query_spec = open_new('open "' + QUERY + '"')
    run(session, f"view matrix models {{query_spec}},{matrix}")
    shown += f", {{query_spec}} {{QUERY}} placed by the fit"
run(session, "view")
session.logger.info("zernike3d: " + shown)
'''


def match_script(script_name: str, state_file: str, fitted_file: str, state_level: float, fitted_level: float,
                 title: str, query_file: str | None = None, matrix=None) -> str:
    """The text of the ChimeraX Python script ``script_name`` that shows a job's map at a
    matched state (a grey transparent surface) with a query fitted into its frame (an
    orange mesh), both files in the job's frame (names in the script's folder), each at
    its own contour level; and, given ``query_file`` (an absolute path) and ``matrix``
    (3x4, the fit as ``view matrix`` takes it: :attr:`Alignment.chimerax_matrix`), the
    query file itself placed on them. Like the series scripts, it opens into new model
    numbers and closes only what an earlier run of itself opened."""
    header = [
        f"# {title}",
        f"# ChimeraX: open {script_name}. It opens {state_file} (the job's map at the matched state) and "
        f"{fitted_file} (the query in the job's frame)" + (", and the query file placed by the fit" if query_file else ""),
        "# into new model numbers (the log says which) and closes nothing of your session but the models",
        "# an earlier run of this script opened.",
    ]
    numbers = None if matrix is None else ",".join(f"{v:.6g}" for v in np.asarray(matrix, dtype=np.float64).ravel())
    body = _MATCH.format(script=script_name, state=state_file, fitted=fitted_file, state_level=state_level,
                         fitted_level=fitted_level, query=query_file, matrix=numbers)
    return "\n".join(header) + "\n" + body


def record_movie(movie_script_path: Path, timeout: float = 600) -> str | None:
    """Run ChimeraX (offscreen) on a ``*_movie.py`` -> None when done, else one line
    saying why no movie was made (ChimeraX not installed, or it failed)."""
    executable = shutil.which("chimerax") or shutil.which("ChimeraX")
    if executable is None:
        return f"no movie for {movie_script_path.name}: ChimeraX (chimerax) is not on PATH"
    done = subprocess.run([executable, "--offscreen", "--nostatus", "--exit", str(movie_script_path)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not movie_script_path.with_name(movie_script_path.name.replace("_movie.py", ".mp4")).is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"no movie for {movie_script_path.name}: ChimeraX failed ({last[0]})"
    return None
