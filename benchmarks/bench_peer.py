"""zernike3d against the fastest peer on PyPI, side by side (issue 11: "ahead of that peer at every order").

The peer is ``zernike-descriptors`` 0.1.0 (module ``pyzernike``): Novotni and Klein's C++
code with OpenMP, which integrates geometric moments over the voxel cells and maps them
to Zernike moments, then returns the invariants ||Omega_nl||. This script installs it
from PyPI into its own virtual environment (default ``~/.cache/zernike3d-bench/peer-venv``,
built from the sdist the first time: gcc and cmake needed, about 30 s) and runs it in a
child process of that environment (``benchmarks/peer_child.py``); zernike3d runs in this
interpreter.

    python benchmarks/bench_peer.py                                # 64^3 at orders 20, 30, 40
    python benchmarks/bench_peer.py --cases 64:20 96:30 --repeats 5 --out results.json
    python benchmarks/bench_peer.py --peer-venv /tmp/peer-venv --threads 2

What is measured, per case (box, order):

* peer seconds: one call of the peer (float32 map, so float arithmetic: its fast path;
  its per-call tables included), timed in-process in the child;
* ours seconds: one ``zernike3d.maths.transform.decompose(map, geometry, order)`` call
  (float32 map, float64 arithmetic, per-call tables included), timed in-process; the
  first warm-up call compiles the kernels (or loads them from numba's cache);
* ours seconds per map when --batch maps (default 16) go through one ``decompose`` call;
* the ratios peer / ours (above 1: zernike3d is faster), for one map and per map in a batch;
* accuracy: the relative difference ||F(map) - F(twin)|| / ||F(map)|| of each tool's
  invariants F_nl (ours: :func:`zernike3d.maths.invariants.invariants`) between the map
  and its twin, the same map turned by an exact grid rotation (rot90 about x, then about
  z: a 120 degree turn about a body diagonal, which mixes all m). A turn of the grid is
  exact only about the array's middle, so the map (support centred on voxel box // 2) is
  padded with one zero plane per axis to an odd box, whose middle is that voxel. The peer's
  figure is given for float32 and float64 input; NaN or inf in its invariants is counted;
* peer = ours to n: both tools compute the same invariants in the same ball (the peer's
  are sqrt(3 / (4 pi)) times ours), the peer by integrating over the voxel cells,
  zernike3d by summing at the voxel centres (its sums are checked against direct
  evaluation in its tests), so they differ a little, more at high n; the column gives the
  highest n up to which they agree within AGREEMENT (10 %) at every n, for the peer's
  float32 and float64 input. The twin test cannot see where the peer's arithmetic breaks
  down (at high n, through cancellation in its geometric-to-Zernike sums) when the
  breakdown is the same for the map and its twin; this column can. The JSON also holds
  ``peer_vs_ours``, ||F_peer / sqrt(3 / (4 pi)) - F_ours|| / ||F_ours|| (float64 input).

Fairness. Each tool is timed the same way: a block of --repeats (5) back-to-back calls
after warm-up calls (at least one, and at least 0.3 s of them). Per case, --rounds (2)
rounds each time a block of the peer, then blocks of zernike3d (one map, then the
batch), so that load from other work affects both alike; the fastest call of all rounds
counts. (Alternating single calls instead would measure each call just after the other
tool's: on the shared 2-core test machine both then ran up to 2-3x slower than in a
loop, and not reproducibly.) Both use the same number of threads: numba's (all cores
unless --threads), and OMP_NUM_THREADS set to it for the peer. Maps are smooth and positive (the peer's geometric moments lose accuracy
on noise): a sum of Gaussian blobs on a small background, times a soft spherical mask
that is exactly zero beyond ``--support`` x box voxels from voxel box // 2, with one
balancing blob that puts the centre of mass on that voxel. The same float32 map goes to
both tools (through a .npy file).

The balls. The peer centres its ball on the map's centre of mass and takes as radius
twice the root-mean-square distance of the non-zero voxels from it (its
``ComputeScale_RadiusVar``; it measures those distances from a point offset by half a
voxel on every axis and with the x and y centres swapped, so for a map whose centre of
mass is off the middle its radius changes under rotation, and so do its invariants),
and it zeroes the voxels outside. zernike3d's ball is centred on voxel box // 2 and here
given the peer's radius (computed by :func:`peer_ball`, a replica of the peer's formula).
With the centre of mass on voxel box // 2 both tools expand the same map in the same
ball, and the peer's quirks above do not enter the twin test. With --support 0.3 that
radius is about 0.47 box: the ball lies inside the box and holds 40 % of its voxels.

The PyPI sdist installs only the compiled module ``pyzernike._core`` (its build leaves
out the Python wrapper), so the child calls ``ZernikeDescriptorFloat`` /
``ZernikeDescriptorDouble`` directly, as the wrapper's ``fit`` does. If the peer cannot be
installed or run, one line says so and zernike3d's figures are still reported.

Timings vary with the machine and with other work running on it: compare figures taken in
the same run. Writes one Markdown table to stdout and, with --out, the figures as JSON.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PEER_REQUIREMENT = "zernike-descriptors==0.1.0"
PEER_VERSION = "0.1.0"
DEFAULT_PEER_VENV = Path.home() / ".cache" / "zernike3d-bench" / "peer-venv"
CHILD_SCRIPT = Path(__file__).resolve().with_name("peer_child.py")
#: the peer's invariants are this times ours (measured: same map, same ball, the ratio is
#: this at every (n, l) to within the two discretisations' difference, 0.06 % at n = 2)
PEER_INVARIANT_SCALE = math.sqrt(3.0 / (4.0 * math.pi))
#: per-n relative difference of the two tools' invariants that counts as agreement: the
#: two discretisations (cell integrals, point samples) differ by 0.06 % at n = 2 to 5 % at
#: n = 28 on these maps; a breakdown of the peer's arithmetic gives 100 % or more, or NaN
AGREEMENT = 0.1
VANISHING = 1e-6
#: warm-up before each block of timed calls (s): at least one call, and calls for this long
#: (on the shared test machine, a call right after a pause ran up to 3x slower than in a
#: busy loop, for both tools)
WARM_SECONDS = 0.3
BLOBS = 10
BACKGROUND = 0.05


class PeerUnavailable(Exception):
    """The peer could not be installed, started or run (message: one line)."""


def smooth_map(box, seed, support):
    """A smooth positive float32 map (box, box, box), data[z, y, x], with its centre of
    mass on voxel box // 2 and exactly zero beyond ``support * box`` voxels from it.

    BLOBS Gaussian blobs (centres within 0.55 of the support radius, widths 0.04-0.09 box,
    heights 0.5-1.5) on a background of BACKGROUND, times a mask that falls from 1 to 0
    as a half cosine over the outer fifth of the support radius (at least 2 voxels); then
    one balancing blob (width 0.08 box, its sum a quarter of the map's, or more if the
    map's centre of mass is far off) placed by Newton steps, within 0.35 of the support
    radius, so that the centre of mass lies on voxel box // 2 to within 1e-9 voxel.
    """
    rng = np.random.default_rng(seed)
    middle = box // 2
    axis = np.arange(box, dtype=np.float64) - middle
    dz, dy, dx = axis[:, None, None], axis[None, :, None], axis[None, None, :]
    radius = support * box
    r = np.sqrt(dz**2 + dy**2 + dx**2)
    edge = max(2.0, 0.2 * radius)
    mask = 0.5 - 0.5 * np.cos(np.pi * np.clip((radius - r) / edge, 0.0, 1.0))

    def blob(centre, sigma):
        return np.exp(-((dz - centre[0]) ** 2 + (dy - centre[1]) ** 2 + (dx - centre[2]) ** 2) / (2.0 * sigma**2))

    density = np.full((box, box, box), BACKGROUND)
    for _ in range(BLOBS):
        direction = rng.standard_normal(3)
        centre = direction / np.linalg.norm(direction) * 0.55 * radius * rng.uniform() ** (1 / 3)
        density += rng.uniform(0.5, 1.5) * blob(centre, rng.uniform(0.04, 0.09) * box)
    volume = density * mask
    offset = centre_of_mass(volume) - middle
    share = max(0.25, np.linalg.norm(offset) / (0.35 * radius))  # balancing sum / map sum
    weight = share * volume.sum()
    position = -offset / share  # offsets from voxel box // 2, as the blob centres
    for _ in range(50):
        balancing = blob(position, 0.08 * box) * mask
        balanced = volume + balancing * (weight / balancing.sum())
        offset = centre_of_mass(balanced) - middle
        if np.abs(offset).max() < 1e-9:
            return balanced.astype(np.float32)
        position = position - offset * (1.0 + share) / share
    raise RuntimeError(f"could not centre the map (seed {seed}): centre of mass off by {offset} voxels")


def centre_of_mass(volume):
    """(z, y, x) voxel indices of the centre of mass of ``volume``."""
    total = volume.sum(dtype=np.float64)
    return np.array([np.tensordot(volume.sum(axis=tuple(a for a in range(3) if a != k), dtype=np.float64),
                                  np.arange(volume.shape[k]), 1) / total for k in range(3)])


def peer_ball(volume):
    """The peer's ball for ``volume`` (float, data[z, y, x]): ((z, y, x) centre in voxel
    indices, radius in voxels), as ``ZernikeDescriptor::ComputeNormalization`` computes it.

    The peer integrates over voxel cells [i, i + 1), so its centre of gravity, in those
    coordinates, is the centre of mass plus half a voxel. Its radius is twice the root
    mean square, over the non-zero voxels, of (y - cx)^2 + (x - cy)^2 + (z - cz)^2 with
    (cx, cy, cz) that centre of gravity and (x, y, z) voxel indices (x the last axis):
    the half-voxel offset and the swap of cx and cy are the peer's.
    """
    com_z, com_y, com_x = centre_of_mass(volume)
    gx, gy, gz = com_x + 0.5, com_y + 0.5, com_z + 0.5
    index = np.arange(volume.shape[0], dtype=np.float64)
    squared = ((index[None, :, None] - gx) ** 2 + (index[None, None, :] - gy) ** 2) + (index[:, None, None] - gz) ** 2
    nonzero = volume != 0
    return (com_z, com_y, com_x), 2.0 * math.sqrt(squared[nonzero].mean())


def rotated_twin(volume):
    """(padded, twin): ``volume`` padded by one zero plane at the end of each axis (an odd
    box, whose middle is voxel box // 2 of the original), and the same turned exactly
    about that middle: rot90 about x (axes z, y), then about z (axes y, x)."""
    padded = np.pad(volume, ((0, 1),) * 3)
    twin = np.rot90(np.rot90(padded, 1, axes=(0, 1)), 1, axes=(1, 2))
    return padded, np.ascontiguousarray(twin)


def relative_difference(a, b):
    """||a - b|| / ||a|| over all invariants (NaN if either holds NaN or inf)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def agreement_order(peer, ours, order):
    """The highest n such that, for every n' <= n, the invariants F_n'l of the two tools
    (peer's already divided by PEER_INVARIANT_SCALE; rows as ``nl_table(order)``) differ
    by less than AGREEMENT, relative (norm over l); -1 if they differ already at n = 0.
    Invariants that vanish (below VANISHING times the largest: F_11, the dipole, of a map
    centred on its centre of mass) are left out: their difference is only round-off."""
    from zernike3d.maths.indexing import nl_table

    degree = nl_table(order)[:, 0]
    significant = ours > VANISHING * ours.max()
    for n in range(order + 1):
        this = (degree == n) & significant
        if this.any() and not relative_difference(ours[this], peer[this]) < AGREEMENT:  # False for NaN
            return n - 1
    return order


def ensure_peer(venv):
    """The python of ``venv`` with the peer installed (creating the environment and
    installing from PyPI if needed); raises PeerUnavailable."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m, pyzernike._core; print(m.version('zernike-descriptors'))"]

    def installed():
        if not python.exists():
            return False
        result = subprocess.run(probe, capture_output=True, text=True)
        return result.returncode == 0 and result.stdout.strip() == PEER_VERSION

    if installed():
        return python
    print(f"installing {PEER_REQUIREMENT} into {venv} (built from source: about 30 s)", file=sys.stderr)
    for step, command in (("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
                          (f"pip install {PEER_REQUIREMENT}",
                           [str(python), "-m", "pip", "install", "--quiet", PEER_REQUIREMENT, "numpy"])):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            raise PeerUnavailable(f"{step} into {venv} failed (exit {result.returncode}): {lines[-1]}")
    if not installed():
        raise PeerUnavailable(f"{PEER_REQUIREMENT} installed into {venv} but `import pyzernike._core` fails")
    return python


class Peer:
    """The peer's child process (peer_child.py in the peer's environment)."""

    def __init__(self, python, threads):
        environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.process = subprocess.Popen([str(python), str(CHILD_SCRIPT)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=environment)
        self.info = self.ask({"op": "info"})

    def ask(self, request):
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise PeerUnavailable(f"the peer's process ended (exit {self.process.wait()}) during {request}")
        return json.loads(line)

    def fit(self, path, order, dtype):
        """The peer's invariants of the map saved at ``path``."""
        answer = self.ask({"op": "fit", "path": str(path), "order": order, "dtype": dtype})
        return np.asarray(answer["descriptors"], dtype=np.float64)

    def time(self, path, order, dtype, repeats, warm_seconds):
        """Seconds of ``repeats`` back-to-back calls of the peer, timed in the child after
        its warm-up (the rule of :func:`timed_block`)."""
        return self.ask({"op": "time", "path": str(path), "order": order, "dtype": dtype,
                         "repeats": repeats, "warm_seconds": warm_seconds})["seconds"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def timed_block(call, repeats, warm_seconds):
    """Seconds of ``repeats`` back-to-back calls of ``call``, after warm-up calls (at least
    one, and for at least ``warm_seconds``). Same rule as ``peer_child.timed_block``."""
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < warm_seconds:
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def run_case(box, order, args, peer, folder):
    """The figures of one (box, order) case (see the module docstring)."""
    from zernike3d.maths.geometry import BallGeometry
    from zernike3d.maths.invariants import invariants
    from zernike3d.maths.transform import decompose

    maps = np.stack([smooth_map(box, args.seed + k, args.support) for k in range(args.batch)])
    volume = maps[0]
    peer_centre, radius = peer_ball(volume)
    geometry = BallGeometry.for_box(box, 1.0, radius=radius)
    map_path = folder / f"map-{box}.npy"
    np.save(map_path, volume)
    row = {"box": box, "order": order, "ball_radius_voxels": radius, "batch": args.batch,
           "peer_ball_centre_zyx": [float(c) for c in peer_centre], "our_ball_centre_zyx": [box // 2] * 3}

    def ours_one():
        decompose(volume, geometry, order, threads=args.threads)

    def ours_batch():
        decompose(maps, geometry, order, threads=args.threads)

    peer_seconds, ours_seconds, batch_seconds = [], [], []
    for _ in range(args.rounds):
        if peer is not None:
            peer_seconds += peer.time(map_path, order, "float32", args.repeats, WARM_SECONDS)
        ours_seconds += timed_block(ours_one, args.repeats, WARM_SECONDS)
        batch_seconds += [s / args.batch for s in timed_block(ours_batch, args.repeats, WARM_SECONDS)]
    row["ours_seconds"] = min(ours_seconds)
    row["ours_batch_seconds_per_map"] = min(batch_seconds)
    row["all_seconds"] = {"peer": peer_seconds, "ours": ours_seconds, "ours_batch_per_map": batch_seconds}

    padded, twin = rotated_twin(volume)
    twin_geometry = BallGeometry.for_box(box + 1, 1.0, radius=radius)
    ours = invariants(decompose(np.stack([padded, twin]), twin_geometry, order, threads=args.threads), order)
    row["ours_twin_error"] = relative_difference(ours[0], ours[1])
    if peer is not None:
        row["peer_seconds"] = min(peer_seconds)
        row["ratio"] = row["peer_seconds"] / row["ours_seconds"]
        row["ratio_batch"] = row["peer_seconds"] / row["ours_batch_seconds_per_map"]
        for name, data in (("padded", padded), ("twin", twin)):
            np.save(folder / f"{name}-{box}.npy", data)
        for dtype in ("float32", "float64"):
            first = peer.fit(folder / f"padded-{box}.npy", order, dtype)
            second = peer.fit(folder / f"twin-{box}.npy", order, dtype)
            row[f"peer_twin_error_{dtype}"] = relative_difference(first, second)
            row[f"peer_nonfinite_{dtype}"] = int((~np.isfinite(first)).sum() + (~np.isfinite(second)).sum())
            row["peer_invariant_count"] = int(first.size)
            row[f"peer_agrees_to_n_{dtype}"] = agreement_order(first / PEER_INVARIANT_SCALE, ours[0], order)
        row["peer_vs_ours"] = relative_difference(ours[0], first / PEER_INVARIANT_SCALE)
    return row


def format_error(row, key):
    if key not in row:
        return "n/a"
    text = f"{row[key]:.1e}".replace("nan", "NaN")
    bad = row.get(key.replace("twin_error", "nonfinite"), 0)
    if bad:
        text += f" ({bad} of {2 * row['peer_invariant_count']} NaN/inf)"
    return text


def markdown_table(rows):
    header = ["box", "order", "peer s", "ours s", f"ours s/map (batch {rows[0]['batch']})", "peer/ours",
              "peer/ours (batch)", "twin err peer f32", "twin err peer f64", "twin err ours", "peer = ours to n (f32, f64)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        peer = "peer_seconds" in row
        cells = [row["box"], row["order"], f"{row['peer_seconds']:.3g}" if peer else "n/a",
                 f"{row['ours_seconds']:.3g}", f"{row['ours_batch_seconds_per_map']:.3g}",
                 f"{row['ratio']:.2f}" if peer else "n/a", f"{row['ratio_batch']:.2f}" if peer else "n/a",
                 format_error(row, "peer_twin_error_float32"), format_error(row, "peer_twin_error_float64"),
                 f"{row['ours_twin_error']:.1e}", f"{row['peer_agrees_to_n_float32']}, {row['peer_agrees_to_n_float64']}" if peer else "n/a"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def parse_case(text):
    try:
        box, order = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not BOX:ORDER (e.g. 64:20)") from None
    if box < 16 or order < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: BOX must be >= 16 and ORDER >= 1")
    return box, order


def source_commit():
    result = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "describe", "--always", "--dirty"],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", type=parse_case, default=[(64, 20), (64, 30), (64, 40)],
                        metavar="BOX:ORDER", help="cases to run (default: 64:20 64:30 64:40)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed calls per tool, case and round, back to back after warm-up (default 5)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds per case, each timing the peer then zernike3d; the best call counts (default 2)")
    parser.add_argument("--batch", type=int, default=16, help="maps in the batched decompose call (default 16)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both tools (default: numba's default, all cores)")
    parser.add_argument("--support", type=float, default=0.3,
                        help="radius of the maps' non-zero region, as a fraction of the box (default 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first map (default 0)")
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_PEER_VENV,
                        help=f"virtual environment for the peer (default {DEFAULT_PEER_VENV})")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if min(args.repeats, args.rounds, args.batch) < 1:
        parser.error("--repeats, --rounds and --batch must be >= 1")
    if not 0.05 <= args.support <= 0.45:
        parser.error("--support must be between 0.05 and 0.45 (the support must fit in the box)")

    import numba

    if args.threads:
        numba.set_num_threads(args.threads)
    args.threads = numba.get_num_threads()

    peer = None
    peer_info = {"requirement": PEER_REQUIREMENT, "venv": str(args.peer_venv)}
    try:
        peer = Peer(ensure_peer(args.peer_venv), args.threads)
        peer_info.update(peer.info)
    except (PeerUnavailable, OSError) as error:
        peer_info["error"] = str(error)
        print(f"peer unavailable: {error}; reporting zernike3d's figures only", file=sys.stderr)

    load_before = os.getloadavg()
    if load_before[0] > 0.25 * (os.cpu_count() or 1):
        print(f"note: 1-minute load average {load_before[0]:.2f} on {os.cpu_count()} cores before the run: if other "
              "work is still running, the timings are not an idle machine's", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as folder:
        for box, order in args.cases:
            try:
                row = run_case(box, order, args, peer, Path(folder))
            except PeerUnavailable as error:
                print(f"peer failed at box {box}, order {order}: {error}; zernike3d's figures only from here",
                      file=sys.stderr)
                peer_info["error"] = f"box {box}, order {order}: {error}"
                peer = None
                row = run_case(box, order, args, peer, Path(folder))
            rows.append(row)
            print(f"done {box}:{order}", file=sys.stderr)
    if peer is not None:
        peer.close()
    load_after = os.getloadavg()

    print(markdown_table(rows))
    print(f"\nthreads {args.threads} (OMP_NUM_THREADS of the peer the same); best of {args.rounds} x {args.repeats}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; zernike3d {source_commit()}; "
          f"peer {peer_info.get('version', 'unavailable')}")
    if args.out:
        result = {"cases": rows, "threads": args.threads, "repeats": args.repeats, "rounds": args.rounds, "support": args.support,
                  "seed": args.seed, "peer": peer_info, "zernike3d_commit": source_commit(),
                  "load_average_before": load_before, "load_average_after": load_after,
                  "cpu_count": os.cpu_count()}
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
