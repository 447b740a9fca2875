"""The provider catalog: OAuth providers as data, validated when loaded.

`providers.json` describes each provider by protocol features only (code branches on
these, never on a provider's name):

    displayName           text for people
    protocol              "oauth2" | "oidc" (oidc: `nonce`, ID token, `openid` scope)
    tokenClient           "http" (httpx, RFC 6749 §4.1.3/§6) | "msal" (Microsoft identity)
    authorizationUrl      template, e.g. "https://login.microsoftonline.com/{tenant}/..."
    tokenUrl, refreshUrl  templates; refreshUrl defaults to tokenUrl
    discoveryUrl          template of an OpenID Provider Configuration document (OIDC
                          Discovery §4, RFC 8414 §3); endpoints not given come from it
    issuer                expected `iss` of ID tokens (discovery supplies it otherwise)
    msalAuthority         template of an Entra authority (tokenClient "msal")
    msalOidcAuthority     template of a generic OIDC authority for msal (tokenClient "msal")
    parameters            every `{name}` a template uses: kind "segment" (a tenant id),
                          "host" (a DNS name) or "url" (a whole https URL, generic
                          providers), optional "default" or "defaultFrom" (another name)
    clientAuth            "body" (client_secret_post) | "basic" (RFC 6749 §2.3.1)
    tokenResponse         "json" | "form" | "auto": what the token endpoint answers by
                          default; the Content-Type decides when it says
    scopeParameter        name of the scope parameter ("scope"; Slack user tokens differ)
    scopeSeparator        " " (RFC 6749 §3.3) unless the provider wants ","
    defaultScopes         always requested (e.g. openid, offline_access)
    authorizationParams   extra authorization request parameters (access_type=offline...)
    tokenParams           extra token request parameters
    tokenPath             key of the object holding the tokens in the response, if nested
    refreshTokens         "always" | "optional" (only some grants get one) | "never"
    refreshMarginSeconds  refresh this long before expiry (default 300)
    defaultLifetimeSeconds  assumed access token lifetime when `expires_in` is absent
    pkce                  send a PKCE S256 challenge (RFC 7636; default true)
    clientCredentials     supports the client-credentials grant (RFC 6749 §4.4)
    invalidGrantErrors    provider error codes that mean `invalid_grant`
    tokenExchange         the token endpoint offers OAuth 2.0 Token Exchange (RFC 8693),
                          used to act on behalf of the caller; discovered providers offer
                          it when `grant_types_supported` lists its grant type
    revocationUrl         template of the token revocation endpoint, for providers
                          without discovery (discovery's `revocation_endpoint` otherwise);
                          may name `{client_id}`, filled with the connector's client id
    revocationRequest     "rfc7009" (POST form `token` + `token_type_hint`, the refresh
                          token when there is one; client auth as `clientAuth`; 200) |
                          "delete-json-access-token" (DELETE with JSON
                          `{"access_token": ...}` and HTTP Basic client auth; 204: the
                          whole grant of that user and app is deleted, as GitHub's
                          `DELETE /applications/{client_id}/grant`)
    requestTemplates      the connector's settings may carry request templates (query
                          strings and bodies, Power Platform `oauth2generic`): settings
                          `authorization_query_template`, `token_query_template`,
                          `token_body_template`, `refresh_query_template`,
                          `refresh_body_template`, `scope_delimiter`, and `param:<name>`
                          for the values of their placeholders (see `templates.py`)

Unknown keys, unknown enum values, undeclared template parameters and non-https static
URLs are refused with a message naming the provider and field.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from functions.oauth.errors import CatalogError, ProviderError, TransientProviderError
from functions.oauth.templates import RequestTemplates

CATALOG_PATH = Path(__file__).with_name("providers.json")
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant type URN
DEFAULT_REFRESH_MARGIN = 300

Protocol_ = Literal["oauth2", "oidc"]
TokenClientKind = Literal["http", "msal"]
ClientAuth = Literal["body", "basic"]
ResponseFormat = Literal["json", "form", "auto"]
RefreshTokens = Literal["always", "optional", "never"]
ParameterKind = Literal["segment", "host", "url"]

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HOST = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

_KNOWN_KEYS = {
    "displayName",
    "protocol",
    "tokenClient",
    "authorizationUrl",
    "tokenUrl",
    "refreshUrl",
    "discoveryUrl",
    "issuer",
    "msalAuthority",
    "msalOidcAuthority",
    "parameters",
    "clientAuth",
    "tokenResponse",
    "scopeParameter",
    "scopeSeparator",
    "defaultScopes",
    "authorizationParams",
    "tokenParams",
    "tokenPath",
    "refreshTokens",
    "refreshMarginSeconds",
    "defaultLifetimeSeconds",
    "pkce",
    "clientCredentials",
    "invalidGrantErrors",
    "requestTemplates",
    "revocationUrl",
    "revocationRequest",
    "tokenExchange",
}
_TEMPLATE_KEYS = (
    "authorizationUrl",
    "tokenUrl",
    "refreshUrl",
    "discoveryUrl",
    "issuer",
    "msalAuthority",
    "msalOidcAuthority",
    "revocationUrl",
)
# Placeholders filled when the request is made, not from the connector's settings.
_RUNTIME_PLACEHOLDERS = {"revocationUrl": frozenset({"client_id"})}
RevocationRequest = Literal["rfc7009", "delete-json-access-token"]


@dataclass(frozen=True)
class ParameterSpec:
    kind: ParameterKind = "segment"
    default: str | None = None
    default_from: str | None = None


@dataclass(frozen=True)
class ProviderSpec:
    """One catalog entry. Templates are unresolved; see `ProviderCatalog.resolve`."""

    id: str
    display_name: str
    protocol: Protocol_ = "oauth2"
    token_client: TokenClientKind = "http"  # noqa: S105 - a setting's name, not a secret
    authorization_url: str | None = None
    token_url: str | None = None
    refresh_url: str | None = None
    discovery_url: str | None = None
    issuer: str | None = None
    msal_authority: str | None = None
    msal_oidc_authority: str | None = None
    parameters: Mapping[str, ParameterSpec] = field(default_factory=dict)
    client_auth: ClientAuth = "body"
    token_response: ResponseFormat = "auto"  # noqa: S105 - a setting's name, not a secret
    scope_parameter: str = "scope"
    scope_separator: str = " "
    default_scopes: tuple[str, ...] = ()
    authorization_params: Mapping[str, str] = field(default_factory=dict)
    token_params: Mapping[str, str] = field(default_factory=dict)
    token_path: str | None = None
    refresh_tokens: RefreshTokens = "always"
    refresh_margin_seconds: int = DEFAULT_REFRESH_MARGIN
    default_lifetime_seconds: int | None = None
    pkce: bool = True
    client_credentials: bool = False
    invalid_grant_errors: frozenset[str] = frozenset()
    request_templates: bool = False
    revocation_url: str | None = None
    revocation_request: RevocationRequest = "rfc7009"
    token_exchange: bool = False

    @property
    def is_oidc(self) -> bool:
        return self.protocol == "oidc"

    @classmethod
    def from_dict(cls, provider_id: str, data: Mapping[str, Any]) -> ProviderSpec:
        """Validate one entry; raise `CatalogError` listing every problem found."""
        problems: list[str] = []
        where = f"provider {provider_id!r}"

        def bad(key: str, message: str) -> None:
            problems.append(f"{where}: {key}: {message}")

        if not isinstance(data, Mapping):
            raise CatalogError(f"{where}: must be an object")
        for key in sorted(set(data) - _KNOWN_KEYS):
            bad(key, "unknown key")

        def text(key: str, *, required: bool = False) -> str | None:
            value = data.get(key)
            if value is None:
                if required:
                    bad(key, "required")
                return None
            if not isinstance(value, str) or not value:
                bad(key, "must be a non-empty string")
                return None
            return value

        def choice(key: str, allowed: tuple[str, ...], default: str) -> str:
            value = data.get(key, default)
            if value not in allowed:
                bad(key, f"must be one of {', '.join(allowed)}; got {value!r}")
                return default
            return str(value)

        def string_map(key: str) -> dict[str, str]:
            value = data.get(key, {})
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                bad(key, "must be an object of strings")
                return {}
            return dict(value)

        def string_list(key: str) -> list[str]:
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                bad(key, "must be a list of non-empty strings")
                return []
            return list(value)

        def integer(key: str, default: int | None) -> int | None:
            value = data.get(key, default)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                bad(key, "must be a non-negative integer")
                return default
            return value

        def flag(key: str, default: bool) -> bool:
            value = data.get(key, default)
            if not isinstance(value, bool):
                bad(key, "must be true or false")
                return default
            return value

        display_name = text("displayName", required=True) or provider_id
        protocol = choice("protocol", ("oauth2", "oidc"), "oauth2")
        token_client = choice("tokenClient", ("http", "msal"), "http")

        parameters: dict[str, ParameterSpec] = {}
        raw_params = data.get("parameters", {})
        if not isinstance(raw_params, Mapping):
            bad("parameters", "must be an object")
            raw_params = {}
        for name, spec in raw_params.items():
            if not isinstance(spec, Mapping) or set(spec) - {"kind", "default", "defaultFrom"}:
                bad(f"parameters.{name}", "must be an object with kind, default, defaultFrom")
                continue
            kind = spec.get("kind", "segment")
            if kind not in ("segment", "host", "url"):
                bad(f"parameters.{name}.kind", f"must be segment, host or url; got {kind!r}")
                continue
            default_from = spec.get("defaultFrom")
            if default_from is not None and default_from not in raw_params:
                bad(f"parameters.{name}.defaultFrom", f"names no parameter: {default_from!r}")
            parameters[name] = ParameterSpec(kind, spec.get("default"), default_from)

        templates: dict[str, str | None] = {key: text(key) for key in _TEMPLATE_KEYS}
        for key, template in templates.items():
            if template is None:
                continue
            runtime = _RUNTIME_PLACEHOLDERS.get(key, frozenset())
            used = [n for n in _PLACEHOLDER.findall(template) if n not in runtime]
            for name in used:
                if name not in parameters:
                    bad(key, f"uses {{{name}}} but 'parameters' does not declare it")
                elif (
                    parameters[name].kind == "url"
                    and template != f"{{{name}}}"
                    and not (template.startswith(f"{{{name}}}/"))
                ):
                    bad(key, f"url parameter {{{name}}} must start the template")
            if not used:
                static = _PLACEHOLDER.sub("x", template)
                _check_static_url(static, lambda m, key=key: bad(key, m))

        if templates["tokenUrl"] is None and templates["discoveryUrl"] is None:
            bad("tokenUrl", "required unless discoveryUrl is given")
        if templates["authorizationUrl"] is None and templates["discoveryUrl"] is None:
            bad("authorizationUrl", "required unless discoveryUrl is given")
        if token_client == "msal" and not (  # noqa: S105 - a setting's name, not a secret
            templates["msalAuthority"] or templates["msalOidcAuthority"]
        ):
            bad("tokenClient", "msal needs msalAuthority or msalOidcAuthority")
        if token_client == "msal" and protocol != "oidc":  # noqa: S105 - a setting's name, not a secret
            bad("tokenClient", "msal speaks OpenID Connect: set protocol to oidc")

        separator = data.get("scopeSeparator", " ")
        if separator not in (" ", ","):
            bad("scopeSeparator", "must be ' ' or ','")
            separator = " "
        default_scopes = string_list("defaultScopes")
        margin = integer("refreshMarginSeconds", DEFAULT_REFRESH_MARGIN)
        client_auth = choice("clientAuth", ("body", "basic"), "body")
        token_response = choice("tokenResponse", ("json", "form", "auto"), "auto")
        refresh_tokens = choice("refreshTokens", ("always", "optional", "never"), "always")
        authorization_params = string_map("authorizationParams")
        token_params = string_map("tokenParams")
        scope_parameter = text("scopeParameter") or "scope"
        token_path = text("tokenPath")
        lifetime = integer("defaultLifetimeSeconds", None)
        pkce = flag("pkce", True)
        client_credentials = flag("clientCredentials", False)
        invalid_grant_errors = frozenset(string_list("invalidGrantErrors"))
        request_templates = flag("requestTemplates", False)
        token_exchange = flag("tokenExchange", False)
        revocation_request = choice(
            "revocationRequest", ("rfc7009", "delete-json-access-token"), "rfc7009"
        )
        if request_templates and token_client != "http":  # noqa: S105 - a setting's name, not a secret
            bad("requestTemplates", "request templates need tokenClient http")

        if problems:
            raise CatalogError("invalid OAuth provider catalog: " + "; ".join(problems))
        return cls(
            id=provider_id,
            display_name=display_name,
            protocol=protocol,  # type: ignore[arg-type]
            token_client=token_client,  # type: ignore[arg-type]
            authorization_url=templates["authorizationUrl"],
            token_url=templates["tokenUrl"],
            refresh_url=templates["refreshUrl"],
            discovery_url=templates["discoveryUrl"],
            issuer=templates["issuer"],
            msal_authority=templates["msalAuthority"],
            msal_oidc_authority=templates["msalOidcAuthority"],
            parameters=parameters,
            client_auth=client_auth,  # type: ignore[arg-type]
            token_response=token_response,  # type: ignore[arg-type]
            scope_parameter=scope_parameter,
            scope_separator=separator,
            default_scopes=tuple(default_scopes),
            authorization_params=authorization_params,
            token_params=token_params,
            token_path=token_path,
            refresh_tokens=refresh_tokens,  # type: ignore[arg-type]
            refresh_margin_seconds=margin if margin is not None else DEFAULT_REFRESH_MARGIN,
            default_lifetime_seconds=lifetime,
            pkce=pkce,
            client_credentials=client_credentials,
            invalid_grant_errors=invalid_grant_errors,
            request_templates=request_templates,
            revocation_url=templates["revocationUrl"],
            revocation_request=revocation_request,  # type: ignore[arg-type]
            token_exchange=token_exchange,
        )


def _check_static_url(url: str, bad: Any) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return  # a local development or test provider; never reaches the network
    bad(f"must be an https URL; got {url!r}")


@dataclass(frozen=True)
class ResolvedProvider:
    """A provider with concrete endpoints for one connector's settings."""

    spec: ProviderSpec
    authorization_url: str
    token_url: str
    refresh_url: str
    issuer: str | None = None
    msal_authority: str | None = None
    msal_oidc_authority: str | None = None
    # RFC 7009 token revocation, when the provider publishes one (OIDC discovery).
    revocation_url: str | None = None
    # Request templates (spec.request_templates), with the connection's values for them.
    templates: RequestTemplates | None = field(default=None, repr=False)
    # RFC 8693 token exchange at the token endpoint (catalog flag or discovery).
    token_exchange: bool = False

    @property
    def id(self) -> str:
        return self.spec.id


