"""Gate 2: checkov's Bicep policies pass, except checks skipped in infra/.checkov.yaml,
each with a one-line reason.

checkov pins versions that clash with the gateway's (its own pycep-parser among them), so
it lives in its own virtualenv, `.venv-checkov/` at the repository root, created here on
first use from infra/checkov-requirements.txt (PyPI only) and reused while that file is
unchanged. checkov does not fail on a file it cannot parse, so its parsing_errors count is
asserted here and the syntax gate (test_bicep_syntax.py) runs separately.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA, REPO

VENV = REPO / ".venv-checkov"
REQUIREMENTS = INFRA / "checkov-requirements.txt"
CONFIG = INFRA / ".checkov.yaml"
MARKER = VENV / ".requirements.sha256"
COMMAND = ["-d", "infra", "--framework", "bicep", "--skip-download", "-o", "json"]
SKIP_LINE = re.compile(r"^\s+-\s+(?P<id>CKV2?_[A-Z0-9]+_\d+)\s*(?:#\s*(?P<reason>.*\S))?\s*$")


def _pinned_checkov() -> str:
    match = re.search(r"^checkov==(\S+)$", REQUIREMENTS.read_text("utf-8"), re.M)
    assert match, f"{REQUIREMENTS} must pin checkov=="
    return match.group(1)


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def ensure_checkov_venv() -> Path:
    """Create or reuse .venv-checkov/; returns the checkov executable. Idempotent: a venv
    whose marker matches the requirements file (and whose checkov reports the pinned
    version) is reused; anything else is rebuilt."""
    checkov = VENV / "bin" / "checkov"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if checkov.exists() and MARKER.exists() and MARKER.read_text().strip() == digest:
        version = _run([str(checkov), "--version"], timeout=120)
        if version.returncode == 0 and version.stdout.strip() == _pinned_checkov():
            return checkov
    if VENV.exists():
        shutil.rmtree(VENV)
    created = _run([sys.executable, "-m", "venv", str(VENV)], timeout=300)
    assert created.returncode == 0, f"python -m venv failed:\n{created.stderr}"
    install = _run(
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        timeout=1500,
    )
    assert install.returncode == 0, (
        f"installing checkov failed:\n{install.stdout}\n{install.stderr}"
    )
    MARKER.write_text(digest + "\n")
    return checkov


def _report(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout)
    reports = data if isinstance(data, list) else [data]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    assert len(bicep) == 1, (
        f"expected one bicep report, got {[r.get('check_type') for r in reports]}"
    )
    return bicep[0]


@pytest.fixture(scope="session")
def checkov_reports(tmp_path_factory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(with the config's skips, without any skip), run side by side. checkov also reads
    a .checkov.yaml found in the scanned folder, so the unskipped run scans a copy of
    infra/ without it."""
    checkov = str(ensure_checkov_venv())
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    bare = tmp_path_factory.mktemp("checkov")
    shutil.copytree(INFRA, bare / "infra", ignore=shutil.ignore_patterns(".checkov.yaml"))
    runs = {
        "configured": (REPO, [checkov, *COMMAND, "--config-file", str(CONFIG.relative_to(REPO))]),
        "unskipped": (bare, [checkov, *COMMAND]),
    }
    procs = {
        name: subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (cwd, cmd) in runs.items()
    }
    reports = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        # checkov exits 1 when a check fails; anything else is a crash.
        assert proc.returncode in (0, 1), (
            f"checkov ({name}) exited {proc.returncode}:\n{stderr[-3000:]}"
        )
        reports[name] = _report(stdout)
    return reports["configured"], reports["unskipped"]


def configured_skips() -> dict[str, str | None]:
    """Check ID -> reason (None when missing) from the skip-check list in .checkov.yaml."""
    skips: dict[str, str | None] = {}
    in_list = False
    for line in CONFIG.read_text("utf-8").splitlines():
        if re.match(r"^skip-check:\s*$", line):
            in_list = True
            continue
        if in_list:
            if line.strip() == "" or line.lstrip().startswith("#"):
                continue
            if not line.startswith((" ", "-")):
                in_list = False
                continue
            match = SKIP_LINE.match(line)
            assert match, (
                f".checkov.yaml: cannot read skip entry {line!r} (write '  - CKV_ID  # reason')"
            )
            skips[match["id"]] = match["reason"]
    return skips


def test_every_skipped_check_has_a_one_line_reason() -> None:
    skips = configured_skips()
    assert skips, ".checkov.yaml has no skip-check list"
    missing = [check for check, reason in skips.items() if not reason or len(reason) < 15]
    assert not missing, f".checkov.yaml: give each skip a one-line reason after '#': {missing}"


def test_checkov_parsed_every_bicep_file(checkov_reports) -> None:
    configured, _ = checkov_reports
    summary = configured["summary"]
    assert summary["parsing_errors"] == 0, f"checkov could not parse some files: {summary}"
    assert summary["checkov_version"] == _pinned_checkov()
    assert summary["resource_count"] > 0 and summary["passed"] > 0


def test_no_failed_checkov_check(checkov_reports) -> None:
    configured, _ = checkov_reports
    failed = [
        f"{c['check_id']} {c['check_name']} — "
        f"infra{c['file_path']}:{c['file_line_range'][0]} {c['resource']}"
        for c in configured["results"]["failed_checks"]
    ]
    assert not failed, (
        "checkov failed checks (fix, or skip in infra/.checkov.yaml with a reason):\n"
        + "\n".join(failed)
    )


def test_no_stale_skip(checkov_reports) -> None:
    _, unskipped = checkov_reports
    failing = {c["check_id"] for c in unskipped["results"]["failed_checks"]}
    stale = sorted(set(configured_skips()) - failing)
    assert not stale, f".checkov.yaml skips checks that no longer fail; remove them: {stale}"
