"""Structure of infra/ that the Bicep compiler cannot check for us here: the security
settings issue 7 asks for, least-privilege role assignments with a comment naming each
role, UPPER_SNAKE outputs for azd, and the wiring between main.bicep, its modules,
abbreviations.json and main.parameters.json."""

from __future__ import annotations

import re

import pytest

from tests.infra.bicep import (
    INFRA,
    REPO,
    BicepFile,
    bicep_files,
    comment_above,
    literal,
    load_json,
    parse,
    text,
)

MAIN = parse(INFRA / "main.bicep")
STORAGE = parse(INFRA / "app" / "storage.bicep")
VAULT = parse(INFRA / "app" / "keyvault.bicep")
MONITORING = parse(INFRA / "app" / "monitoring.bicep")
FUNCTION = parse(INFRA / "app" / "function.bicep")
RBAC = parse(INFRA / "app" / "rbac.bicep")
NETWORK = parse(INFRA / "app" / "network.bicep")
ALL = [parse(p) for p in bicep_files()]

# Built-in role definition IDs (identical in every tenant) and their names.
KNOWN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# Broad roles that must never be granted by these templates.
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
}
APP_IDENTITY_ROLES = {
    "Storage Blob Data Owner",
    "Storage Queue Data Contributor",
    "Storage Table Data Contributor",
    "Key Vault Secrets Officer",
    "Monitoring Metrics Publisher",
}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")


def one(file: BicepFile, type_name: str):
    found = file.resources_of_type(type_name)
    assert len(found) == 1, f"{file.rel}: expected one {type_name}, found {len(found)}"
    return found[0]


# --- main.bicep ----------------------------------------------------------------------


def test_main_is_subscription_scoped_and_creates_the_resource_group() -> None:
    scope = MAIN.declarations("target_scope_assignment")
    assert scope and "'subscription'" in text(scope[0])
    rg = one(MAIN, "Microsoft.Resources/resourceGroups")
    assert "abbrs.resourcesResourceGroups" in text(rg.get("name"))


def test_main_composes_one_module_per_concern_and_they_exist() -> None:
    modules = MAIN.modules()
    for path in modules.values():
        assert (INFRA / path).is_file(), f"main.bicep: module file {path} is missing"
    assert {
        "app/identity.bicep",
        "app/storage.bicep",
        "app/keyvault.bicep",
        "app/monitoring.bicep",
        "app/function.bicep",
        "app/rbac.bicep",
        "app/network.bicep",
    } <= set(modules.values())


def test_resource_token_and_names_come_from_abbreviations() -> None:
    token = text(MAIN.variable("resourceToken"))
    assert token == "toLower(uniqueString(subscription().id, environmentName, location))"
    assert text(MAIN.variable("abbrs")) == "loadJsonContent('abbreviations.json')"
    abbreviations = load_json("abbreviations.json")
    used = set(re.findall(r"abbrs\.(\w+)", (INFRA / "main.bicep").read_text("utf-8")))
    assert used, "main.bicep uses no abbreviation"
    assert used <= set(abbreviations), (
        f"not in abbreviations.json: {sorted(used - set(abbreviations))}"
    )


