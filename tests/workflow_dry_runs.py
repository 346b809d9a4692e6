"""Many `snakemake -n` runs of the workflow in one process (a helper of the workflow tests).

    python tests/workflow_dry_runs.py WORKDIR CASES.json

CASES.json is ``{"case name": "config text", ...}``. For each case, WORKDIR/config/config.yaml
is replaced by the text, the workflow is dry-run through Snakemake's Python API (as
`snakemake -n` does, without paying Snakemake's start-up once per case), and the original
config file is put back at the end. Prints one JSON object: ``{"case name": {"ok": bool,
"output": what Snakemake printed, "error": the exception's text, what was printed before
the workflow's own exit on a configuration mistake, or ""}}``.
"""

import contextlib
import io
import json
import sys
from pathlib import Path

SNAKEFILE = Path(__file__).resolve().parents[1] / "workflow" / "Snakefile"


def dry_run(workdir):
    """``(ok, printed, error)`` of one dry run of the workflow in ``workdir``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    printed = io.StringIO()
    error = ""
    with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(printed):
        try:
            with SnakemakeApi(OutputSettings()) as api:
                workflow = api.workflow(
                    resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(),
                    storage_settings=StorageSettings(), workdir=Path(workdir), snakefile=SNAKEFILE,
                )
                workflow.dag(DAGSettings()).execute_workflow(executor="dryrun")
        except Exception as err:  # the run's failure is the result we report
            error = f"{type(err).__name__}: {err}"
        except SystemExit as err:  # a configuration mistake: its lines are printed, then exit 1
            error = printed.getvalue() or f"SystemExit: {err.code}"
    return not error, printed.getvalue(), error


def main(workdir, cases_path):
    workdir = Path(workdir).resolve()
    config = workdir / "config" / "config.yaml"
    original = config.read_text()
    cases = json.loads(Path(cases_path).read_text())
    results = {}
    try:
        for name, text in cases.items():
            config.write_text(text)
            ok, printed, error = dry_run(workdir)
            results[name] = {"ok": ok, "output": printed, "error": error}
    finally:
        config.write_text(original)
    print(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
