"""Every code block of README.md works, run in order as a user would type it.

The blocks run in a copy of the repository (so that the workflow's outputs and the
files the commands write stay out of the checkout), one after another, so a later block
sees what an earlier one wrote, as it would for a reader going down the page:

- the set-up block: its install commands (everything up to and including `pip install`:
  the virtual environment and the install into it) must be what `.ci/run` runs (CI
  installs exactly that), and the rest (the whole workflow on the example, and the
  report) runs here with this test's own installation;
- the test command must be the one `.ci/run` runs (running it here would recurse);
- the SLURM block needs a cluster: `tests/test_slurm.py` types the same commands against
  a real single-node SLURM, and this test checks that it does;
- every other `bash` block runs in `bash -euo pipefail`, every `python` block in Python,
  and a `yaml` block is a configuration that must pass the workflow's schema.
Before the command-line blocks run, the maps they name (map.mrc, base.mrc, comp0.mrc)
are written into the folder: small synthetic maps, the only thing a reader must supply.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

pytestmark = pytest.mark.slow


def code_blocks():
    """[(line number, language, text)] of README.md's fenced code blocks."""
    blocks, lines = [], README.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if match:
            start, body = i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((start, match.group(1), "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = code_blocks()
#: the README's test command, which .ci/run runs
TEST_COMMAND = ".venv/bin/python -m pytest -q"
CI_SCRIPT = (REPO / ".ci" / "run").read_text()


def _kind(text):
    if "pip install" in text and "snakemake" in text:
        return "setup"
    if text.strip() == TEST_COMMAND:
        return "tests"
    if "--profile slurm" in text:
        return "slurm"
    return "run"


def _split_setup(text):
    """(install, rest) of the set-up block: the commands up to and including the
    ``pip install``, and those after it."""
    commands = [c.strip() for c in text.strip().split("&&")]
    last = max(i for i, c in enumerate(commands) if "pip install" in c)
    return " && ".join(commands[: last + 1]), " && ".join(commands[last + 1 :])


def _write_input_maps(folder):
    from zernike3d.io.mrc import write_map
    from zernike3d.synthetic import chiral_phantom, gaussian_blobs

    box, voxel = 32, 2.0
    centre = box // 2 * voxel
    write_map(folder / "map.mrc", chiral_phantom(box, voxel), voxel)
    write_map(folder / "base.mrc", chiral_phantom(box, voxel), voxel)
    component = gaussian_blobs(box, voxel, [(centre + 6, centre, centre), (centre - 6, centre, centre)],
                               [3.0, 3.0], [1.0, -1.0])
    write_map(folder / "comp0.mrc", component, voxel)


def _run(command, folder, timeout=900):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["XDG_CONFIG_HOME"] = str(folder / ".xdg")
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def readme_run(tmp_path_factory):
    """Run every block in order in a copy of the repository: {line: (ok, output)}."""
    folder = tmp_path_factory.mktemp("readme") / "zernike3d"
    shutil.copytree(REPO, folder, ignore=shutil.ignore_patterns(
        ".git", "results", "logs", ".snakemake", "__pycache__", "*.egg-info", "report.html", ".pytest_cache"))
    results, inputs_written = {}, False
    for line, language, text in BLOCKS:
        kind = _kind(text)
        if kind == "setup":
            install, rest = _split_setup(text)
            if install not in CI_SCRIPT:
                results[line] = (False, f"the install commands {install!r} are not what .ci/run runs")
                continue
            run = _run(["bash", "-euo", "pipefail", "-c", rest], folder)
        elif kind in ("tests", "slurm"):
            continue  # checked by the tests below
        elif language == "yaml":
            results[line] = _check_config_block(text)
            continue
        elif language == "python":
            run = _run([sys.executable, "-c", text], folder)
        else:
            if not inputs_written:
                _write_input_maps(folder)
                inputs_written = True
            run = _run(["bash", "-euo", "pipefail", "-c", text], folder)
        results[line] = (run.returncode == 0, (run.stdout + run.stderr)[-4000:])
    return folder, results


def _check_config_block(text):
    """A config block against the schema, as the workflow checks it (strict types)."""
    from zernike3d.workflow_config import load_schema, schema_problems

    errors = schema_problems(yaml.safe_load(text), load_schema())
    return (not errors, "; ".join(errors))


RUN_BLOCKS = [(line, text) for line, language, text in BLOCKS if _kind(text) not in ("tests", "slurm")]


@pytest.mark.parametrize("line,text", RUN_BLOCKS, ids=[f"README line {line}" for line, _ in RUN_BLOCKS])
def test_block_runs(readme_run, line, text):
    _, results = readme_run
    ok, output = results[line]
    assert ok, f"README.md block at line {line} failed:\n{text}\n--- output ---\n{output}"


def test_setup_block_leaves_the_report_where_it_says(readme_run):
    folder, _ = readme_run
    assert (folder / "report.html").is_file()
    assert (folder / "results" / "example" / "moments.npz").is_file()


def test_the_test_command_is_what_ci_runs():
    blocks = [text.strip() for _, _, text in BLOCKS if _kind(text) == "tests"]
    assert blocks == [TEST_COMMAND]
    assert re.search(rf"^{re.escape(TEST_COMMAND)} \|\| status=\$\?$", CI_SCRIPT, re.M), "CI must run the README's test command"


def test_the_slurm_block_is_typed_by_the_slurm_test():
    """Each command of the SLURM block appears in tests/test_slurm.py as the same words
    (the site file's path aside: the test writes its own)."""
    slurm_test = (REPO / "tests" / "test_slurm.py").read_text()
    commands = [c.strip() for _, _, text in BLOCKS if _kind(text) == "slurm" for c in text.splitlines() if c.strip()]
    assert commands
    for command in commands:
        words = [w for w in command.split() if "/" not in w]
        typed = ", ".join(f'"{w}"' for w in words)
        assert typed in slurm_test, f"tests/test_slurm.py does not type {command!r} (as {typed})"


#: appended to a copy of report.html: once the page has rendered, every image of the page
#: and every image file embedded among its results (the figures behind the menu) is loaded
#: by the browser, and what loaded, with each QC section of the first page, is written
#: into an attribute of <body> for --dump-dom to show
REPORT_CHECK = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const sources = new Set();
  for (const script of document.scripts)
    for (const found of script.text.matchAll(/"(data:image\\/[^"\\\\]+;filename=[^"\\\\]+)"/g)) sources.add(found[1]);
  const load = src => new Promise(done => {
    const image = new Image();
    image.onload = () => done({src: src.slice(0, 60), width: image.naturalWidth});
    image.onerror = () => done({src: src.slice(0, 60), width: 0});
    image.src = src;
  });
  Promise.all([...sources].map(load)).then(embedded => {
    const shown = Array.from(document.images).map(i => ({src: i.src.slice(0, 60), width: i.complete ? i.naturalWidth : 0}));
    const sections = Array.from(document.querySelectorAll(".zernike3d-qc, .zernike3d-compare")).map(s => ({
      kind: s.className,
      text: s.textContent.trim().slice(0, 80), rows: s.querySelectorAll("tr").length,
      images: Array.from(s.querySelectorAll("img")).map(i => i.complete ? i.naturalWidth : 0)}));
    document.body.setAttribute("data-zernike3d-check", JSON.stringify({embedded, shown, sections}));
  });
}, 2000));
</script>"""


def _chromium():
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)


def test_the_report_renders_in_a_headless_browser(readme_run, tmp_path):
    """The example's report.html, opened in headless Chromium: every figure (on the first
    page and among the results) loads, the comparison of the two jobs comes first with its
    figures, and each dataset's QC section has its table and figures."""
    import html
    import json

    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    folder, _ = readme_run
    text = (folder / "report.html").read_text()
    end = text.rindex("</body>")
    page = tmp_path / "report.html"
    page.write_text(text[:end] + REPORT_CHECK + text[end:])
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=30000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=300)
    found = re.search(r'data-zernike3d-check="([^"]*)"', run.stdout)
    assert found, f"the page did not finish rendering: {run.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))
    figures = len(re.findall(r'"data:image/png;charset=utf8;filename=', text))
    assert figures >= 7 and len(check["embedded"]) >= figures  # fsc, maps, invariants, PCA, series, latents x2
    assert all(image["width"] > 0 for image in check["embedded"]), [i for i in check["embedded"] if not i["width"]]
    assert all(image["width"] > 0 for image in check["shown"]), check["shown"]
    comparison, *qc = check["sections"]  # the example: the comparison first, then each dataset's QC
    assert comparison["kind"] == "zernike3d-compare" and comparison["images"] and all(comparison["images"]), comparison
    assert [section["text"].split(":")[0] for section in qc] == ["example", "example_ligand"], qc
    for section in qc:
        assert section["kind"] == "zernike3d-qc" and "FSC 0.5" in section["text"] and section["rows"] >= 2, section
        assert len(section["images"]) == 3 and all(section["images"]), section  # FSC, slices, PCA
