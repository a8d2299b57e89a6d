"""The package's shape is checked, not hoped for: the layer contracts of pyproject.toml hold, a
circle or an upward import added to a copy of the package breaks them, and imports inside
functions are only the command line's lazy ones or optional extras, each with its reason."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sleepdetect"
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.is_file(), reason="import-linter is not installed")


def lint(src_parent: Path) -> subprocess.CompletedProcess:
    """lint-imports with the project's contracts on the package found under `src_parent`."""
    env = os.environ | {"PYTHONPATH": str(src_parent)}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=src_parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_layer_contracts_hold():
    result = lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        ("core/errors.py", "import sleepdetect.cli", "layers"),  # plumbing reaching up
        ("inference/predict.py", "import sleepdetect.training.fold", "layers"),
        ("events/metric.py", "import sleepdetect.events.scoring", "circle"),  # scoring -> metric
        ("stages/infer.py", "import lightning", "Kaggle kernel"),
    ],
)
def test_an_added_upward_import_or_circle_breaks_a_contract(tmp_path, module, added, broken):
    copy = tmp_path / "src" / "sleepdetect"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text(path.read_text() + f"\n{added}  # noqa\n")
    result = lint(tmp_path / "src")
    assert result.returncode != 0
    broken_lines = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(broken in line for line in broken_lines), result.stdout


def _function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each import statement inside a function of `path`."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    found.append((sub.lineno, lines[sub.lineno - 1]))
    return found


def test_imports_inside_functions_are_lazy_commands_or_optional_extras_with_a_reason():
    """cli.py imports each command's module when that command runs (its docstring says so);
    anywhere else an import inside a function needs a reason on its line or the line above."""
    unexplained = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "cli.py":
            continue
        lines = path.read_text().splitlines()
        for lineno, text in _function_imports(path):
            above = lines[lineno - 2].strip() if lineno > 1 else ""
            if "#" not in text and not above.startswith("#"):
                unexplained.append(f"{path.relative_to(SRC)}:{lineno}: {text.strip()}")
    assert not unexplained, "imports inside functions without a reason:\n" + "\n".join(unexplained)
    assert "import" in (SRC / "cli.py").read_text().split('"""')[1]  # the lazy rule, stated
