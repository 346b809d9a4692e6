"""Crop, bin and mask a dataset: the same operation on the base map and every component.

Steps run in this order, each only if asked for, each recorded in the provenance:
  crop   --crop N: a box of N voxels whose centre voxel (N//2) is --center, which is
         x,y,z in Å from the centre of voxel [0,0,0] of the input, or `com` (centre of
         mass of the positive density of the BASE map), or a ChimeraX marker file
         (.cmm, one marker; its scene coordinates minus the map origin). Default centre:
         voxel N_in//2. --center without --crop re-centres in a box of the same size.
         The point is rounded to the nearest voxel; outside the input, zeros are padded
         (with a warning). The origin moves with the box.
  bin    --bin K: Fourier cropping to N/K voxels (N divisible by K), voxel size x K;
         density values keep their magnitude and the mean is preserved.
  mask   --mask sphere: a soft sphere about voxel N//2 of radius --mask-radius Å
         (default: half the box minus the edge) with a raised-cosine edge of --mask-edge Å
         (default 3 voxels). --mask FILE.mrc: a mask of the final box, values in [0, 1],
         used as it is; with --mask-edge E > 0 it is binarised at 0.5 and given an
         E Å cosine edge outside.
With none of them, the dataset is copied unchanged.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from zernike3d.errors import InputError
from zernike3d.io import dataset as dataset_file
from zernike3d.io.cmm import read_single_marker
from zernike3d.io.dataset import Dataset, input_record, provenance_step
from zernike3d.io.mrc import read_map
from zernike3d.maths.preprocessing import (
    MIN_BINNED_BOX,
    binning_problem,
    center_of_mass,
    crop_box,
    fourier_bin,
    soft_sphere_mask,
    soften_mask,
)
from zernike3d.stages import common
from zernike3d.stages.common import parse_center

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from zernike3d.io.dataset import Dataset
    from zernike3d.io.mrc import MapFile

DEFAULT_EDGE_VOXELS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset .npz from `zernike3d import`")
    parser.add_argument("--out", required=True, metavar="PREP.npz", help="output dataset")
    parser.add_argument("--crop", type=int, metavar="N", help="crop (or pad) to N voxels")
    parser.add_argument("--center", metavar="x,y,z|com|FILE.cmm",
                        help="crop centre: Å from voxel [0,0,0], base-map centre of mass, "
                        "or a ChimeraX marker file (default: the box centre voxel N//2)")
    parser.add_argument("--bin", type=int, metavar="K", help="Fourier-bin by an integer factor")
    parser.add_argument("--mask", metavar="sphere|FILE.mrc", help="multiply by a soft mask")
    parser.add_argument("--mask-radius", type=float, metavar="Å",
                        help="sphere radius in Å (default: half the box minus the edge)")
    parser.add_argument("--mask-edge", type=float, metavar="Å",
                        help=f"cosine edge width in Å (sphere default: {DEFAULT_EDGE_VOXELS} "
                        "voxels; a mask file default: 0, used as it is)")


def run(args: argparse.Namespace) -> int:
    inputs = [args.dataset, _is_file_mask(args.mask) and args.mask or None,
              args.center if args.center and args.center.lower().endswith(".cmm") else None]
    common.check_outputs(inputs, [(args.out, dataset_file.OUTPUT)])
    dataset = Dataset.load(args.dataset)
    source = input_record(args.dataset)
    _check_options(args, dataset.box)
    if args.crop is not None:
        common.require_memory("--crop", len(dataset.maps) * 4 * args.crop**3,
                              f"cropping {len(dataset.maps)} map(s) to {args.crop}³ voxels (float32)")
    crop = args.crop if args.crop is not None else (dataset.box if args.center else None)
    final_box = (crop or dataset.box) // (args.bin or 1)
    mask_file = _read_mask_file(args.mask, final_box) if _is_file_mask(args.mask) else None

    done = []
    if crop is not None:
        dataset = crop_dataset(dataset, crop, args.center, source)
        done.append("cropped")
    if args.bin is not None:
        dataset = bin_dataset(dataset, args.bin, source)
        done.append(f"binned by {args.bin}")
    if args.mask == "sphere":
        dataset = sphere_mask_dataset(dataset, args.mask_radius, args.mask_edge, source)
        done.append("masked")
    elif mask_file is not None:
        dataset = file_mask_dataset(dataset, mask_file, args.mask, args.mask_edge, source)
        done.append("masked")
    dataset.save(args.out)
    print(f"wrote {args.out}: {', '.join(done) or 'unchanged copy'}; box {dataset.box}, "
          f"voxel {dataset.voxel_size:.4g} Å")
    return 0


def crop_dataset(dataset: Dataset, box: int, center_text: str | None, source: dict[str, str]) -> Dataset:
    """Crop every map to ``box`` voxels around the point ``center_text`` names (see module doc)."""
    inputs = [source]
    if center_text is None:
        center_A: tuple[float, ...] = ((dataset.box // 2) * dataset.voxel_size,) * 3
    elif center_text == "com":
        try:
            center_A = center_of_mass(dataset.maps[0], dataset.voxel_size)
        except ValueError as err:
            raise InputError(source["path"], f"--center com: {err}") from None
    elif center_text.lower().endswith(".cmm"):
        marker = read_single_marker(center_text)
        center_A = tuple(m - o for m, o in zip(marker, dataset.origin))
        inputs.append(input_record(center_text))
    else:
        center_A = parse_center(center_text)
    center_zyx = tuple(int(np.rint(c / dataset.voxel_size)) for c in center_A[::-1])
    if not all(-box < c - box // 2 < dataset.box for c in center_zyx):
        raise InputError(center_text if center_text is not None and center_text.lower().endswith(".cmm") else "--center",
                         f"a {box}-voxel box around ({', '.join(f'{c:g}' for c in center_A)}) Å lies wholly "
                         f"outside the {dataset.box}-voxel input: it would hold only zeros")
    maps, start_zyx, padded = crop_box(dataset.maps, center_zyx, box)
    if padded:
        warnings.warn(f"crop: a {box}-voxel box around voxel (z, y, x) = {center_zyx} reaches "
                      f"outside the {dataset.box}-voxel input; the missing part is zero-padded",
                      stacklevel=2)
    origin = tuple(o + s * dataset.voxel_size for o, s in zip(dataset.origin, start_zyx[::-1]))
    parameters = {"box": box, "center": center_text or "box centre", "center_A": list(center_A),
                  "center_voxel_zyx": list(center_zyx), "start_voxel_zyx": list(start_zyx),
                  "padded": padded}
    step = provenance_step("preprocess", parameters, inputs, operation="crop")
    return dataset.with_step(step, maps=maps, origin=origin)


def bin_dataset(dataset: Dataset, factor: int, source: dict[str, str]) -> Dataset:
    """Fourier-bin every map by ``factor``; voxel size x factor, origin unchanged. Warns
    when the binned box's centre voxel (box // 2, where the ball goes by default) is not
    where the input's was."""
    box = dataset.box // factor
    moved = ((box // 2) * factor - dataset.box // 2) * dataset.voxel_size
    if moved:
        below = dataset.box - dataset.box % (2 * factor)  # boxes that bin to an even box
        warnings.warn(f"binning box {dataset.box} by {factor} gives box {box}, whose centre voxel lies {abs(moved):g} Å "
                      f"from the input's (the default ball centre moves with it); crop to {below} or "
                      f"{below + 2 * factor} first to keep it", stacklevel=2)
    parameters = {"factor": factor, "box_in": dataset.box, "box_out": box}
    step = provenance_step("preprocess", parameters, [source], operation="bin")
    return dataset.with_step(step, maps=fourier_bin(dataset.maps, factor),
                             voxel_size=dataset.voxel_size * factor)


def sphere_mask_dataset(dataset: Dataset, radius: float, edge: float, source: dict[str, str]) -> Dataset:
    """Multiply every map by a soft sphere about voxel box//2 (radius, edge in Å)."""
    if edge is None:
        edge = DEFAULT_EDGE_VOXELS * dataset.voxel_size
    half_box = dataset.box * dataset.voxel_size / 2.0
    if radius is None:
        radius = half_box - edge
    if not radius > 0:
        raise InputError("--mask-radius", f"the sphere radius must be positive, got {radius:.4g} Å "
                         f"(box half-width {half_box:.4g} Å, edge {edge:.4g} Å)")
    if radius + edge > half_box + 1e-6:
        warnings.warn(f"mask: radius {radius:.4g} Å + edge {edge:.4g} Å exceeds the box "
                      f"half-width {half_box:.4g} Å; the sphere is cut by the box faces",
                      stacklevel=2)
    mask = soft_sphere_mask(dataset.box, dataset.voxel_size, radius, edge)
    parameters = {"kind": "sphere", "radius_A": radius, "edge_A": edge,
                  "center_voxel_zyx": [dataset.box // 2] * 3}
    step = provenance_step("preprocess", parameters, [source], operation="mask")
    return dataset.with_step(step, maps=dataset.maps * mask)


def file_mask_dataset(dataset: Dataset, mask_file: MapFile, mask_path: str | Path, edge: float,
                      source: dict[str, str]) -> Dataset:
    """Multiply every map by a user mask (already checked to have the dataset's box)."""
    if not np.isclose(mask_file.voxel_size, dataset.voxel_size, rtol=1e-3):
        warnings.warn(f"{mask_path}: voxel size {mask_file.voxel_size:.4g} Å differs from the "
                      f"data's {dataset.voxel_size:.4g} Å; applied voxel for voxel", stacklevel=2)
    edge = edge or 0.0
    mask = np.clip(mask_file.data, 0.0, 1.0)
    if edge > 0:
        mask = soften_mask(mask, dataset.voxel_size, edge)
    parameters = {"kind": "file", "edge_A": edge}
    step = provenance_step("preprocess", parameters, [source, input_record(mask_path)],
                           operation="mask")
    return dataset.with_step(step, maps=dataset.maps * mask)


def _is_file_mask(mask):
    return mask is not None and mask != "sphere"


def _read_mask_file(path, box):
    if not str(path).lower().endswith((".mrc", ".map")):
        raise InputError("--mask", f"expected 'sphere' or an .mrc mask file, got {path!r}")
    mask = read_map(path)
    if mask.data.shape[0] != box:
        raise InputError(path, f"mask box {mask.data.shape[0]} differs from the data's box "
                         f"after crop and bin, {box}")
    low, high = float(mask.data.min()), float(mask.data.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise InputError(path, f"mask values must lie in [0, 1], found {low:.4g} to {high:.4g}")
    return mask


def _check_options(args, box):
    """Every option error before any work is done."""
    if args.crop is not None and args.crop < 1:
        raise InputError("--crop", f"box must be at least 1 voxel, got {args.crop}")
    if args.bin is not None:
        if args.bin < 1:
            raise InputError("--bin", f"factor must be a positive integer, got {args.bin}")
        size = args.crop or box
        broken = binning_problem(size, args.bin)
        if broken == "too small":
            raise InputError("--bin", f"box {size} binned by {args.bin} leaves {size // args.bin} voxels; "
                             f"a map needs at least {MIN_BINNED_BOX}")
        if broken == "not divisible":
            raise InputError("--bin", f"box {size} is not divisible by {args.bin}; crop to "
                             f"{size - size % args.bin} or {size + args.bin - size % args.bin} "
                             "first (--crop)")
    if args.center not in (None, "com") and not args.center.lower().endswith(".cmm"):
        parse_center(args.center)
    if args.mask is None and (args.mask_radius is not None or args.mask_edge is not None):
        raise InputError("--mask-radius/--mask-edge", "need --mask")
    if _is_file_mask(args.mask) and args.mask_radius is not None:
        raise InputError("--mask-radius", "applies to --mask sphere only")
    if args.mask_edge is not None and args.mask_edge < 0:
        raise InputError("--mask-edge", f"must be >= 0 Å, got {args.mask_edge}")
