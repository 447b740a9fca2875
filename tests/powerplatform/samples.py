"""Where the shared sample connectors are, and what INDEX.md says about each.

The samples are a copy, inside the repository, of 43 real Power Platform connector
definitions (MIT, licence in `tests/fixtures/connectors/LICENSE`). Tests that need them
FAIL when they cannot be found: a missing sample set must not turn the suite green by
skipping.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

NOT_FOUND = "connectors-dir-not-found"
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "connectors"


def connectors_dir() -> Path | None:
    candidate = SAMPLES_DIR
    return candidate if (candidate / "INDEX.md").is_file() else None


def require_connectors_dir() -> Path:
    found = connectors_dir()
    if found is None:
        pytest.fail(
            f"sample connectors not found: expected {SAMPLES_DIR} with INDEX.md"
        )
    return found


def index_entries() -> dict[str, list[str]]:
    """INDEX.md table: folder (relative, e.g. certified-connectors/JIRA) -> tags."""
    root = connectors_dir()
    if root is None:
        return {}
    entries: dict[str, list[str]] = {}
    for line in (root / "INDEX.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*([^|]+?)\s*\|\s*([^|]*?)\s*\|$", line)
        if not match or match.group(1) in ("folder", "---") or set(match.group(1)) <= {"-"}:
            continue
        entries[match.group(1)] = [tag.strip() for tag in match.group(2).split(",") if tag.strip()]
    return entries


def sample_folders() -> list[str]:
    """Relative names of every folder holding a connector (or NOT_FOUND)."""
    root = connectors_dir()
    if root is None:
        return [NOT_FOUND]
    return sorted(
        f"{group.name}/{folder.name}"
        for group in root.iterdir()
        if group.is_dir() and group.name != "schemas"
        for folder in group.iterdir()
        if folder.is_dir()
    )


def folder_path(name: str) -> Path:
    root = require_connectors_dir()
    if name == NOT_FOUND:
        pytest.fail("sample connectors not found")
    return root / name


def malformed_folders() -> list[str]:
    names = [name for name, tags in index_entries().items() if "malformed" in tags]
    return names or [NOT_FOUND]
