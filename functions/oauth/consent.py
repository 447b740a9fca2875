"""Starting a consent: the authorization request URL (RFC 6749 §4.1.1) and its state.

`start_consent` builds the URL with PKCE S256 (RFC 7636 §4.3), a fresh random `state`
(RFC 6749 §10.12) and, for OpenID providers, a `nonce` (OpenID Connect Core §3.1.2.1),
and persists what the callback needs through a `StateStore`. The state value exists only
in the returned URL; storage keys on its hash. Nothing here is logged.

`finish_consent` is the callback half: consume the state (single use, expiry, and binding
to the connection it was issued for) and redeem the code with the stored verifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from functions.oauth.catalog import ResolvedProvider
from functions.oauth.client import TokenEndpointClient
from functions.oauth.pkce import code_challenge_s256, new_code_verifier, new_nonce, new_state
from functions.oauth.state_store import STATE_TTL, OAuthStateRecord, StateStore
from functions.oauth.templates import append_pairs, append_query
from functions.oauth.tokens import OAuthClient, TokenSet


@dataclass(frozen=True)
class ConsentRequest:
    """A consent URL to send the user to, and the record stored for its callback."""

    url: str
    state: str = field(repr=False)
    record: OAuthStateRecord


def authorization_url(
    provider: ResolvedProvider,
    client: OAuthClient,
    *,
    redirect_uri: str,
    state: str,
    code_challenge: str | None,
    nonce: str | None,
    extra_params: dict[str, str] | None = None,
) -> str:
    """The authorization request URL (RFC 6749 §4.1.1 + RFC 7636 §4.3)."""
    spec = provider.spec
    scopes = TokenEndpointClient.requested_scopes(provider, client)
    templates = provider.templates
    if templates is not None and templates.authorization_query is not None:
        return _templated_authorization_url(
            provider,
            client,
            scopes,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=code_challenge,
            nonce=nonce,
            extra_params=extra_params,
        )
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if scopes:
        params[spec.scope_parameter] = spec.scope_separator.join(scopes)
    if code_challenge is not None:
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    if nonce is not None:
        params["nonce"] = nonce
    params.update(spec.authorization_params)
    params.update(extra_params or {})
    # Keep query parameters the endpoint URL already has (RFC 6749 §3.1 allows them).
    parts = urlsplit(provider.authorization_url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _templated_authorization_url(
    provider: ResolvedProvider,
    client: OAuthClient,
    scopes: tuple[str, ...],
    *,
    redirect_uri: str,
    state: str,
    code_challenge: str | None,
    nonce: str | None,
    extra_params: dict[str, str] | None,
) -> str:
    """`authorizationUrlTemplate` + the rendered `authorizationUrlQueryStringTemplate`,
    plus our state and PKCE challenge when the template does not place them."""
    templates = provider.templates
    assert templates is not None
    TokenEndpointClient.check_template_client(provider, client)
    flow = {
        "ClientId": client.client_id,
        "RedirectUrl": redirect_uri,
        "State": state,
        "Scopes": templates.scope_delimiter.join(scopes),
        "CodeChallenge": code_challenge,
    }
    query = templates.render("authorization_query", flow) or ""
    extra: dict[str, str] = {}
    if not templates.uses("authorization_query", "State"):
        extra["state"] = state  # the callback cannot work without it
    if code_challenge is not None:
        if not templates.uses("authorization_query", "CodeChallenge"):
            extra["code_challenge"] = code_challenge
        if "code_challenge_method" not in (templates.authorization_query or ""):
            extra["code_challenge_method"] = "S256"
    if nonce is not None:
        extra["nonce"] = nonce
    extra.update(provider.spec.authorization_params)
    extra.update(extra_params or {})
    return append_query(provider.authorization_url, append_pairs(query, extra))


async def start_consent(
    provider: ResolvedProvider,
    client: OAuthClient,
    states: StateStore,
    *,
    tenant_id: str,
    connection_id: str,
    user_id: str,
    redirect_uri: str,
    ttl: timedelta = STATE_TTL,
    extra_params: dict[str, str] | None = None,
    now: datetime | None = None,
) -> ConsentRequest:
    """Create and persist a state record; return the URL to send the user to."""
    state = new_state()
    verifier = new_code_verifier() if provider.spec.pkce else None
    nonce = new_nonce() if provider.spec.is_oidc else None
    record = OAuthStateRecord(
        tenant_id=tenant_id,
        connection_id=connection_id,
        user_id=user_id,
        provider_id=provider.id,
        redirect_uri=redirect_uri,
        expires_at=(now or datetime.now(UTC)) + ttl,
        code_verifier=verifier,
        nonce=nonce,
    )
    await states.put(state, record)
    url = authorization_url(
        provider,
        client,
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=code_challenge_s256(verifier) if verifier else None,
        nonce=nonce,
        extra_params=extra_params,
    )
    return ConsentRequest(url=url, state=state, record=record)


async def finish_consent(
    record: OAuthStateRecord,
    provider: ResolvedProvider,
    client: OAuthClient,
    tokens: TokenEndpointClient,
    *,
    code: str,
) -> TokenSet:
    """Redeem `code` for the consent `record` (already consumed from the state store)."""
    return await tokens.exchange_code(
        provider,
        client,
        code=code,
        redirect_uri=record.redirect_uri,
        code_verifier=record.code_verifier,
        nonce=record.nonce,
    )
