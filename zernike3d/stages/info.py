"""Summary of a moments file or dataset bundle: volumes, geometry, size, norms or particles.

A moments file: volumes, coefficients, order, geometry, size, Parseval norms. A dataset
bundle (written by `zernike3d import` / `preprocess`): its volumes, box and voxel size,
particles and the range of each latent, and the steps that made it.
"""

from __future__ import annotations
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from zernike3d.io.dataset import Dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.npz", help="moments file or dataset bundle")


def run(args: argparse.Namespace) -> int:
    kind = _format_of(args.file)
    if kind == "zernike3d-dataset":
        from zernike3d.io.dataset import Dataset

        print(describe_dataset(Dataset.load(args.file)))
    else:  # a moments file, or something the moments reader explains it is not
        from zernike3d.moments import Moments

        print(Moments.load(args.file).stats())
    return 0


def _format_of(path):
    """The ``format`` entry of a zernike3d ``.npz``, reading nothing else ('' if none)."""
    from zernike3d.io.npz import open_npz

    with open_npz(path, "a .npz file; expected a zernike3d moments file or dataset bundle") as members:
        return members.scalar("format", "U") if "format" in members else ""


def describe_dataset(dataset: Dataset) -> str:
    """A short multi-line summary of a :class:`~zernike3d.io.dataset.Dataset`."""
    import numpy as np

    lines = [
        f"Dataset of {len(dataset.names)} volume(s): {', '.join(dataset.names)}",
        f"  geometry      box {dataset.box} voxels of {dataset.voxel_size:g} Å "
        f"({dataset.box * dataset.voxel_size:g} Å), origin ({', '.join(f'{v:g}' for v in dataset.origin)}) Å",
    ]
    if dataset.n_components:
        lines.append(f"  particles     {len(dataset.uid)} with {dataset.n_components} latents each")
        for k, column in enumerate(dataset.latents.T):
            low, median, high = np.percentile(column, [5, 50, 95])
            lines.append(f"    component_{k}: 5%/50%/95% at {low:.4g} / {median:.4g} / {high:.4g}")
    else:
        lines.append("  particles     none (a single map)")
    for step in dataset.provenance:
        inputs = ", ".join(str(i.get("path")) for i in step.get("inputs", []))
        lines.append(f"  step          {step.get('stage')}" + (f" of {inputs}" if inputs else ""))
    return "\n".join(lines)
