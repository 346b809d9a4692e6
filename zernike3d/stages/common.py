"""Options shared by several stages, parsed the same way everywhere."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from typing import TYPE_CHECKING, overload

from zernike3d.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path
    from typing import Any, TypeVar

    from zernike3d.io.atomic import OutputKind
    from zernike3d.maths.geometry import BallGeometry

    Number = TypeVar("Number", int, float)  # the kind of number an option parses to


def check_outputs(inputs: Iterable[str | Path | None], outputs: Iterable[tuple[str | Path | None, OutputKind]]) -> None:
    """Refuse, before any work, outputs that would destroy an input or a stranger's file.

    inputs: the paths the stage reads (None entries are skipped); outputs: ``(path,
    kind)`` pairs (:class:`zernike3d.io.atomic.OutputKind`; None paths are skipped). An
    output may not be an input (also through a symbolic or hard link) nor a folder that
    holds one, since writing it replaces that path; outputs may not overlap each other;
    whatever is at an output path must be
    an earlier output of its kind (:func:`zernike3d.io.atomic.check_replaceable`); and
    the folder it goes into (or its nearest existing parent) must be writable.
    Raises :class:`InputError` naming the output path. Then an earlier output folder that
    lacks some of its files is removed (:func:`zernike3d.io.atomic.discard_incomplete`).
    """
    import os
    from pathlib import Path

    from zernike3d.io.atomic import check_replaceable, discard_incomplete

    read = [(str(p), Path(p).resolve()) for p in inputs if p is not None]
    written: list[tuple[str, Path]] = []
    for path, kind in outputs:
        if path is None:
            continue
        target = Path(path).resolve()
        for name, source in read:
            if source == target or (source.exists() and target.exists() and os.path.samefile(source, target)):
                raise InputError(path, f"is the input {name}; writing it would destroy the input (choose another output path)")
            if source.is_relative_to(target):
                raise InputError(path, f"holds the input {name}; writing it would replace it (choose another output path)")
        if Path.cwd().resolve().is_relative_to(target):
            raise InputError(path, "is the current folder or holds it; choose another output path")
        for name, other in written:
            if other.is_relative_to(target) or target.is_relative_to(other):
                raise InputError(path, f"overlaps the other output {name}; give each output its own path")
        written.append((str(path), target))
        check_replaceable(path, kind)
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(path, f"cannot write into {folder} (a read-only file system or no permission); "
                                   "choose a writable folder")
    for path, kind in outputs:  # what remains of a run Snakemake cleaned up is no run's output
        if path is not None:
            discard_incomplete(path, kind)


def require_memory(option: str, nbytes: int, what: str) -> None:
    """Raise :class:`InputError` naming ``option`` if ``nbytes`` exceed the memory this
    machine has available now (psutil), before anything is allocated."""
    import psutil

    available = psutil.virtual_memory().available
    if nbytes > available:
        raise InputError(option, f"{what}: at least {nbytes / 2**30:.3g} GiB of memory needed, "
                                 f"{available / 2**30:.3g} GiB available; ask for less")


def require_box_memory(option: str, geometry: BallGeometry, maps: int = 1) -> None:
    """:func:`require_memory` for ``maps`` float64 maps of the box of ``geometry`` plus
    building its grid tables (:func:`zernike3d.maths.geometry.grid_build_bytes`)."""
    from zernike3d.maths.geometry import grid_build_bytes

    box = geometry.box
    require_memory(option, maps * 8 * box**3 + grid_build_bytes(geometry),
                   f"a {box}-voxel box ({maps} map(s) and the grid tables)" if maps else f"the grid tables of a {box}-voxel box")


def add_geometry_arguments(parser: argparse.ArgumentParser) -> None:
    """``--radius`` and ``--center``: where the unit ball sits in the box."""
    from zernike3d.maths.geometry import DEFAULT_RADIUS

    parser.add_argument(
        "--radius",
        default=DEFAULT_RADIUS,
        help="ball radius in Å, or 'inscribed' (half the box edge, default) or "
        "'circumscribed' (half the box diagonal: every voxel counts, as the original tool)",
    )
    parser.add_argument(
        "--center",
        default=None,
        help="ball centre x,y,z in Å from the centre of voxel [0,0,0] "
        "(default: voxel index box//2 on each axis, the rotation centre of cryoSPARC/RELION)",
    )


def at_least(kind: Callable[[str], Number], least: Number, strictly: bool = False) -> Callable[[str], Number]:
    """An argparse ``type``: ``kind(text)`` refused unless it is >= ``least`` (> with
    ``strictly``)."""
    import argparse

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value > least if strictly else value >= least):  # NaN too
            raise argparse.ArgumentTypeError(f"must be {'more than' if strictly else 'at least'} {least}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


class _RenamedOption(argparse.Action):
    """The spelling an option had before a rename: stores into the new option's ``dest``
    and warns (FutureWarning, the warnings channel every stage's warnings take)."""

    def __init__(self, option_strings, dest, new_name="", **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(f"{option_string} is now {self.new_name}; the old spelling works for one more release",
                      FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def add_renamed_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, new: str,
                       **kwargs) -> None:
    """Keep ``old``, the spelling of option ``new`` before it was renamed, for one
    release: hidden from --help, it sets ``new``'s value (``kwargs``: its ``type``) and
    prints one deprecation line. Add it after ``new``."""
    parser.add_argument(old, dest=new.lstrip("-").replace("-", "_"), action=_RenamedOption, new_name=new,
                        help=argparse.SUPPRESS, **kwargs)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=at_least(int, 1), default=None, help="CPU threads (default: all cores)"
    )


def add_subset_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--subsets (each ``what``'s particles as cryoSPARC .cs/.csg), --particles-cs and
    --latents-only-subsets, as `cluster` and `match` share them."""
    parser.add_argument("--subsets", action="store_true", help=f"write each {what}'s particles as a cryoSPARC .cs/.csg")
    parser.add_argument("--particles-cs", metavar="P.cs",
                        help="the job's particles .cs (default: the one the dataset was imported from)")
    parser.add_argument("--latents-only-subsets", action="store_true",
                        help="write subsets even from a particles .cs holding only uid and latents (a job's own output "
                        "without its passthrough file): they then lack the particle images, CTF and poses")


def parse_radius(text: str | None) -> float | str | None:
    """'inscribed' | 'circumscribed' | a positive number of Å."""
    if text is None or text in ("inscribed", "circumscribed"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise InputError("--radius", f"expected Å, 'inscribed' or 'circumscribed', got {text!r}")
    if not (math.isfinite(value) and value > 0):
        raise InputError("--radius", f"must be a finite positive number of Å, got {text!r}")
    return value


@overload
def parse_center(text: str, option: str = ..., unit: str = ...) -> tuple[float, ...]: ...


@overload
def parse_center(text: None, option: str = ..., unit: str = ...) -> None: ...


def parse_center(text: str | None, option: str = "--center", unit: str = "Å") -> tuple[float, ...] | None:
    """'x,y,z' in Å (or ``unit``) -> (x, y, z) finite floats, or None; InputError naming
    ``option``."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(option, f"expected x,y,z in {unit}, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise InputError(option, f"x, y and z must be finite numbers of {unit}, got {text!r}")
    return values


def parse_voxel_size(value: float | None, source: str = "--voxel-size") -> float | None:
    """A voxel size option in Å: None (not given) or a finite positive number."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InputError(source, f"must be a finite positive number of Å, got {value}")
    return value


def ball_geometry(box: int, voxel_size: float, radius: float | str | None = None,
                  center: Sequence[float] | None = None, sources: Mapping[str, str] | None = None) -> BallGeometry:
    """:meth:`BallGeometry.for_box`, with a geometry that has no voxel in its ball, or an
    infinity, refused as :class:`InputError` naming the option (``--radius``,
    ``--center``) or what ``sources`` maps the field to (e.g. ``{"voxel_size": path}``)."""
    from zernike3d.maths.geometry import BallGeometry, GeometryError

    names = {"box": "--box", "voxel_size": "--voxel-size", "radius": "--radius", "center": "--center"}
    names.update(sources or {})
    try:
        geometry = BallGeometry.for_box(box, voxel_size, radius=radius, center=center)
    except GeometryError as err:
        raise InputError(names[err.field], str(err)) from None
    farthest = BallGeometry.for_box(box, voxel_size, radius="circumscribed", center=geometry.center).radius
    if geometry.radius > 1.01 * farthest:
        print(f"warning: {names['radius']} {geometry.radius:g} Å reaches beyond every voxel (the farthest is "
              f"{farthest:.4g} Å from the centre; the box is {box} voxels of {voxel_size:g} Å): the ball's "
              "empty shell costs resolution at each order. Is the radius in voxels? It is in Å", file=sys.stderr)
    return geometry


def parse_order(value: int, source: str = "--order") -> int:
    """``value`` if it is an order whose moments of one map (16 bytes each, complex
    float64) fit in this machine's available memory; :class:`InputError` naming
    ``source`` before anything of that size is built."""
    from zernike3d.maths.indexing import coefficient_count

    if value < 0:
        raise InputError(source, f"order must be >= 0, got {value}")
    count = coefficient_count(value)
    require_memory(source, 16 * count, f"order {value} has {count:.3g} moments per map")
    return value


def add_order_arguments(parser: argparse.ArgumentParser) -> None:
    """``--order`` or ``--resolution`` (exactly one): how far the expansion goes."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--order", type=int, default=None,
        help="highest Zernike order n; it reaches about 1.81 pi R / (n + 2.5) Å (FSC 0.5 against the map)",
    )
    group.add_argument(
        "--resolution", type=float, default=None, metavar="Å",
        help="the smallest order whose expansion reaches this resolution (FSC 0.5 against the map "
        "inside the ball), chosen from the geometry; at least 2 voxels (Nyquist)",
    )


def order_for(args: argparse.Namespace, geometry: BallGeometry) -> int:
    """The order that ``--order`` or ``--resolution`` asks for in ``geometry``'s ball.

    Prints the order and the resolution it is expected to reach (the relation of
    :mod:`zernike3d.maths.resolution`), and warns on stderr when the order exceeds what
    the voxels resolve. A resolution finer than Nyquist (two voxels) is refused.
    """
    from zernike3d.maths.resolution import chosen_order, expected_resolution, max_useful_order, nyquist, resolves

    radius, voxel_size = geometry.radius, geometry.voxel_size
    if args.resolution is None:
        order = parse_order(args.order)
        why = f"order {order}"
    else:
        if not resolves(args.resolution, voxel_size):
            raise InputError("--resolution", f"{args.resolution:g} Å is finer than the voxels resolve "
                                             f"(Nyquist: 2 × {voxel_size:g} Å = {nyquist(voxel_size):g} Å)")
        order = chosen_order(None, args.resolution, radius)
        why = f"order {order} chosen for --resolution {args.resolution:g} Å"
    useful = max_useful_order(radius, voxel_size)
    if order <= useful:
        print(f"{why}: expected resolution {expected_resolution(order, radius):.2f} Å "
              f"(FSC 0.5 against the map inside the ball, R = {radius:g} Å)")
    else:
        print(f"{why}: expected resolution {nyquist(voxel_size):g} Å, the voxels' Nyquist limit")
        print(
            f"warning: order {order} exceeds what the sampling resolves (order {useful} already reaches "
            f"Nyquist, {nyquist(voxel_size):g} Å, for R = {radius:g} Å and {voxel_size:g} Å voxels); "
            "the highest orders fit noise",
            file=sys.stderr,
        )
    return order


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--gpu-id``, ``--max-memory``: where the transform runs."""
    group = parser.add_argument_group("hardware (default: the planner's choice; see `zernike3d plan`)")
    group.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto",
        help="auto: the fastest placement that fits; gpu: fail if no usable GPU",
    )
    group.add_argument(
        "--gpu-id", type=int, default=None,
        help="GPU index as `zernike3d hardware` and nvidia-smi number them (default: the one with most free memory)",
    )
    group.add_argument("--max-memory", type=at_least(float, 0, strictly=True), default=None, metavar="GiB", help="cap on host memory")


def transform_options(args: argparse.Namespace, geometry: BallGeometry, order: int, n_volumes: int, stage: str,
                      basis_path: str | Path | None = None) -> dict[str, Any]:
    """Plan the transform for this machine: keyword arguments for decompose/reconstruct,
    with the basis placed as planned (read from the store ``basis_path`` when given).

    Prints the chosen placement in one line. A job given GPUs it cannot use (no CuPy, no
    driver, a scheduler's placeholder device) says so in one line and runs on the CPU,
    unless ``--device gpu`` demanded the GPU, which is then an error.
    """
    import os

    from zernike3d.maths.basis import Basis
    from zernike3d.scheduling.hardware import cuda_ordinal, probe
    from zernike3d.scheduling.planner import plan_for, radial_table_source

    machine = probe()
    device = None if args.device == "auto" else args.device
    if args.device == "gpu" and not (machine.gpus and machine.cupy_usable):
        raise InputError("--device gpu", "no usable GPU: " + "; ".join(machine.notes or ("none found",)))
    granted = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if granted and granted != "-1" and not (machine.gpus and machine.cupy_usable):
        notes = "; ".join(machine.notes) or "no CUDA device reachable"
        print(f"zernike3d: GPU(s) {granted} were granted but cannot be used ({notes}); running on the CPU", file=sys.stderr)
    max_bytes = None if args.max_memory is None else int(args.max_memory * 2**30)
    plan = plan_for(
        geometry.box, order, n_volumes=n_volumes, voxel_size=geometry.voxel_size, radius=geometry.radius,
        center=geometry.center, stage=stage, machine=machine, device=device, gpu_id=args.gpu_id,
        threads=args.threads, max_memory_bytes=max_bytes,
    )
    if plan.choice is None:
        raise InputError("memory" if max_bytes is None else "--max-memory", f"no placement fits: {plan.why_nothing_fits()}")
    choice = plan.choice
    print(f"plan: {choice.placement} (predicted {choice.seconds:.2g} s, {choice.host_bytes / 2**20:.0f} MiB host"
          + (f", {choice.gpu_bytes / 2**20:.0f} MiB GPU)" if choice.gpu_bytes else ")"))
    options = choice.transform_options()
    read = basis_path is not None and options["radial"] != "recompute"
    if basis_path is not None and not read:
        print(f"basis: radial table recomputed per block ({choice.placement} is the fastest placement); "
              f"{basis_path} not read")
    if read and options["radial"] == "memory":
        read, why = radial_table_source(geometry.grid, order)
        print(f"basis: radial table {'read from ' + str(basis_path) if read else 'recomputed'}: {why}")
    if read:
        assert basis_path is not None  # read only when given
        from zernike3d.io.basis_store import load_basis  # zarr: only when the store is read

        # the planner has built the grid tables: only the radial table is read
        basis = load_basis(basis_path, geometry, order, radial=options["radial"], grid=geometry.grid)
    else:
        basis = Basis.build(geometry, order, radial_table=options["radial"] == "memory")
    return {
        "basis": basis,
        "backend": options["backend"],
        "gpu_id": None if plan.gpu_id is None else cuda_ordinal(plan.gpu_id),
        "radial_resident": choice.placement != "gpu-streamed",
        "max_workspace": options["max_workspace"],
        "threads": args.threads,
    }


#: file names the workflow gives every dataset's bundles (results/<dataset>/NAME.npz)
_WORKFLOW_BUNDLES = ("dataset", "preprocessed")


def dataset_name(path: str) -> str:
    """The name a figure gives the dataset bundle at ``path``: its file's stem, or the
    folder's name for the workflow's results/<dataset>/preprocessed.npz (and dataset.npz)."""
    from pathlib import Path

    bundle = Path(path)
    if bundle.stem in _WORKFLOW_BUNDLES and bundle.resolve().parent.name:
        return bundle.resolve().parent.name
    return bundle.stem