def test_azd_parameters_file_matches_main_parameters() -> None:
    declared = MAIN.parameters()
    given = load_json("main.parameters.json")["parameters"]
    assert set(given) <= set(declared), f"unknown parameters: {sorted(set(given) - set(declared))}"
    required = {name for name, node in declared.items() if "=" not in text(node)}
    assert required <= set(given), (
        f"required but not in main.parameters.json: {required - set(given)}"
    )
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert given["location"]["value"] == "${AZURE_LOCATION}"
    assert given["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_main_outputs_are_upper_snake_and_cover_azd_and_the_gateway() -> None:
    outputs = MAIN.outputs()
    bad = [name for name in outputs if not UPPER_SNAKE.match(name)]
    assert not bad, f"outputs not in UPPER_SNAKE: {bad}"
    assert {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "GATEWAY_TABLE_ENDPOINT",
        "GATEWAY_KEY_VAULT_URL",
    } <= set(outputs)


def test_every_resource_names_a_dated_api_version() -> None:
    for file in ALL:
        for resource in file.resources():
            assert re.match(
                r"^Microsoft\.[A-Za-z]+(/[A-Za-z]+)+@\d{4}-\d{2}-\d{2}(-preview)?$",
                resource.type_version,
            ), f"{resource.where()}: {resource.type_version!r}"


# --- storage -------------------------------------------------------------------------


def test_storage_account_is_entra_id_only_and_tls12_https() -> None:
    account = one(STORAGE, "Microsoft.Storage/storageAccounts")
    props = literal(account.get("properties"))
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True


def test_storage_has_the_tables_and_a_private_deployment_container() -> None:
    container = one(STORAGE, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert literal(container.get("properties", "publicAccess")) == "None"
    tables = literal(MAIN.variable("tableNames"))
    assert {"connectors", "connections", "oauthstates", "audit"} <= set(tables)
    one(STORAGE, "Microsoft.Storage/storageAccounts/tableServices/tables")
    one(STORAGE, "Microsoft.Storage/storageAccounts/queueServices/queues")


# --- Key Vault -----------------------------------------------------------------------


def test_key_vault_uses_rbac_soft_delete_and_purge_protection() -> None:
    vault = one(VAULT, "Microsoft.KeyVault/vaults")
    props = literal(vault.get("properties"))
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert props["publicNetworkAccess"] == "publicNetworkAccess"  # the parameter
    assert "accessPolicies" not in props
    decorators = VAULT.parameters()["publicNetworkAccess"].prev_named_sibling
    assert decorators is not None and "'Disabled'" in text(decorators)


def test_main_exposes_key_vault_public_access_and_private_networking_switches() -> None:
    params = MAIN.parameters()
    assert "keyVaultPublicNetworkAccess" in params
    assert "'Enabled'" in text(params["keyVaultPublicNetworkAccess"])
    assert "usePrivateNetworking" in params and "bool" in text(params["usePrivateNetworking"])
    network = MAIN.declarations("module_declaration")
    conditional = [n for n in network if "app/network.bicep" in text(n)]
    assert conditional and "if (usePrivateNetworking)" in text(conditional[0])


def test_private_networking_covers_storage_and_vault_with_dns_zones() -> None:
    endpoints = literal(NETWORK.variable("endpoints"))
    assert {e["name"] for e in endpoints} == {"blob", "queue", "table", "vault"}
    one(NETWORK, "Microsoft.Network/privateEndpoints")
    one(NETWORK, "Microsoft.Network/privateDnsZones")
    one(NETWORK, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    one(NETWORK, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    vnet = literal(one(NETWORK, "Microsoft.Network/virtualNetworks").get("properties"))
    delegations = [
        d["properties"]["serviceName"]
        for s in vnet["subnets"]
        for d in s["properties"].get("delegations", [])
    ]
    assert delegations == ["Microsoft.App/environments"]  # Flex Consumption VNet integration


# --- monitoring ----------------------------------------------------------------------


def test_application_insights_is_workspace_based_with_local_auth_disabled() -> None:
    insights = one(MONITORING, "Microsoft.Insights/components")
    props = literal(insights.get("properties"))
    assert props["DisableLocalAuth"] is True
    assert props["WorkspaceResourceId"] == "logAnalytics.id"
    one(MONITORING, "Microsoft.OperationalInsights/workspaces")


# --- function app --------------------------------------------------------------------


def test_function_app_is_flex_consumption_python_311_with_a_user_assigned_identity() -> None:
    plan = one(FUNCTION, "Microsoft.Web/serverfarms")
    assert literal(plan.get("sku")) == {"name": "FC1", "tier": "FlexConsumption"}
    site = one(FUNCTION, "Microsoft.Web/sites")
    assert literal(site.get("kind")) == "functionapp,linux"
    assert literal(site.get("identity", "type")) == "UserAssigned"
    props = literal(site.get("properties"))
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    config = props["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert set(config["scaleAndConcurrency"]) >= {"maximumInstanceCount", "instanceMemoryMB"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert "azd-service-name" in text(site.get("tags"))


def test_functions_host_storage_is_identity_based() -> None:
    settings = literal(FUNCTION.variable("appSettings"))
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert "AzureWebJobsStorage__accountName" in settings
    assert "AzureWebJobsStorage" not in settings  # no connection string
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "Authorization=AAD;ClientId=${identityClientId}"
    )
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings
    # Flex Consumption sets the runtime in functionAppConfig; these settings are rejected.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"} & set(settings)


def test_no_app_setting_holds_a_secret() -> None:
    for key, value in literal(FUNCTION.variable("appSettings")).items():
        lowered = str(value).lower()
        for marker in ("accountkey=", "sharedaccesssignature", "sig=", "listkeys(", "password"):
            assert marker not in lowered, f"app setting {key} looks like a secret: {value!r}"
    for file in ALL:
        source = file.path.read_text("utf-8")
        assert "listKeys(" not in source, f"{file.rel} reads account keys"


# --- role assignments ----------------------------------------------------------------


def _role_variables() -> dict[str, str]:
    """rbac.bicep var name -> role definition GUID."""
    found = {}
    for name, node in RBAC.variables().items():
        value = literal(node)
        if isinstance(value, str) and GUID.match(value):
            found[name] = value
    return found


def test_role_definition_ids_are_named_variables_with_the_role_named_above() -> None:
    roles = _role_variables()
    assert roles, "rbac.bicep declares no role definition ID variables"
    for node in RBAC.declarations("variable_declaration"):
        name = text(node.named_children[0])
        if name not in roles:
            continue
        guid = roles[name]
        assert guid in KNOWN_ROLES, (
            f"rbac.bicep: var {name} = unknown role {guid}; add it to KNOWN_ROLES"
        )
        comment = comment_above(node)
        assert comment is not None, f"rbac.bicep: var {name} has no comment"
        assert KNOWN_ROLES[guid] in comment, (
            f"rbac.bicep: the comment above var {name} must name {KNOWN_ROLES[guid]!r}"
        )


def _assignments() -> list[tuple[str, object, str]]:
    """(where, resource, role name) for every role assignment in infra/."""
    roles = _role_variables()
    found = []
    for file in ALL:
        for resource in file.resources_of_type("Microsoft.Authorization/roleAssignments"):
            assert file.rel == RBAC.rel, f"{resource.where()}: keep role assignments in rbac.bicep"
            definition = text(resource.get("properties", "roleDefinitionId"))
            names = [v for v in roles if re.search(rf"\b{v}\b", definition)]
            assert len(names) == 1, (
                f"{resource.where()}: roleDefinitionId must use one named variable"
            )
            found.append((resource.where(), resource, KNOWN_ROLES[roles[names[0]]]))
    return found


def test_every_role_assignment_has_a_comment_naming_its_role() -> None:
    assignments = _assignments()
    assert len(assignments) >= 5
    for where, resource, role in assignments:
        comment = resource.comment_above()
        assert comment is not None, f"{where}: no comment directly above the role assignment"
        assert role in comment, f"{where}: the comment must name the role {role!r}, got {comment!r}"


def test_role_assignments_are_least_privilege_and_resource_scoped() -> None:
    for file in ALL:
        source = file.path.read_text("utf-8")
        for guid, name in FORBIDDEN_ROLES.items():
            assert guid not in source, f"{file.rel} grants {name}"
    app_roles = set()
    for where, resource, role in _assignments():
        props = literal(resource.get("properties"))
        assert props.get("principalType"), f"{where}: set principalType"
        scope = resource.get("scope")
        assert scope is not None, f"{where}: scope it to the one resource it is for"
        assert text(scope) in {"storage", "vault", "applicationInsights"}, (
            f"{where}: scope {text(scope)}"
        )
        if props["principalId"] == "appPrincipalId":
            app_roles.add(role)
        else:
            assert props["principalId"] == "userPrincipalId"
            assert "if (assignUser)" in text(resource.node), (
                f"{where}: developer roles are optional"
            )
    assert app_roles == APP_IDENTITY_ROLES


def test_every_bicep_file_is_reached_from_main() -> None:
    reached = {"main.bicep"} | set(MAIN.modules().values())
    files = {p.relative_to(INFRA).as_posix() for p in bicep_files()}
    assert files == reached, f"unused: {sorted(files - reached)}"


@pytest.mark.parametrize("name", ["azure.yaml", ".funcignore"])
def test_repo_root_deployment_files_exist(name: str) -> None:
    assert (REPO / name).is_file()


def test_azure_yaml_deploys_the_repo_as_a_python_function_app() -> None:
    lines = [
        line.split("#", 1)[0].rstrip()
        for line in (REPO / "azure.yaml").read_text("utf-8").splitlines()
    ]
    body = "\n".join(line for line in lines if line.strip())
    assert re.search(r"^services:\n  api:\n(    \S.*\n?)+", body, re.M), body
    service = re.search(r"^  api:\n((?:    .*\n?)+)", body, re.M)
    assert service is not None
    fields = dict(re.findall(r"^    (\w+): *(\S+)", service.group(1), re.M))
    assert fields == {"project": ".", "language": "python", "host": "function"}


def test_funcignore_keeps_dev_files_out_of_the_package() -> None:
    entries = {
        line.strip().lstrip("/").rstrip("/")
        for line in (REPO / ".funcignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    required = {
        "tests",
        "node_modules",
        ".venv",
        "bench",
        "infra",
        "local.settings.json",
        ".localdata",
    }
    assert required <= entries, f"missing from .funcignore: {sorted(required - entries)}"
    for kept in ("functions", "function_app.py", "host.json", "requirements.txt"):
        assert kept not in entries, f".funcignore must not exclude {kept}"
