"""The provider catalog is validated when loaded; templates refuse injection."""

from __future__ import annotations

import pytest

from functions.oauth import CatalogError, ProviderCatalog, default_catalog

REQUIRED = {
    "generic-oauth2",
    "generic-oidc",
    "entra-id",
    "microsoft-account",
    "github",
    "google",
    "salesforce",
    "slack",
    "dropbox",
    "atlassian",
    "zoom",
    "hubspot",
}


def test_shipped_catalog_loads_with_every_required_provider():
    catalog = default_catalog()
    assert REQUIRED <= set(catalog.providers)
    assert catalog.get("github").token_response == "form"
    assert catalog.get("zoom").client_auth == "basic"
    assert (
        catalog.get("entra-id").client_credentials
        and catalog.get("generic-oauth2").client_credentials
    )


def _load(entry: dict) -> ProviderCatalog:
    return ProviderCatalog.from_dict({"format": 1, "providers": {"p": entry}})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {
                "displayName": "x",
                "tokenUrl": "https://t",
                "authorizationUrl": "https://a",
                "colour": 1,
            },
            "colour: unknown key",
        ),
        ({"displayName": "x", "authorizationUrl": "https://a"}, "tokenUrl: required"),
        (
            {"displayName": "x", "tokenUrl": "http://t.example", "authorizationUrl": "https://a"},
            "https URL",
        ),
        (
            {"displayName": "x", "tokenUrl": "https://{tenant}/t", "authorizationUrl": "https://a"},
            "does not declare",
        ),
        (
            {
                "displayName": "x",
                "tokenUrl": "https://t",
                "authorizationUrl": "https://a",
                "clientAuth": "jwt",
            },
            "clientAuth",
        ),
        (
            {
                "displayName": "x",
                "tokenUrl": "https://t",
                "authorizationUrl": "https://a",
                "tokenClient": "msal",
            },
            "msal",
        ),
    ],
)
def test_invalid_entries_are_refused_with_the_field_named(entry, message):
    with pytest.raises(CatalogError) as info:
        _load(entry)
    assert "provider 'p'" in info.value.detail and message in info.value.detail


async def test_templates_refuse_values_that_would_change_the_host_or_path():
    catalog = default_catalog()
    resolved = await catalog.resolve("entra-id", {"tenant": "contoso.onmicrosoft.com"})
    assert (
        resolved.token_url
        == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    for bad in ("evil.com/x", "a?b", "../common", "x#y"):
        with pytest.raises(CatalogError):
            await catalog.resolve("entra-id", {"tenant": bad})
    with pytest.raises(CatalogError):
        await catalog.resolve("salesforce", {"domain": "evil.com/path"})
    with pytest.raises(CatalogError, match="needs the setting"):
        await catalog.resolve("generic-oauth2", {"authorization_url": "https://a.example/auth"})
    with pytest.raises(CatalogError):
        await catalog.resolve(
            "generic-oauth2",
            {"authorization_url": "http://a.example/auth", "token_url": "https://t.example/t"},
        )


async def test_discovery_checks_the_issuer(oidc, http):
    catalog = default_catalog()
    resolved = await catalog.resolve("generic-oidc", {"issuer": oidc.issuer}, http=http)
    assert resolved.token_url == oidc.token_url and resolved.issuer == oidc.issuer
