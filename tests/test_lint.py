"""The type checker and the linter, as CI runs them (configuration in pyproject.toml), and
the share of the package's public interface that carries type annotations."""

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "zernike3d"

#: issue 20: at least this share of the public functions and classes carry type annotations
MIN_ANNOTATED = 0.80


def public_interface(package: Path = PACKAGE) -> tuple[int, int, list[str]]:
    """(annotated, total, unannotated names) over the functions and classes of ``package``
    whose names do not start with ``_`` (methods and nested functions included). A class
    counts as annotated; a function when its return or any of its parameters is."""
    annotated, total, missing = 0, 0, []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                annotated, total = annotated + 1, total + 1
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                args = node.args
                parameters = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
                total += 1
                if node.returns is not None or any(p.annotation is not None for p in parameters):
                    annotated += 1
                else:
                    missing.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name}")
    return annotated, total, missing


def test_public_interface_is_annotated():
    annotated, total, missing = public_interface()
    assert annotated >= MIN_ANNOTATED * total, (
        f"{annotated} of {total} public functions and classes annotated, below {MIN_ANNOTATED:.0%}; "
        "unannotated:\n" + "\n".join(missing))


def tool(name: str) -> list[str]:
    """The command that runs ``name`` (a module of this interpreter, else on PATH); skips if absent."""
    if importlib.util.find_spec(name) is not None:
        return [sys.executable, "-m", name]
    if shutil.which(name):
        return [name]
    pytest.skip(f"{name} is not installed (pip install -e '.[test]')")


def test_mypy_runs_clean(tmp_path):
    result = subprocess.run(
        tool("mypy") + ["--cache-dir", str(tmp_path / "mypy_cache"), "zernike3d"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_runs_clean():
    result = subprocess.run(
        tool("ruff") + ["check", "--no-cache", "zernike3d", "tests", "benchmarks"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


if __name__ == "__main__":  # python tests/test_lint.py: the figure, and what is left
    annotated, total, missing = public_interface()
    print("\n".join(missing))
    print(f"{annotated} of {total} public functions and classes annotated ({annotated / total:.1%})")
