"""Request templates (Power Platform `oauth2generic`): rendering, the consent URL, the
templated code exchange and refresh, and the Power Platform mapping. No network: the
token endpoint is an `httpx.MockTransport` that records what it received."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from functions.oauth import (
    CatalogError,
    OAuthClient,
    TokenEndpointClient,
    TokenSet,
    default_catalog,
)
from functions.oauth.consent import authorization_url
from functions.oauth.pkce import code_challenge_s256
from functions.oauth.templates import RequestTemplates
from functions.powerplatform import OAuth2Settings, load_definition
from functions.services.oauth import (
    OAuthNotConfiguredError,
    OAuthNotSupportedError,
    _power_platform_provider,
)
from tests.powerplatform.samples import require_connectors_dir

SECRET = "s3cr&t=value with space"  # noqa: S105 - a test value that must never leak
VERIFIER = "v" * 43
REDIRECT = "https://gateway.example.test/api/oauth/callback"

BIGEVAL = {
    "authorizationUrlTemplate": "{BigEvalUrl}/connect/authorize",
    "authorizationUrlQueryStringTemplate": (
        "?response_type=code&client_id={BigEvalClientId}&redirect_uri={RedirectUrl}"
        "&scope={Scopes}&state={State}"
    ),
    "tokenUrlTemplate": "{BigEvalUrl}/connect/token",
    "refreshUrlTemplate": "{BigEvalUrl}/connect/token",
    "tokenBodyTemplate": (
        "grant_type=authorization_code&code={Code}&redirect_uri={RedirectUrl}"
        "&client_id={BigEvalClientId}&client_secret={BigEvalClientSecret}"
    ),
    "refreshBodyTemplate": (
        "grant_type=refresh_token&refresh_token={RefreshToken}&client_id={BigEvalClientId}"
        "&client_secret={BigEvalClientSecret}&redirect_uri={RedirectUrl}"
    ),
}
PLAIN = {"token:BigEvalUrl": "https://bigeval.example.com/", "token:BigEvalClientId": "my client"}
SECRETS = {"token:BigEvalClientSecret": SECRET}


def generic_settings(
    custom: dict[str, str], scopes: tuple[str, ...] = ("bigeval-api-v1",)
) -> OAuth2Settings:
    """OAuth2Settings as `powerplatform/auth.py` builds them for oauth2generic."""
    return OAuth2Settings(
        identity_provider="oauth2generic",
        parameter="token",
        authorization_url=custom.get("authorizationUrlTemplate"),
        token_url=custom.get("tokenUrlTemplate"),
        refresh_url=custom.get("refreshUrlTemplate") or custom.get("tokenUrlTemplate"),
        scopes=scopes,
        client_id="dummy",
        custom_parameters=dict(custom),
    )


async def resolve(
    custom: dict[str, str] = BIGEVAL,
    plain: dict[str, Any] = PLAIN,
    secret: dict[str, Any] | None = SECRETS,
) -> Any:
    provider_id, values, scopes = _power_platform_provider(generic_settings(custom), plain, secret)
    return await default_catalog().resolve(provider_id, values), scopes


class Recorder:
    """A token endpoint that answers JSON and keeps every request it got."""

    def __init__(self, responses: list[dict[str, Any]] | None = None, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.responses = list(responses or [])
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = (
            self.responses.pop(0)
            if self.responses
            else {"access_token": "at-1", "expires_in": 3600, "refresh_token": "rt-1"}
        )
        return httpx.Response(self.status, json=body)

    def form(self, index: int = -1) -> list[tuple[str, str]]:
        return parse_qsl(self.requests[index].content.decode(), keep_blank_values=True)


# -- rendering ---------------------------------------------------------------------------


def test_values_are_percent_encoded_and_cannot_inject_parameters_or_placeholders():
    templates = RequestTemplates(
        token_body="a={Name}&b={Code}&c={Other}",
        values={"Name": "x&y=z {Code}", "token:Other": "ü/?#"},
    )
    rendered = templates.render("token_body", {"Code": "c d+e"})
    assert rendered == "a=x%26y%3Dz%20%7BCode%7D&b=c%20d%2Be&c=%C3%BC%2F%3F%23"
    assert parse_qsl(rendered) == [("a", "x&y=z {Code}"), ("b", "c d+e"), ("c", "ü/?#")]


def test_well_known_placeholders_ignore_case_and_win_over_parameters():
    templates = RequestTemplates(
        authorization_query="?client_id={clientId}&scope={scopes}&state={STATE}",
        scope_delimiter=",",
        values={"ClientId": "from-parameter"},
    )
    rendered = templates.render(
        "authorization_query", {"ClientId": "cid", "Scopes": "a,b", "State": "st"}
    )
    assert rendered == "client_id=cid&scope=a%2Cb&state=st"  # leading "?" dropped


def test_parameters_match_exactly_then_with_token_prefix_then_ignoring_case():
    templates = RequestTemplates(
        token_body="{env}|{HostName}|{hostname}", values={"token:env": "e", "token:hostName": "h"}
    )
    assert templates.render("token_body", {}) == "e|h|h"


def test_well_known_placeholder_absent_from_a_request_renders_empty():
    # WorkSpan's refresh body names {Code}; a refresh has none.
    templates = RequestTemplates(refresh_body="code={Code}&refresh_token={RefreshToken}")
    assert templates.render("refresh_body", {"RefreshToken": "rt"}) == "code=&refresh_token=rt"


def test_missing_placeholder_is_named_and_no_value_leaks():
    templates = RequestTemplates(
        token_body="client_secret={BigEvalClientSecret}&client_id={BigEvalClientId}",
        refresh_query="?x={HostName}",
        values={"token:BigEvalClientId": SECRET},
    )
    assert templates.missing() == [
        "{BigEvalClientSecret} (token body)",
        "{HostName} (refresh URL query string)",
    ]
    with pytest.raises(CatalogError) as caught:
        templates.check()
    assert (
        "{BigEvalClientSecret} (token body)" in caught.value.detail
        and "{HostName}" in caught.value.detail
    )
    with pytest.raises(CatalogError) as rendered:
        templates.render("token_body", {"ClientSecret": SECRET})
    message = rendered.value.detail
    assert "{BigEvalClientSecret}" in message and "token body" in message
    for text in (message, caught.value.detail, repr(templates)):
        assert SECRET not in text and "s3cr" not in text


def test_client_secret_placeholder_without_a_client_secret_is_refused():
    templates = RequestTemplates(token_body="client_secret={ClientSecret}")
    with pytest.raises(CatalogError, match=r"\{ClientSecret\}.*client secret"):
        templates.render("token_body", {"ClientSecret": None})


# -- catalog and consent URL -------------------------------------------------------------


async def test_oauth2generic_maps_to_the_template_provider_with_connection_values():
    provider, scopes = await resolve()
    assert provider.spec.id == "generic-oauth2-templates" and provider.spec.request_templates
    assert provider.authorization_url == "https://bigeval.example.com/connect/authorize"
    assert provider.token_url == provider.refresh_url == "https://bigeval.example.com/connect/token"
    assert provider.templates.values["token:BigEvalClientSecret"] == SECRET
    assert scopes == ("bigeval-api-v1",)
    assert SECRET not in repr(provider) and SECRET not in repr(provider.templates)


async def test_a_missing_secret_connection_parameter_is_named_at_resolve():
    with pytest.raises(CatalogError) as caught:
        await resolve(secret=None)
    detail = caught.value.detail
    assert "{BigEvalClientSecret} (token body)" in detail and "(refresh body)" in detail
    assert "generic-oauth2-templates" in detail


def test_a_missing_url_parameter_is_named():
    with pytest.raises(OAuthNotConfiguredError, match="BigEvalUrl"):
        _power_platform_provider(generic_settings(BIGEVAL), {"token:BigEvalClientId": "c"}, SECRETS)


async def test_template_urls_must_still_be_https():
    with pytest.raises(CatalogError, match="https"):
        await resolve(plain={**PLAIN, "token:BigEvalUrl": "http://bigeval.example.com"})


def test_identity_provider_names_ignore_case_and_unknown_ones_are_refused():
    settings = generic_settings(BIGEVAL)
    upper = OAuth2Settings(**{**settings.__dict__, "identity_provider": "OAuth2Generic"})
    assert _power_platform_provider(upper, PLAIN, SECRETS)[0] == "generic-oauth2-templates"
    other = OAuth2Settings(**{**settings.__dict__, "identity_provider": "keycloak-someday"})
    with pytest.raises(OAuthNotSupportedError):
        _power_platform_provider(other, PLAIN, SECRETS)


async def test_authorization_url_is_the_rendered_template_plus_pkce():
    provider, scopes = await resolve()
    client = OAuthClient("configured-client", "connector-secret", scopes)
    challenge = code_challenge_s256(VERIFIER)
    url = authorization_url(
        provider,
        client,
        redirect_uri=REDIRECT,
        state="st&ate",
        code_challenge=challenge,
        nonce=None,
    )
    assert url.startswith(
        "https://bigeval.example.com/connect/authorize?response_type=code&client_id=my%20client&"
    )
    query = parse_qs(urlsplit(url).query)
    assert query == {
        "response_type": ["code"],
        "client_id": ["my client"],  # the connection parameter the template names
        "redirect_uri": [REDIRECT],
        "scope": ["bigeval-api-v1"],
        "state": ["st&ate"],
        "code_challenge": [challenge],
        "code_challenge_method": ["S256"],
    }
    assert SECRET not in url and "s3cr" not in url


async def test_state_is_appended_when_the_template_forgets_it_and_explicit_pkce_is_used():
    custom = {
        **BIGEVAL,
        "authorizationUrlQueryStringTemplate": (
            "?client_id={ClientId}&scope={Scopes}&cc={CodeChallenge}&code_challenge_method=S256"
        ),
        "scopeListDelimiter": ",",
    }
    provider_id, values, _ = _power_platform_provider(
        generic_settings(custom, ("a", "b")), PLAIN, SECRETS
    )
    provider = await default_catalog().resolve(provider_id, values)
    client = OAuthClient("cid", "sec", ("a", "b"))
    url = authorization_url(
        provider, client, redirect_uri=REDIRECT, state="st", code_challenge="ch", nonce=None
    )
    assert parse_qsl(urlsplit(url).query) == [
        ("client_id", "cid"),
        ("scope", "a,b"),
        ("cc", "ch"),
        ("code_challenge_method", "S256"),
        ("state", "st"),
    ]


async def test_client_secret_placeholder_needs_the_connectors_secret_before_consent():
    custom = {
        **BIGEVAL,
        "tokenBodyTemplate": "code={Code}&client_id={ClientId}&client_secret={ClientSecret}",
    }
    provider_id, values, scopes = _power_platform_provider(generic_settings(custom), PLAIN, SECRETS)
    provider = await default_catalog().resolve(provider_id, values)
    with pytest.raises(CatalogError, match=r"\{ClientSecret\}"):
        authorization_url(
            provider,
            OAuthClient("cid", None, scopes),
            redirect_uri=REDIRECT,
            state="s",
            code_challenge=None,
            nonce=None,
        )


# -- token requests ----------------------------------------------------------------------


async def test_code_exchange_posts_the_rendered_body_with_the_verifier_and_no_added_client_auth():
    provider, scopes = await resolve()
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        tokens = await TokenEndpointClient(http).exchange_code(
            provider,
            OAuthClient("configured-client", "connector-secret", scopes),
            code="the code/1",
            redirect_uri=REDIRECT,
            code_verifier=VERIFIER,
        )
    request = recorder.requests[0]
    assert str(request.url) == "https://bigeval.example.com/connect/token"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    assert recorder.form() == [
        ("grant_type", "authorization_code"),
        ("code", "the code/1"),
        ("redirect_uri", REDIRECT),
        ("client_id", "my client"),
        ("client_secret", SECRET),
        ("code_verifier", VERIFIER),
    ]
    assert tokens.access_token == "at-1" and tokens.refresh_token == "rt-1"
    assert tokens.redirect_uri == REDIRECT  # for {RedirectUrl} in the refresh body
    assert TokenSet.from_dict(json.loads(tokens.to_secret())["oauth"]).redirect_uri == REDIRECT


async def test_refresh_posts_the_refresh_body_template_to_the_refresh_url_with_its_query():
    custom = {
        **BIGEVAL,
        "refreshUrlTemplate": "{BigEvalUrl}/connect/refresh",
        "refreshUrlQueryStringTemplate": "?x-ws-env={HostName}",
        "tokenUrlQueryStringTemplate": "?x-ws-env={HostName}",
    }
    provider_id, values, scopes = _power_platform_provider(
        generic_settings(custom), {**PLAIN, "token:HostName": "eu 1"}, SECRETS
    )
    provider = await default_catalog().resolve(provider_id, values)
    recorder = Recorder(
        [
            {"access_token": "at-1", "expires_in": 60, "refresh_token": "rt-1"},
            {"access_token": "at-2", "expires_in": 60},
        ]
    )
    client = OAuthClient("configured-client", "connector-secret", scopes)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        endpoint = TokenEndpointClient(http)
        first = await endpoint.exchange_code(
            provider, client, code="c", redirect_uri=REDIRECT, code_verifier=None
        )
        second = await endpoint.refresh(provider, client, first)
    assert (
        str(recorder.requests[0].url) == "https://bigeval.example.com/connect/token?x-ws-env=eu%201"
    )
    assert "code_verifier" not in dict(recorder.form(0))  # no PKCE, nothing appended
    assert (
        str(recorder.requests[1].url)
        == "https://bigeval.example.com/connect/refresh?x-ws-env=eu%201"
    )
    assert recorder.form(1) == [
        ("grant_type", "refresh_token"),
        ("refresh_token", "rt-1"),
        ("client_id", "my client"),
        ("client_secret", SECRET),
        ("redirect_uri", REDIRECT),
    ]
    # The response had no refresh token: the old one (and the redirect URI) are kept.
    assert (
        second.access_token == "at-2"
        and second.refresh_token == "rt-1"
        and second.redirect_uri == REDIRECT
    )


async def test_without_body_templates_the_rfc_6749_requests_are_used():
    custom = {k: v for k, v in BIGEVAL.items() if not k.endswith("BodyTemplate")}
    provider_id, values, scopes = _power_platform_provider(generic_settings(custom), PLAIN, None)
    provider = await default_catalog().resolve(provider_id, values)
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        endpoint = TokenEndpointClient(http)
        client = OAuthClient("cid", "csecret", scopes)
        tokens = await endpoint.exchange_code(
            provider, client, code="c", redirect_uri=REDIRECT, code_verifier=VERIFIER
        )
        await endpoint.refresh(provider, client, tokens)
    assert dict(recorder.form(0)) == {
        "grant_type": "authorization_code",
        "code": "c",
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        "client_id": "cid",
        "client_secret": "csecret",
    }
    assert dict(recorder.form(1)) == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-1",
        "client_id": "cid",
        "client_secret": "csecret",
    }


async def test_provider_errors_from_templated_requests_carry_no_secret():
    provider, scopes = await resolve()
    recorder = Recorder([{"error": "invalid_grant", "error_description": "bad code"}], status=400)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        with pytest.raises(Exception) as caught:
            await TokenEndpointClient(http).exchange_code(
                provider,
                OAuthClient("cid", "csecret", scopes),
                code="c",
                redirect_uri=REDIRECT,
                code_verifier=VERIFIER,
            )
    assert caught.value.code == "invalid_grant"
    assert SECRET not in str(caught.value) and "s3cr" not in repr(caught.value.__dict__)


# -- real definitions --------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["BiG EVAL", "WorkSpan", "AzureAD"])
async def test_real_oauth2generic_definitions_resolve(folder: str):
    root = require_connectors_dir()
    definition = load_definition(root / "certified-connectors" / folder)
    option = next(o for o in definition.auth_options if o.oauth2 is not None)
    settings = option.oauth2
    plain = {
        p.name: "https://api.example.com" if p.name.lower().endswith(("url", ":env")) else "value-1"
        for p in option.parameters
        if p.type in ("string",)
    }
    secret = {p.name: SECRET for p in option.parameters if p.type == "securestring"}
    provider_id, values, scopes = _power_platform_provider(settings, plain, secret)
    provider = await default_catalog().resolve(provider_id, values)
    assert provider.templates is not None and provider.templates.token_body
    client = OAuthClient("cid", "csecret", scopes)
    url = authorization_url(
        provider, client, redirect_uri=REDIRECT, state="st", code_challenge="ch", nonce=None
    )
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["state"] == "st" and query["code_challenge"] == "ch" and SECRET not in url
