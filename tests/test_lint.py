"""The code stays typed and clean: ruff and mypy (strict, settings in pyproject.toml)
run as part of the suite, so a regression fails `make test` like any other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ruff() -> None:
    done = run(
        "ruff",
        "check",
        "functions",
        "tests",
        "function_app.py",
        "bench",
        "--output-format",
        "concise",
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict() -> None:
    done = run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr
