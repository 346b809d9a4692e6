"""The import rules of docs/architecture.md, checked over the package's source (imports
inside functions included), so that the page cannot go stale."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "zernike3d"
WORKFLOW = PACKAGE.parent / "workflow"

#: what each part of the package may import from the package, besides itself. The base
#: modules (errors, progress and the package's ``__init__``) import nothing of ours and may be
#: imported by every part.
BASE = {"zernike3d", "errors", "progress"}
LIBRARY = {"maths", "io", "moments", "plots", "synthetic", "analysis", "scheduling"}
MAY_IMPORT = {
    "maths": set(),
    "io": {"maths"},
    "moments": {"maths", "io"},
    "plots": {"maths", "io"},
    "synthetic": {"maths", "io", "moments"},
    "analysis": {"maths", "io", "moments", "plots"},
    "scheduling": {"maths", "io", "analysis"},
    "stages": LIBRARY,
    # the workflow's config checks (of the stages, only the options they share:
    # stages.common), the rules' arguments and files, then the entry points (command
    # line, measured runner)
    "workflow_config": LIBRARY | {"stages"},
    "workflow_jobs": {"io", "workflow_config"},
    "cli": LIBRARY | {"stages", "workflow_config", "measured"},
    "measured": LIBRARY | {"stages", "workflow_config", "cli"},
    "__main__": LIBRARY | {"stages", "workflow_config", "measured", "cli"},
}


def part(module: str) -> str:
    """The part of the package a dotted module name belongs to: ``zernike3d.maths.radial`` ->
    ``maths``, ``zernike3d.moments`` -> ``moments``, ``zernike3d`` -> ``zernike3d``."""
    names = module.split(".")
    return names[1] if len(names) > 1 else names[0]


def module_of(path: Path) -> str:
    """``zernike3d/maths/radial.py`` -> ``zernike3d.maths.radial``; a package's ``__init__.py`` -> the package."""
    names = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(names[:-1] if names[-1] == "__init__" else names)


def is_module(name: str) -> bool:
    """Whether ``zernike3d.<name>`` is a module or subpackage (not a name defined in ``__init__``)."""
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def imports_of(path: Path) -> set[tuple[str, int]]:
    """The package's modules that ``path`` imports, with the line of each import; imports
    for the type checker only (under ``if TYPE_CHECKING:``) are annotations, not uses."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(inner) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                   for inner in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (the package uses absolute ones)"
            if node.module == "zernike3d":  # from zernike3d import errors (a module), __version__ (not one)
                found |= {(f"zernike3d.{alias.name}" if is_module(alias.name) else "zernike3d", node.lineno)
                          for alias in node.names}
            else:
                found.add((node.module, node.lineno))
    return {(name, line) for name, line in found if name.split(".")[0] == "zernike3d"}


def test_every_module_has_a_part():
    for path in PACKAGE.rglob("*.py"):
        assert part(module_of(path)) in MAY_IMPORT.keys() | BASE, (
            f"{path}: a part of the package docs/architecture.md and this test do not know")


def test_no_import_goes_up():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = part(module_of(path))
        allowed = BASE if source in BASE else MAY_IMPORT[source] | BASE
        for target, line in sorted(imports_of(path)):
            if part(target) != source and part(target) not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_the_base_imports_nothing_of_ours():
    for name in ("errors.py", "progress.py", "__init__.py"):
        assert not imports_of(PACKAGE / name), name


def test_the_config_checks_take_of_the_stages_only_their_shared_options():
    """workflow_config parses the settings with the stages' own option parsers
    (stages/common.py), and takes nothing else of a stage."""
    stages = {target for target, _ in imports_of(PACKAGE / "workflow_config.py") if part(target) == "stages"}
    assert stages <= {"zernike3d.stages.common"}, stages


def workflow_files() -> list[Path]:
    return [WORKFLOW / "Snakefile", *sorted((WORKFLOW / "rules").glob("*.smk"))]


def test_the_workflow_runs_the_stages_only_through_their_command_line():
    imports = re.compile(r"^\s*(from|import)\s+zernike3d\.stages\b", re.MULTILINE)
    wrong = [path.name for path in workflow_files() if imports.search(path.read_text())]
    assert not wrong, f"import a stage module: {wrong}"


def test_the_workflow_is_at_most_1000_lines():
    """Rules and input/param functions only: the rest lives in the package (issue 20)."""
    lines = sum(len(path.read_text().splitlines()) for path in workflow_files())
    assert lines <= 1000, lines
