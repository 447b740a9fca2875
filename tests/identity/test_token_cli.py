"""`python -m functions token`, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.identity import TokenValidator
from functions.identity.dev_issuer import generate_private_key_pem, object_id
from functions.settings import DEV_AUDIENCE, DEV_TENANT_ID, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
OTHER_TENANT = "11111111-1111-4111-8111-111111111111"


@pytest.fixture(scope="module")
def dev_key() -> str:
    return generate_private_key_pem()


def run_cli(*args: str, cwd: Path, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if key is not None:
        env["GATEWAY_DEV_ISSUER_PRIVATE_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "functions", "token", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def validator_for(dev_key: str) -> TokenValidator:
    return TokenValidator.from_settings(
        Settings(
            environment="development",
            tenant_ids=(DEV_TENANT_ID, OTHER_TENANT),
            audiences=(DEV_AUDIENCE,),
            dev_issuer_private_key=dev_key,
            jwks_url="http://127.0.0.1:9/keys",
        )
    )


async def test_user_token_from_environment_key(dev_key: str, tmp_path: Path) -> None:
    result = run_cli(
        "--user", "alice", "--groups", "g1, g2", "--roles", "Reader", cwd=tmp_path, key=dev_key
    )

    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"  # nothing but the token
    principal = await validator_for(dev_key).authenticate(f"Bearer {token}")
    assert principal.kind == "user"
    assert principal.object_id == object_id(DEV_TENANT_ID, "user", "alice")
    assert principal.name == "alice@dev.invalid"
    assert principal.groups == ("g1", "g2")
    assert principal.roles == ("Reader",)


async def test_app_token_for_another_tenant(dev_key: str, tmp_path: Path) -> None:
    result = run_cli(
        "--app", "nightly", "--tenant", OTHER_TENANT, "--version", "1", cwd=tmp_path, key=dev_key
    )

    assert result.returncode == 0, result.stderr
    principal = await validator_for(dev_key).authenticate(f"Bearer {result.stdout.strip()}")
    assert (principal.kind, principal.tenant_id) == ("app", OTHER_TENANT)
    assert principal.object_id == object_id(OTHER_TENANT, "app", "nightly")


async def test_key_from_local_settings_json(dev_key: str, tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"IsEncrypted": False, "Values": {"GATEWAY_DEV_ISSUER_PRIVATE_KEY": dev_key}})
    )

    result = run_cli("--user", "bob", "--lifetime", "120", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    principal = await validator_for(dev_key).authenticate(f"Bearer {result.stdout.strip()}")
    assert principal.object_id == object_id(DEV_TENANT_ID, "user", "bob")


def test_missing_key_exits_2_with_a_hint(tmp_path: Path) -> None:
    result = run_cli("--user", "alice", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "GATEWAY_DEV_ISSUER_PRIVATE_KEY" in result.stderr
    assert "local.settings.json" in result.stderr


def test_unreadable_local_settings_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text("{not json")

    result = run_cli("--user", "alice", cwd=tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot read")


def test_bad_key_is_one_line_without_the_key(tmp_path: Path) -> None:
    result = run_cli("--user", "alice", cwd=tmp_path, key="not-a-pem-secret-value")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "GATEWAY_DEV_ISSUER_PRIVATE_KEY" in result.stderr
    assert "not-a-pem-secret-value" not in result.stderr


def test_user_and_app_are_exclusive(dev_key: str, tmp_path: Path) -> None:
    result = run_cli("--user", "a", "--app", "b", cwd=tmp_path, key=dev_key)
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