def render_template(spec: ProviderSpec, template: str, values: Mapping[str, str]) -> str:
    """Fill `{name}` placeholders with validated values (no path or host injection)."""
    resolved = _resolve_values(spec, values)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in resolved and name == "client_id":
            return match.group(0)  # a runtime placeholder (revocationUrl)
        return resolved[name]

    url = _PLACEHOLDER.sub(substitute, template)
    _check_static_url(_PLACEHOLDER.sub("x", url), lambda m: _raise(spec, m))
    return url.rstrip("/") if template.endswith("}") else url


def _raise(spec: ProviderSpec, message: str) -> None:
    raise CatalogError(f"provider {spec.id!r}: {message}")


def _resolve_values(spec: ProviderSpec, values: Mapping[str, str]) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for name, param in spec.parameters.items():
        value = values.get(name) or param.default
        if not value and param.default_from:
            value = values.get(param.default_from) or spec.parameters[param.default_from].default
        if not value:
            continue
        if param.kind == "segment" and not _SEGMENT.match(value):
            _raise(spec, f"setting {name!r} must be letters, digits, '.', '-' or '_'")
        if param.kind == "host" and not _HOST.match(value):
            _raise(spec, f"setting {name!r} must be a DNS host name")
        if param.kind == "url":
            _check_static_url(value, lambda m, name=name: _raise(spec, f"setting {name!r} {m}"))
            parts = urlsplit(value)
            if parts.username or parts.password or parts.fragment:
                _raise(spec, f"setting {name!r} must not carry credentials or a fragment")
        resolved[name] = value
    return resolved


