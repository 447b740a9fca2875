"""`local.settings.json`: created from the sample when missing, loaded into the
environment the way the Functions tooling does.

Development keys (the local secret store's AES key and the development token issuer's
signing key) are generated on first creation and only ever live in this git-ignored file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from functions.devtools.azurite import REPO_ROOT

SAMPLE = REPO_ROOT / "local.settings.sample.json"
LOCAL = REPO_ROOT / "local.settings.json"


def _generated_values() -> dict[str, str]:
    from functions.identity.dev_issuer import generate_private_key_pem
    from functions.stores.secrets.local import generate_local_key

    return {
        "GATEWAY_LOCAL_SECRET_KEY": generate_local_key(),
        "GATEWAY_DEV_ISSUER_PRIVATE_KEY": generate_private_key_pem(),
    }


def ensure_local_settings(path: Path = LOCAL, sample: Path = SAMPLE) -> bool:
    """Create `path` from the sample if missing, and fill any empty development key.

    Returns True when the file was created or changed.
    """
    data: dict[str, Any] = json.loads((path if path.exists() else sample).read_text("utf-8"))
    values: dict[str, str] = data.setdefault("Values", {})
    changed = not path.exists()
    for name, value in _generated_values().items():
        if not values.get(name):
            values[name] = value
            changed = True
    if changed:
        path.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
        os.chmod(path, 0o600)
    return changed


def read_values(path: Path = LOCAL) -> dict[str, str]:
    data = json.loads(path.read_text("utf-8"))
    return {k: str(v) for k, v in data.get("Values", {}).items()}


def load_into_environment(path: Path = LOCAL) -> dict[str, str]:
    """Copy Values into os.environ; variables already set in the environment win."""
    values = read_values(path)
    for name, value in values.items():
        os.environ.setdefault(name, value)
    return values
