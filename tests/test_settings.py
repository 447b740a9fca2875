"""Settings: development-only choices are refused in production; names stay in step."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from functions.errors import ConfigurationError
from functions.settings import CLIENT_ENVIRONMENT_NAMES, SETTING_NAMES, Settings

REPO = Path(__file__).resolve().parents[1]
AZURE_TABLES = "https://acct.table.core.windows.net"


def prod_env(**extra: str) -> dict[str, str]:
    env = {
        "GATEWAY_ENVIRONMENT": "production",
        "GATEWAY_TABLE_ENDPOINT": AZURE_TABLES,
        "GATEWAY_QUEUE_ENDPOINT": "https://acct.queue.core.windows.net",
        "GATEWAY_BLOB_ENDPOINT": "https://acct.blob.core.windows.net",
        "GATEWAY_KEY_VAULT_URL": "https://kv.vault.azure.net/",
        "GATEWAY_AUTH_TENANT_IDS": "t1",
        "GATEWAY_AUTH_AUDIENCES": "api://gw",
    }
    env.update(extra)
    return env


def test_production_defaults_to_key_vault() -> None:
    settings = Settings.from_env(prod_env())
    assert settings.secret_backend == "keyvault"
    assert settings.tenant_ids == ("t1",)


def test_environment_defaults_to_production() -> None:
    env = prod_env()
    del env["GATEWAY_ENVIRONMENT"]
    assert Settings.from_env(env).environment == "production"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"GATEWAY_SECRET_STORE": "local", "GATEWAY_LOCAL_SECRET_KEY": "x"}, "development only"),
        ({"GATEWAY_DEV_ISSUER_PRIVATE_KEY": "pem"}, "development only"),
        ({"GATEWAY_DEV_UPSTREAM_RESOLVE": "a:443=127.0.0.1:1"}, "development only"),
        ({"GATEWAY_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=k"}, "account keys"),
        ({"GATEWAY_AUTH_TENANT_IDS": ""}, "GATEWAY_AUTH_TENANT_IDS"),
        ({"GATEWAY_AUTH_AUDIENCES": " , "}, "GATEWAY_AUTH_AUDIENCES"),
        ({"GATEWAY_KEY_VAULT_URL": ""}, "GATEWAY_KEY_VAULT_URL"),
        ({"GATEWAY_TABLE_ENDPOINT": ""}, "GATEWAY_TABLE_ENDPOINT"),
        ({"GATEWAY_ENVIRONMENT": "staging"}, "GATEWAY_ENVIRONMENT"),
        ({"GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "soon"}, "must be a number"),
        ({"GATEWAY_MAX_REQUEST_BYTES": "-1"}, "must be positive"),
    ],
)
def test_refused_settings(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(prod_env(**extra))


def test_development_needs_a_local_key_for_the_local_store() -> None:
    env = {
        "GATEWAY_ENVIRONMENT": "development",
        "GATEWAY_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    }
    with pytest.raises(ConfigurationError, match="GATEWAY_LOCAL_SECRET_KEY"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "GATEWAY_LOCAL_SECRET_KEY": "k"})
    assert settings.secret_backend == "local" and settings.tenant_ids and settings.audiences


def test_every_setting_the_code_reads_is_declared_and_in_the_sample() -> None:
    used: set[str] = set()
    for path in (REPO / "functions").rglob("*.py"):
        used |= set(re.findall(r"\"(GATEWAY_[A-Z_]+)\"", path.read_text()))
    sample = set(json.loads((REPO / "local.settings.sample.json").read_text())["Values"])
    used -= set(CLIENT_ENVIRONMENT_NAMES)
    assert used <= set(SETTING_NAMES), used - set(SETTING_NAMES)
    assert set(SETTING_NAMES) <= sample, set(SETTING_NAMES) - sample
