"""``python -m zernike3d.measured run STAGE ARGS...``: run a stage as the workflow's rules
do, ending its log with its exact peak memory; ``python -m zernike3d.measured STAGE INPUT
ORDER [THREADS]``: print the resource estimate of a job (:mod:`zernike3d.scheduling.resources`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from zernike3d.scheduling.resources import MB, rule_resources

PEAK_LINE = "peak memory"


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM of /proc/self/status, which starts
    afresh at exec; ``ru_maxrss`` where there is no /proc (it would include the RSS of the
    parent that started the process, e.g. Snakemake's, on Linux)."""
    import resource

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def run_measured(argv: Sequence[str]) -> int | str | None:
    """Run ``zernike3d <argv>`` in this process and print, at the end, its exact peak
    resident memory (:func:`peak_rss_mb`) and wall time to stderr, e.g.
    ``zernike3d decompose: peak memory 355.6 MB (RSS), 2.41 s``. The workflow runs every
    stage this way, so each job's log says what it really needed (Snakemake's
    ``benchmark:`` samples memory only every 0.5-30 s and misses short peaks)."""
    import sys
    import time

    from zernike3d.cli import main as cli_main

    started = time.perf_counter()
    stage = argv[0] if argv else "?"
    code: int | str | None = 1
    try:
        code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    finally:
        print(f"zernike3d {stage}: {PEAK_LINE} {peak_rss_mb():.1f} MB (RSS), "
              f"{time.perf_counter() - started:.2f} s", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int | str | None:
    """``python -m zernike3d.measured STAGE INPUT ORDER [THREADS]``: print the estimate;
    ``python -m zernike3d.measured run STAGE ARGS...``: run a stage, report its peak memory."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "run":
        return run_measured(args[1:])
    stage, path, order = args[0], args[1], int(args[2])
    threads = int(args[3]) if len(args) > 3 else 1
    print(json.dumps(rule_resources(stage, path, order, {"threads": threads})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