def _missing(spec: ProviderSpec, template: str | None, values: Mapping[str, str]) -> list[str]:
    if template is None:
        return []
    resolved = _resolve_values(spec, values)
    runtime = _RUNTIME_PLACEHOLDERS["revocationUrl"]
    return [n for n in _PLACEHOLDER.findall(template) if n not in resolved and n not in runtime]


def _check_settings(spec: ProviderSpec, values: Mapping[str, str]) -> None:
    for key in (
        "authorization_url",
        "token_url",
        "refresh_url",
        "discovery_url",
        "msal_authority",
        "msal_oidc_authority",
        "issuer",
        "revocation_url",
    ):
        missing = _missing(spec, getattr(spec, key), values)
        if missing:
            raise CatalogError(
                f"provider {spec.id!r} needs the setting(s) {', '.join(sorted(set(missing)))}"
            )


class ProviderCatalog:
    """Loaded providers plus a small cache of discovery documents (RFC 8414 §3)."""

    def __init__(
        self, providers: Mapping[str, ProviderSpec], *, discovery_ttl: float = 3600.0
    ) -> None:
        self.providers = dict(providers)
        self.discovery_ttl = discovery_ttl
        self._discovery: dict[str, tuple[float, dict[str, Any]]] = {}
        self._discovery_locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> ProviderCatalog:
        if not isinstance(document, Mapping) or document.get("format") != 1:
            raise CatalogError('provider catalog must be an object with "format": 1')
        raw = document.get("providers")
        if not isinstance(raw, Mapping) or not raw:
            raise CatalogError('provider catalog needs a non-empty "providers" object')
        problems: list[str] = []
        providers: dict[str, ProviderSpec] = {}
        for provider_id, entry in raw.items():
            if not re.match(r"^[a-z0-9][a-z0-9-]{0,63}$", provider_id):
                problems.append(f"provider id {provider_id!r}: lower-case letters, digits and '-'")
                continue
            try:
                providers[provider_id] = ProviderSpec.from_dict(provider_id, entry)
            except CatalogError as exc:
                problems.append(exc.detail.removeprefix("invalid OAuth provider catalog: "))
        if problems:
            raise CatalogError("invalid OAuth provider catalog: " + "; ".join(problems))
        return cls(providers)

    @classmethod
    def load(cls, path: str | Path = CATALOG_PATH) -> ProviderCatalog:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogError(f"cannot read the provider catalog {path}: {exc}") from exc
        return cls.from_dict(document)

    def get(self, provider_id: str) -> ProviderSpec:
        try:
            return self.providers[provider_id]
        except KeyError:
            known = ", ".join(sorted(self.providers))
            raise CatalogError(f"unknown OAuth provider {provider_id!r} (known: {known})") from None

    def check_settings(self, provider_id: str, values: Mapping[str, str]) -> None:
        """Refuse connector settings that leave a template placeholder unfilled."""
        _check_settings(self.get(provider_id), values)

    async def resolve(
        self,
        provider: str | ProviderSpec,
        values: Mapping[str, str] | None = None,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> ResolvedProvider:
        """Concrete endpoints for `provider` with a connector's settings `values`.

        Providers with `discoveryUrl` fetch the OpenID Provider Configuration (cached for
        `discovery_ttl`) with `http`, which is then required.
        """
        spec = self.get(provider) if isinstance(provider, str) else provider
        values = dict(values or {})
        _check_settings(spec, values)
        templates = None
        if spec.request_templates:
            templates = RequestTemplates.from_settings(values)
            try:
                templates.check()
            except CatalogError as exc:
                raise CatalogError(f"provider {spec.id!r}: {exc.detail}") from None

        def render(template: str | None) -> str | None:
            return None if template is None else render_template(spec, template, values)

        authorization_url = render(spec.authorization_url)
        token_url = render(spec.token_url)
        issuer = render(spec.issuer)
        # A documented static endpoint (providers without discovery); else discovery's.
        revocation_url: str | None = render(spec.revocation_url)
        token_exchange = spec.token_exchange
        if spec.discovery_url is not None:
            if http is None:
                raise CatalogError(f"provider {spec.id!r} uses discovery: pass an http client")
            metadata = await self.discover(render(spec.discovery_url) or "", http)
            authorization_url = authorization_url or metadata["authorization_endpoint"]
            token_url = token_url or metadata["token_endpoint"]
            issuer = issuer or metadata.get("issuer")
            revocation = metadata.get("revocation_endpoint")
            if revocation_url is None and isinstance(revocation, str):
                revocation_url = revocation
            grants = metadata.get("grant_types_supported")
            if isinstance(grants, list) and TOKEN_EXCHANGE_GRANT in grants:
                token_exchange = True
        assert authorization_url is not None and token_url is not None
        return ResolvedProvider(
            spec=spec,
            authorization_url=authorization_url,
            token_url=token_url,
            refresh_url=render(spec.refresh_url) or token_url,
            issuer=issuer,
            msal_authority=render(spec.msal_authority),
            msal_oidc_authority=render(spec.msal_oidc_authority),
            revocation_url=revocation_url,
            templates=templates,
            token_exchange=token_exchange,
        )

    async def discover(self, url: str, http: httpx.AsyncClient) -> dict[str, Any]:
        """Fetch and check an OpenID Provider Configuration document; cached per URL."""
        cached = self._discovery.get(url)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        lock = self._discovery_locks.setdefault(url, asyncio.Lock())
        async with lock:  # one fetch per URL, however many connections resolve at once
            cached = self._discovery.get(url)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            try:
                response = await http.get(url, headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                raise TransientProviderError(f"discovery document unreachable: {url}") from exc
            if response.status_code >= 500 or response.status_code == 429:
                raise TransientProviderError(
                    f"discovery document {url} answered {response.status_code}",
                    status_code=response.status_code,
                )
            try:
                metadata = response.json() if response.status_code == 200 else None
            except ValueError:
                metadata = None
            if not isinstance(metadata, dict):
                raise ProviderError(f"no discovery document at {url} ({response.status_code})")
            for key in ("issuer", "authorization_endpoint", "token_endpoint"):
                if not isinstance(metadata.get(key), str):
                    raise ProviderError(f"discovery document {url} lacks {key}")
            # OIDC Discovery §4.3 / RFC 8414 §3.3: the issuer must be the URL's prefix.
            expected = url.split("/.well-known/")[0]
            if metadata["issuer"].rstrip("/") != expected.rstrip("/"):
                raise ProviderError(
                    f"discovery document {url} names issuer {metadata['issuer']!r}, "
                    f"expected {expected!r}"
                )
            for key in ("authorization_endpoint", "token_endpoint"):
                _check_static_url(metadata[key], lambda m, key=key: _raise_provider(url, key, m))
            self._discovery[url] = (time.monotonic() + self.discovery_ttl, metadata)
            return metadata


def _raise_provider(url: str, key: str, message: str) -> None:
    raise ProviderError(f"discovery document {url}: {key} {message}")


@lru_cache(maxsize=1)
def default_catalog() -> ProviderCatalog:
    """The catalog shipped with the gateway, loaded (and validated) once per process."""
    return ProviderCatalog.load()
