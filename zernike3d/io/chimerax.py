"""ChimeraX command scripts (``.cxc``) that show a folder of maps as a volume series.

``open DIR/NAME.cxc`` in ChimeraX closes every open model, opens the folder's base map as
model #1 (a transparent grey surface, for reference) and the maps of the group NAME as
one volume series #2 (``open ... vseries true``: one model that steps through the maps in
order), both at the same contour level, and plays the series back and forth. ChimeraX
runs a ``.cxc`` file from the file's own folder, so the scripts name the maps relative
to it and keep working when the folder is moved.

The level is the base map's value above which :data:`ENCLOSED_FRACTION` of the box's
voxels lie: the top 5% of the density, a level that shows the molecule in a typical box;
change it in ChimeraX with ``volume #1,2 level X``.

``NAME_movie.cxc`` records the same playback into ``NAME.mp4`` (``movie record``,
``movie encode``); :func:`record_movie` runs it where ChimeraX is installed.
"""

import re
import shutil
import subprocess

import numpy as np

#: share of the box's voxels above the contour level of the scripts
ENCLOSED_FRACTION = 0.05
_FRAME = re.compile(r"^(?P<group>.+)_f\d+$")


def contour_level(data, fraction=ENCLOSED_FRACTION):
    """The level above which ``fraction`` of the voxels of ``data`` lie (density units)."""
    return float(np.quantile(np.asarray(data, dtype=np.float64), 1.0 - fraction))


def series_groups(names, kinds):
    """{group: [names in order]} of the maps that form a series: frames named
    ``GROUP_fNN`` (series along a component, paths) make one group each; cluster centres
    make the group ``clusters``. Other maps (base, single particles, latents) form none."""
    groups = {}
    for name, kind in zip(names, kinds):
        frame = _FRAME.match(name)
        if frame:
            groups.setdefault(frame["group"], []).append(name)
        elif kind == "cluster":
            groups.setdefault("clusters", []).append(name)
    return groups


def series_script(files, base_file, level, title):
    """The text of a ``.cxc`` that shows ``files`` (paths relative to the script, in
    order) as a volume series over ``base_file``, at contour ``level``."""
    quoted = " ".join(_quote(f) for f in files)
    return "\n".join([
        f"# {title}",
        "# ChimeraX: open this file. Model #1 the base map, #2 the series; change the contour",
        "# with: volume #1,2 level X",
        "close",
        f"open {_quote(base_file)}",
        f"volume #1 level {level:.6g} style surface color #b4b4b4 transparency 0.7",
        f"open {quoted} vseries true",
        f"volume #2 level {level:.6g} style surface color #3c8cd2",
        "view",
        "vseries play #2 loop true direction oscillate",
        "",
    ])


def movie_script(script_name, movie_name, frames):
    """The text of a ``.cxc`` that opens ``script_name`` and records one pass of the series
    (there and back) into ``movie_name``."""
    return "\n".join([
        f"open {_quote(script_name)}",
        "vseries stop #2",
        "movie record",
        "vseries play #2 loop false direction oscillate",
        f"wait {2 * frames}",
        f"movie encode {_quote(movie_name)} framerate 10 wait true",
        "",
    ])


def write_scripts(folder, names, kinds, base_file, level, prefix=""):
    """Write ``folder/PREFIX+GROUP.cxc`` and ``..._movie.cxc`` for every series group of
    the maps ``folder/PREFIX+NAME.mrc`` -> the script names written."""
    written = []
    for group, members in series_groups(names, kinds).items():
        stem = f"{prefix}{group}"
        files = [f"{prefix}{name}.mrc" for name in members]
        title = f"{len(files)} maps {stem}_* over {base_file}, written by zernike3d"
        (folder / f"{stem}.cxc").write_text(series_script(files, base_file, level, title))
        (folder / f"{stem}_movie.cxc").write_text(movie_script(f"{stem}.cxc", f"{stem}.mp4", len(files)))
        written.append(f"{stem}.cxc")
    return written


def match_script(state_file, fitted_file, state_level, fitted_level, title, query_file=None, placement=None):
    """The text of a ``.cxc`` that shows a job's map at a matched state (model #1, a grey
    transparent surface) with a query fitted into its frame (#2, an orange mesh), both
    files in the job's frame (paths relative to the script), each at its own contour
    level; and, given ``query_file`` (an absolute path) and ``placement`` (a ChimeraX
    ``view matrix models #3,...`` command), the query file itself as model #3 placed on them."""
    lines = [
        f"# {title}",
        "# ChimeraX: open this file. Model #1 the job's map at the matched state, #2 the fitted query"
        + (", #3 the query file placed by the fit" if query_file else ""),
        "close",
        f"open {_quote(state_file)}",
        f"volume #1 level {state_level:.6g} style surface color #b4b4b4 transparency 0.5",
        f"open {_quote(fitted_file)}",
        f"volume #2 level {fitted_level:.6g} style mesh color #d2783c",
    ]
    if query_file is not None:
        lines += [f"open {_quote(query_file)}", placement]
    return "\n".join(lines + ["view", ""])


def record_movie(movie_script_path, timeout=600):
    """Run ChimeraX (offscreen) on a ``*_movie.cxc`` -> None when done, else one line
    saying why no movie was made (ChimeraX not installed, or it failed)."""
    executable = shutil.which("chimerax") or shutil.which("ChimeraX")
    if executable is None:
        return f"no movie for {movie_script_path.name}: ChimeraX (chimerax) is not on PATH"
    done = subprocess.run([executable, "--offscreen", "--nostatus", "--exit", str(movie_script_path)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not movie_script_path.with_name(movie_script_path.name.replace("_movie.cxc", ".mp4")).is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"no movie for {movie_script_path.name}: ChimeraX failed ({last[0]})"
    return None


def _quote(path):
    return f'"{path}"' if re.search(r"\s", str(path)) else str(path)
