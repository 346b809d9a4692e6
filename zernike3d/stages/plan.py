"""Predict memory and time of each placement of a transform and pick the fastest that fits.

Placements: gpu-resident, gpu-streamed (CuPy), cpu-ram, cpu-zarr, cpu-onthefly (numba);
see zernike3d/scheduling/planner.py. The table lists for each the predicted peak host and GPU
memory, the seconds and the m block it would use, and whether it fits in 80% of what is
free. CPU times use rates measured on a reference machine unless this one was
calibrated (--calibrate); GPU times are datasheet leads, not measurements.
"""

from __future__ import annotations

import dataclasses

from zernike3d.errors import InputError
from zernike3d.scheduling.hardware import describe, probe
from zernike3d.maths.indexing import nl_table
from zernike3d.stages import common
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--box", type=int, help="voxels per box edge")
    parser.add_argument("--order", type=int, help="highest Zernike order n")
    parser.add_argument("--volumes", type=int, default=1, help="maps transformed together (1 + 3DVA components)")
    parser.add_argument("--n-particles", type=int, default=0,
                        help="number of particles whose invariants follow (their memory is reported)")
    common.add_renamed_option(parser, "--particles", "--n-particles", type=int)
    parser.add_argument("--transform", choices=("decompose", "reconstruct"), default="decompose",
                        help="which transform to plan (default: decompose)")
    parser.add_argument("--voxel-size", type=float, default=1.0, help="Å per voxel")
    common.add_geometry_arguments(parser)
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None, help="only plan for this device")
    parser.add_argument("--gpu-id", type=int, default=None, help="NVML index of the GPU (default: most free memory)")
    common.add_threads_argument(parser)
    parser.add_argument("--max-memory", type=common.at_least(float, 0, strictly=True), default=None, metavar="GiB",
                        help="hard cap on host memory in GiB (e.g. the batch job's limit)")
    parser.add_argument("--cache", default=".", metavar="DIR", help="where the basis store would go (free disk)")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this machine's CPU rates (about a minute) and store them where the planner "
                        "reads them (~/.cache/zernike3d/cpu-rates.json)")


def run(args: argparse.Namespace) -> int:
    from zernike3d.scheduling.calibration import calibrate
    from zernike3d.scheduling.planner import CPU_RATES, RATES_FILE, load_rates, plan_for

    if args.calibrate:
        rates, error = calibrate()
        print(f"stored in {RATES_FILE} (worst fit error over the calibration runs {error:.0%}):")
        print(_as_python(rates))
        if args.box is None:
            return 0
    if args.box is None or args.order is None:
        raise InputError("--box/--order", "both are required (unless --calibrate)")
    for option, value, least in (("--box", args.box, 1), ("--volumes", args.volumes, 1), ("--n-particles", args.n_particles, 0)):
        if value < least:
            raise InputError(option, f"must be at least {least}, got {value}")
    radius, center = common.parse_radius(args.radius), common.parse_center(args.center)
    geometry = common.ball_geometry(args.box, args.voxel_size, radius, center)  # one line for a ball with nothing in it
    common.require_box_memory("--box", geometry, maps=0)  # the planner tabulates the box's grid
    machine = probe(args.cache)
    max_memory = None if args.max_memory is None else int(args.max_memory * 2**30)
    plan = plan_for(
        args.box, common.parse_order(args.order), n_volumes=args.volumes, voxel_size=args.voxel_size,
        radius=radius, center=center, stage=args.transform,
        machine=machine, device=args.device, gpu_id=args.gpu_id, threads=args.threads,
        max_memory_bytes=max_memory,
    )
    print("\n".join(describe(machine)))
    calibrated = load_rates() is not CPU_RATES
    print(f"CPU rates: {'calibrated on this machine' if calibrated else 'reference machine (see --calibrate)'}; "
          "GPU rates: datasheet leads, not measured")
    print(f"{args.transform}: box {args.box}, order {args.order}, {args.volumes} volume(s), {plan.threads} thread(s)")
    print(plan.table())
    if args.n_particles:
        size = args.n_particles * len(nl_table(args.order)) * 8
        print(f"particle invariants: {size / 2**20:.0f} MiB of output ({args.n_particles} particles x "
              f"{len(nl_table(args.order))} invariants, float64)")
    return 0 if plan.choice is not None else 1


def _as_python(rates):
    from zernike3d.scheduling.planner import CpuRates

    fields = ",\n".join(f"    {f.name}={getattr(rates, f.name)!r}" for f in dataclasses.fields(CpuRates))
    return f"CPU_RATES = CpuRates(\n{fields},\n)"
