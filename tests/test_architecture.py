"""The import contracts of pyproject.toml (layers point down, settings stay torch-free, no
cycles between sibling modules) and ruff, checked as part of the test suite so CI runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    if shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = _run("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_code_is_ruff_clean():
    result = _run(sys.executable, "-m", "ruff", "check", "napari_ssseg", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr
