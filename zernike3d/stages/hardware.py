"""Describe this machine: GPUs, CUDA, CuPy, CPU cores, free RAM and disk.

Missing pieces (no GPU, no NVML, no CuPy) are reported in one line each; the command
still succeeds, because the CPU placements need none of them.
"""

from __future__ import annotations

import dataclasses
import json

from zernike3d.scheduling.hardware import describe, probe
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache", default=".", help="directory of the basis store, whose free disk is reported"
    )
    parser.add_argument("--json", action="store_true", help="print the description as JSON")


def run(args: argparse.Namespace) -> int:
    machine = probe(args.cache)
    if args.json:
        print(json.dumps(dataclasses.asdict(machine), indent=2))
    else:
        print("\n".join(describe(machine)))
    return 0
