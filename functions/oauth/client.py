"""Talking to a provider's token endpoint: code exchange, refresh, client credentials.

* `http` providers: RFC 6749 §4.1.3 (code, with the PKCE `code_verifier` of RFC 7636
  §4.5), §6 (refresh) and §4.4 (client credentials) over an `httpx.AsyncClient` the caller
  owns. Client authentication in the body or HTTP Basic (§2.3.1); responses in JSON
  (§5.1) or form-encoded (GitHub's default), whichever the Content-Type says.
* `http` providers with request templates (`templates.py`, Power Platform
  `oauth2generic`): the rendered token / refresh body is posted as is (form-encoded,
  values percent-encoded) to the token / refresh URL plus its rendered query string; the
  PKCE `code_verifier` is appended unless the template places `{CodeVerifier}`. The
  template carries client authentication; nothing is added. A provider without a body
  template for a request falls back to the RFC 6749 form for it.
* `msal` providers (Microsoft Entra ID, Microsoft account, or msal against a generic OIDC
  authority): `msal.ConfidentialClientApplication`, imported lazily (cold start) and run
  in a worker thread (msal is synchronous). Applications are cached per authority and
  client because constructing one fetches the authority's metadata; their token cache is
  disabled because tokens belong in the secret store, not in process memory.

Errors (RFC 6749 §5.2): `invalid_grant` (or a provider's alias for it) raises
`InvalidGrantError`; 5xx, 429, timeouts, network errors and `temporarily_unavailable`
raise `TransientProviderError` (with Retry-After when given); anything else
`ProviderError`. Messages never contain tokens, codes, verifiers or secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
import jwt

from functions.oauth.catalog import TOKEN_EXCHANGE_GRANT, ResolvedProvider
from functions.oauth.certificates import CLIENT_ASSERTION_TYPE
from functions.oauth.errors import (
    CatalogError,
    InvalidGrantError,
    ProviderError,
    TransientProviderError,
)
from functions.oauth.templates import append_pairs, append_query
from functions.oauth.tokens import GrantKind, OAuthClient, TokenSet

log = logging.getLogger(__name__)

_TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error", "slow_down"}
# Scopes msal adds itself and refuses to be given.
_MSAL_RESERVED = {"openid", "profile", "offline_access"}
_CLOCK_SKEW = timedelta(minutes=5)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (RFC 9110 §10.2.3): delay or HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error(
    provider: ResolvedProvider, body: Mapping[str, Any], status: int | None
) -> ProviderError:
    code = str(body.get("error") or "unknown_error")
    description = body.get("error_description")
    description = str(description) if description is not None else None
    detail = f"{provider.spec.display_name} token endpoint: {code}"
    if code == "invalid_grant" or code in provider.spec.invalid_grant_errors:
        return InvalidGrantError(detail, error=code, description=description, status_code=status)
    if code in _TRANSIENT_ERRORS:
        return TransientProviderError(
            detail, error=code, description=description, status_code=status
        )
    return ProviderError(detail, error=code, description=description, status_code=status)


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_id_token(
    id_token: str, provider: ResolvedProvider, client_id: str, nonce: str | None
) -> dict[str, Any]:
    """The ID token's claims after the checks of OpenID Connect Core §3.1.3.7.

    The signature is not verified: the token came straight from the token endpoint over
    TLS, which §3.1.3.7 (6) accepts in place of signature validation. `iss`, `aud`,
    `exp` and (for a code exchange) `nonce` are checked.
    """
    try:
        claims: dict[str, Any] = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ProviderError("the provider returned a malformed ID token") from exc
    if provider.issuer and str(claims.get("iss", "")).rstrip("/") != provider.issuer.rstrip("/"):
        raise ProviderError("the ID token was issued by an unexpected issuer")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise ProviderError("the ID token is not meant for this client")
    exp = _number(claims.get("exp"))
    if exp is not None and datetime.fromtimestamp(exp, UTC) + _CLOCK_SKEW < datetime.now(UTC):
        raise ProviderError("the ID token has expired")
    if nonce is not None and claims.get("nonce") != nonce:
        raise ProviderError("the ID token's nonce does not match the authorization request")
    return claims


def token_set_from_response(
    provider: ResolvedProvider,
    body: Mapping[str, Any],
    *,
    client_id: str,
    grant: GrantKind,
    nonce: str | None = None,
    now: datetime | None = None,
) -> TokenSet:
    """Build a `TokenSet` from a successful token response (RFC 6749 §5.1)."""
    now = now or datetime.now(UTC)
    spec = provider.spec
    source: Mapping[str, Any] = body
    if spec.token_path and isinstance(body.get(spec.token_path), Mapping):
        source = body[spec.token_path]
    access_token = source.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ProviderError(f"{spec.display_name} token response has no access_token")
    expires_in = _number(source.get("expires_in"))
    if expires_in is not None and (expires_in <= 0 or not math.isfinite(expires_in)):
        # 0 (or a negative or non-finite value) cannot be a lifetime to schedule by: a
        # token "expired on arrival" would be refreshed on every call. Treated as absent.
        expires_in = None
    if expires_in is None and spec.default_lifetime_seconds:
        expires_in = float(spec.default_lifetime_seconds)
    refresh_expires_in = _number(source.get("refresh_token_expires_in"))
    ext_expires_in = _number(source.get("ext_expires_in"))
    if ext_expires_in is None or expires_in is None or not ext_expires_in > expires_in:
        ext_expires_in = None  # only an extension of a known lifetime means anything
    claims = (
        source.get("id_token_claims") if isinstance(source.get("id_token_claims"), dict) else None
    )
    id_token = source.get("id_token")
    if claims is None and isinstance(id_token, str) and id_token and spec.is_oidc:
        claims = check_id_token(id_token, provider, client_id, nonce)
    refresh_token = source.get("refresh_token")
    scope = source.get("scope")
    return TokenSet(
        access_token=access_token,
        token_type=str(source.get("token_type") or "Bearer"),
        expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        refresh_token_expires_at=(
            None if refresh_expires_in is None else now + timedelta(seconds=refresh_expires_in)
        ),
        scope=" ".join(scope) if isinstance(scope, list) else (str(scope) if scope else None),
        id_token_claims=claims,
        obtained_at=now,
        grant=grant,
        extended_expires_at=(
            None
            if ext_expires_in is None or not math.isfinite(ext_expires_in)
            else now + timedelta(seconds=ext_expires_in)
        ),
    )


def _narrowed_scopes(previous: TokenSet, fresh: TokenSet) -> list[str]:
    """Scopes the previous grant had that a refresh response no longer lists."""
    if previous.scope is None or fresh.scope is None:
        return []
    now_granted = set(fresh.scope.split())
    return [s for s in previous.scope.split() if s not in now_granted]


def _scope_value(provider: ResolvedProvider, scopes: tuple[str, ...]) -> str:
    return provider.spec.scope_separator.join(scopes)


class TokenEndpointClient:
    """Code exchange, refresh and client credentials for any catalog provider.

    `http` is owned by the caller (connection pooling, TLS settings, timeouts).
    `msal_http_client` builds the `requests.Session` msal uses (tests pass one trusting
    their CA; the default is msal's own).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        msal_http_client: Callable[[], Any] | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.http = http
        self.timeout = timeout
        self._msal_http_client = msal_http_client
        self._msal_apps: dict[tuple[str, str, str], Any] = {}
        self._msal_lock = threading.Lock()
        self.requests = 0  # token endpoint calls made (for budgets and tests)

    # -- public API ------------------------------------------------------------------------

    async def exchange_code(
        self,
        provider: ResolvedProvider,
        client: OAuthClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
        nonce: str | None = None,
    ) -> TokenSet:
        """Redeem an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
        scopes = self.requested_scopes(provider, client)
        if provider.spec.token_client == "msal":  # noqa: S105 - a setting's name, not a secret
            data = {"code_verifier": code_verifier} if code_verifier else {}
            body = await self._msal(
                provider,
                client,
                lambda app: app.acquire_token_by_authorization_code(
                    code, _msal_scopes(scopes), redirect_uri=redirect_uri, nonce=nonce, data=data
                ),
            )
            return token_set_from_response(
                provider, body, client_id=client.client_id, grant="authorization_code", nonce=nonce
            )
        templates = provider.templates
        if templates is not None and templates.token_body is not None:
            flow = self._template_flow(provider, client, scopes, redirect_uri=redirect_uri)
            flow.update(Code=code, CodeVerifier=code_verifier)
            content = templates.render("token_body", flow) or ""
            if code_verifier and not templates.uses("token_body", "CodeVerifier"):
                content = append_pairs(content, {"code_verifier": code_verifier})
            url = append_query(provider.token_url, templates.render("token_query", flow))
            body = dict(await self._post_templated(provider, url, content))
        else:
            body = dict(
                await self._post_code(provider, client, scopes, code, redirect_uri, code_verifier)
            )
        tokens = token_set_from_response(
            provider, body, client_id=client.client_id, grant="authorization_code", nonce=nonce
        )
        # Refresh templates may name {RedirectUrl}; remember the one this grant used.
        return replace(tokens, redirect_uri=redirect_uri) if templates is not None else tokens

    async def _post_code(
        self,
        provider: ResolvedProvider,
        client: OAuthClient,
        scopes: tuple[str, ...],
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
    ) -> Mapping[str, Any]:
        """The RFC 6749 §4.1.3 token request (+ a token URL query template, if any)."""
        templates = provider.templates
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        url = provider.token_url
        if templates is not None:
            flow = self._template_flow(provider, client, scopes, redirect_uri=redirect_uri)
            url = append_query(url, templates.render("token_query", {**flow, "Code": code}))
        return await self._post(provider, url, client, form)

    async def refresh(
        self, provider: ResolvedProvider, client: OAuthClient, current: TokenSet
    ) -> TokenSet:
        """Renew `current` (RFC 6749 §6, or §4.4 again for client credentials).

        A response without a refresh token keeps the current one (§6: the server MAY
        issue a new one); a rotated one replaces it.
        """
        if current.grant == "client_credentials":
            return await self.client_credentials(provider, client)
        if not current.refresh_token:
            raise InvalidGrantError("the connection has no refresh token", error="invalid_grant")
        scopes = self.requested_scopes(provider, client)
        if provider.spec.token_client == "msal":  # noqa: S105 - a setting's name, not a secret
            refresh_token = current.refresh_token
            body = await self._msal(
                provider,
                client,
                lambda app: app.acquire_token_by_refresh_token(refresh_token, _msal_scopes(scopes)),
            )
        elif provider.templates is not None:
            templates = provider.templates
            flow = self._template_flow(provider, client, scopes, redirect_uri=current.redirect_uri)
            flow["RefreshToken"] = current.refresh_token
            url = append_query(provider.refresh_url, templates.render("refresh_query", flow))
            if templates.refresh_body is not None:
                content = templates.render("refresh_body", flow) or ""
                body = dict(await self._post_templated(provider, url, content))
            else:
                form = {"grant_type": "refresh_token", "refresh_token": current.refresh_token}
                body = dict(await self._post(provider, url, client, form))
        else:
            form = {"grant_type": "refresh_token", "refresh_token": current.refresh_token}
            body = dict(await self._post(provider, provider.refresh_url, client, form))
        fresh = token_set_from_response(
            provider, body, client_id=client.client_id, grant="authorization_code"
        ).merged_with_previous(current)
        dropped = _narrowed_scopes(current, fresh)
        if dropped:
            # Not an error: the provider (an administrator, granular consent) decided.
            # Upstream calls needing a dropped scope will fail there; reauthorizing asks
            # the user again. Scope names only, never tokens.
            log.warning(
                "%s narrowed the granted scopes on refresh; dropped: %s",
                provider.spec.display_name,
                " ".join(dropped)[:300],
            )
        return fresh

    async def client_credentials(
        self, provider: ResolvedProvider, client: OAuthClient, scopes: tuple[str, ...] | None = None
    ) -> TokenSet:
        """A token for the client itself, no user (RFC 6749 §4.4)."""
        if not provider.spec.client_credentials:
            raise ProviderError(
                f"{provider.spec.display_name} does not offer the client-credentials grant"
            )
        scopes = tuple(scopes if scopes is not None else client.scopes)
        if provider.spec.token_client == "msal":  # noqa: S105 - a setting's name, not a secret
            body = await self._msal(
                provider, client, lambda app: app.acquire_token_for_client(list(scopes))
            )
        else:
            form = {"grant_type": "client_credentials"}
            if scopes:
                form["scope"] = _scope_value(provider, scopes)
            body = dict(await self._post(provider, provider.token_url, client, form))
        return token_set_from_response(
            provider, body, client_id=client.client_id, grant="client_credentials"
        )

    async def token_exchange(
        self,
        provider: ResolvedProvider,
        client: OAuthClient,
        subject_token: str,
        scopes: tuple[str, ...],
        *,
        audience: str | None = None,
    ) -> dict[str, Any]:
        """OAuth 2.0 Token Exchange (RFC 8693 §2.1): the caller's access token as the
        subject, an access token for `scopes` (and `audience`) requested, client
        authentication as at the token endpoint. Returns the raw response, errors
        included (RFC 8693 §2.2.2: `invalid_request`, `invalid_target`, `invalid_grant`)."""
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject_token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        if scopes:
            form["scope"] = _scope_value(provider, scopes)
        if audience:
            form["audience"] = audience
        try:
            return dict(await self._post(provider, provider.token_url, client, form))
        except ProviderError as exc:
            if isinstance(exc, TransientProviderError):
                raise
            return {"error": exc.error or "unknown_error", "error_description": exc.description}

    async def on_behalf_of(
        self,
        provider: ResolvedProvider,
        client: OAuthClient,
        assertion: str,
        scopes: tuple[str, ...],
    ) -> dict[str, Any]:
        """Exchange a caller's token for one to `scopes` (OAuth 2.0 on-behalf-of: the
        JWT-bearer grant of RFC 7523 §2.1 with `requested_token_use=on_behalf_of`, as
        Entra ID defines it). msal providers use `acquire_token_on_behalf_of`.

        Returns the raw response, errors included (`error`, `suberror`, `claims`): the
        caller decides what they mean for the user (see `functions.oauth.obo`)."""
        wanted = list(_msal_scopes(scopes))
        if provider.spec.token_client == "msal":  # noqa: S105 - a setting's name, not a secret
            return await self._msal_result(
                provider, client, lambda app: app.acquire_token_on_behalf_of(assertion, wanted)
            )
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion,
            "requested_token_use": "on_behalf_of",
            "scope": _scope_value(provider, tuple(wanted)),
        }
        try:
            return dict(await self._post(provider, provider.token_url, client, form))
        except ProviderError as exc:
            if isinstance(exc, TransientProviderError):
                raise
            return {"error": exc.error or "unknown_error", "error_description": exc.description}

    async def revoke(
        self, provider: ResolvedProvider, client: OAuthClient, tokens: TokenSet
    ) -> bool:
        """Revoke a connection's grant at the provider. True when the provider confirmed;
        False when it has no revocation endpoint or refused. Transport errors raise
        TransientProviderError.

        * `rfc7009` (RFC 7009 §2.1): POST the refresh token (or the access token when
          there is none) with its `token_type_hint`, client authentication as at the
          token endpoint; 200 means done.
        * `delete-json-access-token` (GitHub's "delete an app authorization", not RFC
          7009): DELETE `{client_id}` URL with JSON `{"access_token": ...}` and HTTP Basic
          client authentication; 204 means the user's whole grant for the app is gone
          (every token, as RFC 7009 servers do for a refresh token).
        """
        if provider.revocation_url is None:
            return False
        spec = provider.spec
        url = provider.revocation_url.replace("{client_id}", quote(client.client_id, safe=""))
        try:
            if spec.revocation_request == "delete-json-access-token":
                if client.shared_secret is None:
                    return False  # Basic client authentication with a secret is required
                response = await self.http.request(
                    "DELETE",
                    url,
                    json={"access_token": tokens.access_token},
                    auth=httpx.BasicAuth(client.client_id, client.shared_secret),
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                )
                return response.status_code in (200, 204)
            token, hint = (
                (tokens.refresh_token, "refresh_token")
                if tokens.refresh_token
                else (tokens.access_token, "access_token")
            )
            data = {"token": token, "token_type_hint": hint}
            extra = _client_authentication(provider, client, url, data)
            response = await self.http.post(url, data=data, timeout=self.timeout, **extra)
        except httpx.HTTPError as exc:
            raise TransientProviderError(
                f"{spec.display_name} revocation endpoint unreachable"
            ) from exc
        return response.status_code == 200

    @staticmethod
    def requested_scopes(provider: ResolvedProvider, client: OAuthClient) -> tuple[str, ...]:
        """Catalog default scopes plus the connector's, in order, without duplicates."""
        scopes = list(provider.spec.default_scopes)
        if provider.spec.is_oidc and "openid" not in scopes:
            scopes.insert(0, "openid")
        scopes += [s for s in client.scopes if s not in scopes]
        return tuple(scopes)

    @staticmethod
    def check_template_client(provider: ResolvedProvider, client: OAuthClient) -> None:
        """Refuse, before consent, a client the provider's token templates cannot use:
        `{ClientSecret}` in a body needs the connector's client secret."""
        templates = provider.templates
        if templates is None or client.shared_secret is not None:
            return
        for which in ("token_body", "token_query", "refresh_body", "refresh_query"):
            if templates.uses(which, "ClientSecret"):
                raise CatalogError(
                    f"provider {provider.spec.id!r}: the OAuth request templates need "
                    "{ClientSecret}: set the connector's OAuth client secret"
                )

    @staticmethod
    def _template_flow(
        provider: ResolvedProvider,
        client: OAuthClient,
        scopes: tuple[str, ...],
        *,
        redirect_uri: str | None = None,
    ) -> dict[str, str | None]:
        """The well-known placeholder values every templated token request has."""
        assert provider.templates is not None
        return {
            "ClientId": client.client_id,
            "ClientSecret": client.shared_secret,
            "RedirectUrl": redirect_uri,
            "Scopes": provider.templates.scope_delimiter.join(scopes),
        }

    # -- HTTP --------------------------------------------------------------------------------

    @staticmethod
    def _headers(provider: ResolvedProvider) -> dict[str, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if provider.spec.token_response != "form":  # noqa: S105 - a setting's name, not a secret
            # GitHub-style servers answer form-encoded unless asked for JSON; we only ask
            # when the catalog says the provider speaks JSON.
            headers["Accept"] = "application/json"
        return headers

    async def _post_templated(
        self, provider: ResolvedProvider, url: str, content: str
    ) -> Mapping[str, Any]:
        """POST a rendered body template as is (it carries its own client auth)."""
        return await self._send(
            provider, url, content=content.encode("utf-8"), headers=self._headers(provider)
        )

    async def _post(
        self, provider: ResolvedProvider, url: str, client: OAuthClient, form: dict[str, str]
    ) -> Mapping[str, Any]:
        spec = provider.spec
        data = {**spec.token_params, **form}
        headers = self._headers(provider)
        extra = _client_authentication(provider, client, url, data)
        return await self._send(provider, url, data=data, headers=headers, **extra)

    async def _send(self, provider: ResolvedProvider, url: str, **kwargs: Any) -> Mapping[str, Any]:
        spec = provider.spec
        self.requests += 1
        try:
            response = await self.http.post(url, timeout=self.timeout, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientProviderError(f"{spec.display_name} token endpoint timed out") from exc
        except httpx.HTTPError as exc:
            raise TransientProviderError(f"{spec.display_name} token endpoint unreachable") from exc
        body = self._parse(provider, response)
        status = response.status_code
        if status == 429 or status >= 500:
            error = body.get("error") if body else None
            raise TransientProviderError(
                f"{spec.display_name} token endpoint answered {status}",
                retry_after=_retry_after(response.headers.get("retry-after")),
                error=str(error) if error else None,
                status_code=status,
            )
        if body is None:
            raise ProviderError(
                f"{spec.display_name} token endpoint answered {status} with an unreadable body",
                status_code=status,
            )
        # Some providers (GitHub, Slack) report errors with 200: the body decides.
        if body.get("error") or body.get("ok") is False or status >= 400:
            err = _error(provider, body, status)
            if isinstance(err, TransientProviderError):
                err.retry_after = _retry_after(response.headers.get("retry-after"))
            raise err
        return body

    @staticmethod
    def _parse(provider: ResolvedProvider, response: httpx.Response) -> dict[str, Any] | None:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        text = response.text
        as_form = content_type == "application/x-www-form-urlencoded" or (
            provider.spec.token_response == "form" and not content_type.endswith("json")  # noqa: S105 - a setting's name, not a secret
        )
        if as_form:
            return dict(parse_qsl(text, keep_blank_values=False))
        try:
            value = response.json()
        except ValueError:
            if provider.spec.token_response == "auto" and "=" in text and "{" not in text:  # noqa: S105 - a setting's name, not a secret
                return dict(parse_qsl(text))
            return None
        return value if isinstance(value, dict) else None

    # -- msal --------------------------------------------------------------------------------

    async def _msal(
        self, provider: ResolvedProvider, client: OAuthClient, call: Callable[[Any], dict[str, Any]]
    ) -> dict[str, Any]:
        body = await self._msal_result(provider, client, call)
        if "error" in body:
            raise _error(provider, body, None)
        return body

    async def _msal_result(
        self, provider: ResolvedProvider, client: OAuthClient, call: Callable[[Any], dict[str, Any]]
    ) -> dict[str, Any]:
        """msal's result dict, errors included (RFC 6749 §5.2 fields + Entra's)."""
        self.requests += 1

        def run() -> dict[str, Any]:
            import requests  # msal's own dependency; only needed on this path

            try:
                app = self._msal_app(provider, client)
                result = call(app)
            except requests.RequestException as exc:
                raise TransientProviderError(
                    f"{provider.spec.display_name} is unreachable ({type(exc).__name__})"
                ) from exc
            except ValueError as exc:
                # msal raises ValueError for a bad authority or an ID token nonce mismatch.
                raise ProviderError(f"{provider.spec.display_name}: {exc}") from exc
            return dict(result or {})

        return await asyncio.to_thread(run)

    def _msal_app(self, provider: ResolvedProvider, client: OAuthClient) -> Any:
        import msal  # lazy: importing msal costs cold-start time on every other path

        # We use acquire_token_by_authorization_code (our own state, PKCE and nonce, kept
        # in our state store) rather than msal's auth-code-flow dict; msal flags it as
        # deprecated in favour of a flow we cannot use across processes.
        warnings.filterwarnings(
            "ignore", message=".*acquire_token_by_auth_code_flow", category=DeprecationWarning
        )

        authority = provider.msal_oidc_authority or provider.msal_authority or ""
        secret_id = hashlib.sha256((client.client_secret or "").encode()).hexdigest()
        key = (authority, client.client_id, secret_id)
        with self._msal_lock:
            app = self._msal_apps.get(key)
            if app is not None:
                return app
        certificate = client.certificate
        kwargs: dict[str, Any] = {
            # A certificate: msal signs a client assertion (private_key_jwt) per request.
            "client_credential": (
                certificate.msal_credential(client.client_id, provider.token_url)
                if certificate
                else client.client_secret
            ),
            "token_cache": _NoTokenCache(msal),
        }
        if self._msal_http_client is not None:
            kwargs["http_client"] = self._msal_http_client()
        if provider.msal_oidc_authority:
            kwargs["oidc_authority"] = provider.msal_oidc_authority
            # Generic OIDC servers need not know `profile`; msal adds it unless excluded.
            kwargs["exclude_scopes"] = ["profile"]
        else:
            kwargs["authority"] = provider.msal_authority
        app = msal.ConfidentialClientApplication(client.client_id, **kwargs)
        with self._msal_lock:
            return self._msal_apps.setdefault(key, app)


def _client_authentication(
    provider: ResolvedProvider, client: OAuthClient, url: str, data: dict[str, str]
) -> dict[str, Any]:
    """Add client authentication to a token or revocation request: a signed client
    assertion for a certificate (RFC 7523 §2.2, `private_key_jwt`), HTTP Basic (RFC 6749
    §2.3.1, id and secret form-urlencoded first) or the body. Returns httpx kwargs."""
    certificate = client.certificate
    if certificate is not None:
        data["client_id"] = client.client_id
        data["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        data["client_assertion"] = certificate.client_assertion(
            client.client_id, url.split("?", 1)[0]
        )
        return {}
    if provider.spec.client_auth == "basic" and client.client_secret is not None:
        return {
            "auth": httpx.BasicAuth(
                quote(client.client_id, safe=""), quote(client.client_secret, safe="")
            )
        }
    data["client_id"] = client.client_id
    if client.client_secret is not None:
        data["client_secret"] = client.client_secret
    return {}


def _msal_scopes(scopes: tuple[str, ...]) -> list[str]:
    return [s for s in scopes if s not in _MSAL_RESERVED]


def _NoTokenCache(msal: Any) -> Any:  # noqa: N802 - a class factory (msal is imported lazily)
    """An msal token cache that stores nothing: the secret store is the only token store."""

    class NoTokenCache(msal.TokenCache):  # type: ignore[misc]
        def add(self, event: dict[str, Any], now: float | None = None) -> None:
            return None

    return NoTokenCache()


__all__ = [
    "TokenEndpointClient",
    "check_id_token",
    "token_set_from_response",
]
