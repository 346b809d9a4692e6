"""Build (or reuse) the cached basis of an input's geometry in a zarr store.

The store ``CACHE/<key>.zarr`` holds the grid tables and the radial table of the ball
that INPUT (a dataset bundle .npz, or an MRC map) defines with --radius / --center, up
to --order (or the order that --resolution Å needs, chosen as `zernike3d decompose`
chooses it, so both stages agree). A complete, checked store is reused; a missing, damaged or stale one is
rebuilt. --out records the key, the store path and the geometry in a small JSON file for
the stages that follow. Several jobs may ask for the same store at once: one builds it,
the others wait and reuse it.
"""

from __future__ import annotations

import json
from pathlib import Path

from zernike3d.errors import InputError
from zernike3d.io.atomic import atomic_path, json_kind
from zernike3d.stages import common
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

#: what --out may replace: an earlier basis.json
RECORD_OUTPUT = json_kind(("key", "store", "geometry", "order"), "a basis.json written by `zernike3d basis`")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="dataset bundle (.npz) or map (.mrc)")
    common.add_order_arguments(parser)
    parser.add_argument("--cache", required=True, metavar="DIR", help="directory of the basis stores")
    parser.add_argument("--out", required=True, metavar="basis.json", help="record of the store to write")
    common.add_geometry_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from zernike3d.io.basis_store import basis_record, ensure_store

    common.check_outputs([args.input], [(args.out, RECORD_OUTPUT)])
    if Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise InputError(args.cache, "is a file; --cache names the folder of the basis stores")
    box, voxel_size = input_box(args.input)
    geometry = common.ball_geometry(
        box, voxel_size, common.parse_radius(args.radius), common.parse_center(args.center),
        sources={"voxel_size": args.input},
    )
    order = common.order_for(args, geometry)
    result = ensure_store(args.cache, geometry, order)
    with atomic_path(args.out, RECORD_OUTPUT) as tmp:
        Path(tmp).write_text(json.dumps(basis_record(result, geometry, order), indent=2) + "\n")
    action = "built" if result.built else "reused"
    print(f"{action} {result.path} (box {box}, voxel {voxel_size:g} Å, order {order}); wrote {args.out}")
    return 0


def input_box(path: str | Path) -> tuple[int, float]:
    """(box, voxel size in Å) of a dataset bundle or an MRC map."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        from zernike3d.io.dataset import Dataset

        dataset = Dataset.load(path)
        return dataset.box, dataset.voxel_size
    if suffix in (".mrc", ".map"):
        from zernike3d.io.mrc import read_map

        mapfile = read_map(path)
        return mapfile.data.shape[0], mapfile.voxel_size
    raise InputError(path, "expected a dataset bundle (.npz) or a map (.mrc, .map)")
