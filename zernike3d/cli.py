"""`zernike3d <stage> ...`: every stage of the workflow, runnable by hand.

Each stage is a module in :mod:`zernike3d.stages` with ``add_arguments(parser)`` and
``run(args) -> int``; the Snakemake rules call exactly these commands. Errors a user can
cause (:class:`zernike3d.errors.InputError`) are printed as one line and exit with 2.
"""

import argparse
import importlib
import sys
import warnings

from zernike3d.errors import InputError

#: subcommand -> module under zernike3d.stages, in the order of the workflow
STAGES = {
    "example": "example",
    "import": "import_data",
    "preprocess": "preprocess",
    "basis": "basis",
    "decompose": "decompose",
    "invariants": "invariants",
    "reconstruct": "reconstruct",
    "qc": "qc",
    "info": "info",
    "hardware": "hardware",
    "plan": "plan",
    "profile": "profile",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="zernike3d",
        description="3D Zernike moments, invariants and reconstructions of cryo-EM maps.",
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, module_name in STAGES.items():
        module = importlib.import_module(f"zernike3d.stages.{module_name}")
        doc = (module.__doc__ or "").strip().splitlines()
        stage_parser = sub.add_parser(
            name,
            help=doc[0] if doc else None,
            description=(module.__doc__ or "").strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(stage_parser)
        stage_parser.set_defaults(run=module.run)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"zernike3d: warning: {message}\n"


def main(argv=None):
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except InputError as err:
        print(f"zernike3d {args.stage}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
