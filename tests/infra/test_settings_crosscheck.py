"""Gate 3: the settings the code reads (functions.settings.SETTING_NAMES), the Bicep app
settings (infra/app/function.bicep, var appSettings), infra/settings-not-in-azure.json and
local.settings.sample.json agree. Adding a setting to SETTING_NAMES without deciding its
Azure value (or listing it with a reason) fails here."""

from __future__ import annotations

import json

from functions.settings import SETTING_NAMES, Settings
from tests.infra.bicep import INFRA, REPO, literal, load_json, object_props, parse, text

FUNCTION = parse(INFRA / "app" / "function.bicep")
MAIN = parse(INFRA / "main.bicep")

# Settings issue 7 names as development-only: they must never be set in Azure.
DEVELOPMENT_ONLY = {
    "GATEWAY_STORAGE_CONNECTION_STRING",
    "GATEWAY_LOCAL_SECRET_KEY",
    "GATEWAY_LOCAL_SECRETS_DIR",
    "GATEWAY_DEV_ISSUER_PRIVATE_KEY",
    "GATEWAY_KEY_VAULT_CA_FILE",
    "GATEWAY_TABLE_PREFIX",
}


def app_settings() -> dict[str, object]:
    """Name -> value (literal, or the Bicep expression as written) of the app settings."""
    return literal(FUNCTION.variable("appSettings"))


def not_in_azure() -> dict[str, str]:
    return load_json("settings-not-in-azure.json")["settings"]


def test_app_settings_variable_is_what_the_site_gets() -> None:
    config = [
        r
        for r in FUNCTION.resources_of_type("Microsoft.Web/sites/config")
        if literal(r.get("name")) == "appsettings"
    ]
    assert len(config) == 1, "function.bicep: expected one appsettings config resource"
    assert text(config[0].get("properties")) == "appSettings"
    assert "appSettings" not in {r.symbol for r in FUNCTION.resources()}


def test_every_setting_the_code_reads_is_set_in_azure_or_listed_with_a_reason() -> None:
    set_in_azure = set(app_settings())
    listed = not_in_azure()
    missing = [name for name in SETTING_NAMES if name not in set_in_azure and name not in listed]
    assert not missing, (
        f"set these in infra/app/function.bicep appSettings, or list them with a reason in "
        f"infra/settings-not-in-azure.json: {missing}"
    )
    both = sorted(set_in_azure & set(listed))
    assert not both, f"both set in Bicep and listed as not set: {both}"


def test_not_in_azure_list_is_current_and_every_entry_has_a_one_line_reason() -> None:
    for name, reason in not_in_azure().items():
        assert name in SETTING_NAMES, (
            f"settings-not-in-azure.json: {name} is not in SETTING_NAMES (stale)"
        )
        assert isinstance(reason, str) and reason.strip(), f"{name}: give a reason"
        assert "\n" not in reason, f"{name}: one line"


def test_development_only_settings_are_never_set_in_azure() -> None:
    assert not DEVELOPMENT_ONLY & set(app_settings())
    assert DEVELOPMENT_ONLY <= set(not_in_azure())
    for name in DEVELOPMENT_ONLY:
        assert not_in_azure()[name].startswith("development only"), name


def test_every_gateway_app_setting_and_output_is_a_setting_the_code_reads() -> None:
    stale = [n for n in app_settings() if n.startswith("GATEWAY_") and n not in SETTING_NAMES]
    assert not stale, f"app settings the code does not read (stale): {stale}"
    outputs = [n for n in MAIN.outputs() if n.startswith("GATEWAY_") and n not in SETTING_NAMES]
    assert not outputs, f"main.bicep outputs named like settings the code does not read: {outputs}"


def test_every_setting_is_in_local_settings_sample() -> None:
    values = json.loads((REPO / "local.settings.sample.json").read_text("utf-8"))["Values"]
    missing = [name for name in SETTING_NAMES if name not in values]
    assert not missing, f"add to local.settings.sample.json Values: {missing}"


def test_azure_app_settings_make_a_valid_production_configuration() -> None:
    settings = app_settings()
    assert settings["GATEWAY_ENVIRONMENT"] == "production"
    assert settings["GATEWAY_SECRET_STORE"] == "keyvault"
    # Expressions (endpoints, parameters) are resolved at deployment: stand in a value.
    env = {}
    for name, node in object_props(FUNCTION.variable("appSettings")).items():
        if name not in SETTING_NAMES:
            continue
        is_plain_string = node.type == "string" and "${" not in text(node)
        env[name] = literal(node) if is_plain_string else f"https://resolved.invalid/{name.lower()}"
    parsed = Settings.from_env(env)  # raises ConfigurationError on an unusable set
    assert not parsed.is_development
    assert parsed.secret_backend == "keyvault"
    assert parsed.table_endpoint and parsed.key_vault_url
    assert parsed.tenant_ids and parsed.audiences and parsed.public_base_url
