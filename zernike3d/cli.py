"""`zernike3d <stage> ...`: every stage of the workflow, runnable by hand.

Each stage is a module in :mod:`zernike3d.stages` with ``add_arguments(parser)`` and
``run(args) -> int``; the Snakemake rules call exactly these commands. Only the module of
the stage that runs is imported (``zernike3d --help`` imports none), and stage modules
import their heavy dependencies inside ``run``, so that start-up stays instant.

Errors a user can cause (:class:`zernike3d.errors.InputError`) and faults of the
machine (a full disk, a read-only folder, not enough memory) are printed as one line and
exit with 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from zernike3d.errors import InputError

#: subcommand -> (module under zernike3d.stages, one-line summary), in workflow order.
#: The summary is the first line of the module's docstring (a test checks they agree).
STAGES = {
    "example": ("example", 'A worked example with no input data: decompose and reconstruct a chiral phantom.'),
    "import": ("import_data", 'Import a cryoSPARC 3D Variability job, a single map or a WIGGLE bundle as a dataset.'),
    "preprocess": ("preprocess", 'Crop, bin and mask a dataset: the same operation on the base map and every component.'),
    "basis": ("basis", "Build (or reuse) the cached basis of an input's geometry in a zarr store."),
    "decompose": ("decompose", 'Zernike moments of one or more MRC maps, saved as a moments file (.npz).'),
    "invariants": ("invariants", 'Rotation-invariant descriptors F_nl of every volume in a moments file.'),
    "align": ("align", 'Rigid alignment of two maps from their moments: rotation, shift and hand, as JSON.'),
    "reconstruct": ("reconstruct", 'A map from a moments file: the Zernike expansion of one volume, written as MRC.'),
    "cluster": ("cluster", "Cluster a 3D Variability job's particles and write subsets that cryoSPARC imports."),
    "match": ("match", "Score every particle of a 3D Variability job against molecular models or maps, in any frame."),
    "path": ("path", "Paths between states of a 3D Variability job through the particles' density."),
    "qc": ("qc", 'Quality control: how well the moments reproduce the maps, with figures.'),
    "compare": ("compare", 'Compare 3D Variability jobs: volumes, latent spaces and particle landscapes, after alignment onto the first.'),
    "info": ("info", "Summary of a moments file or dataset bundle: volumes, geometry, size, norms or particles."),
    "hardware": ("hardware", 'Describe this machine: GPUs, CUDA, CuPy, CPU cores, free RAM and disk.'),
    "plan": ("plan", 'Predict memory and time of each placement of a transform and pick the fastest that fits.'),
    "profile": ("profile", 'Install the Snakemake SLURM profile, so that `snakemake --profile slurm` works.'),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown in --help, descriptions kept as written; no "(default: None)" or
    "(default: False)", and none added where the help text already states the default."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _top_parser():
    parser = argparse.ArgumentParser(
        prog="zernike3d",
        description="3D Zernike moments, invariants and reconstructions of cryo-EM maps.",
        epilog="`zernike3d STAGE --help` explains each stage.",
    )
    parser.add_argument("--version", action=_VersionAction)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: the version is read only when asked for (zernike3d.__version__)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import zernike3d

        print(f"zernike3d {zernike3d.__version__}")
        parser.exit()


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The parser with every stage listed, and the full options of ``stage`` (or of all
    stages when ``stage`` is None: slow, for tests and documentation)."""
    parser = _top_parser()
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (module_name, summary) in STAGES.items():
        if stage is not None and name != stage:
            sub.add_parser(name, help=summary, add_help=False)
            continue
        module = importlib.import_module(f"zernike3d.stages.{module_name}")
        stage_parser = sub.add_parser(
            name,
            help=summary,
            description=(module.__doc__ or "").strip(),
            formatter_class=_Formatter,
        )
        module.add_arguments(stage_parser)
        stage_parser.set_defaults(run=module.run)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"zernike3d: warning: {message}\n"


def _os_error_line(err):
    """One line for a fault of the machine, naming the path and what to do."""
    where = err.filename or "output"
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{where}: no space left for it ({err.strerror}); free some space or write elsewhere"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{where}: cannot write here ({err.strerror}); choose a writable folder"
    return f"{where}: {err.strerror or err}"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    stage = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(stage if stage in STAGES else "")
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except InputError as err:
        print(f"zernike3d {args.stage}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"zernike3d {args.stage}: error: not enough memory for this request; "
            "use a smaller box or order, or a machine with more memory",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as err:
        print(f"zernike3d {args.stage}: error: {_os_error_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
