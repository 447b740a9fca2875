"""`TokenSet`: what a connection holds after consent, and its secret payload format.

The connection's secret is one JSON document, `{"format": 1, "parameters": {...},
"oauth": {...}}`: connection parameters and OAuth tokens live side by side, and every
change (consent, refresh) writes a new secret version holding both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from functions.oauth.certificates import (
    ClientCertificate,
    is_certificate_bundle,
    load_certificate_bundle,
)

SECRET_FORMAT = 1
# A token is due for refresh when less than min(provider margin, this fraction of the
# lifetime the provider granted) remains: short-lived tokens (60 s to 5 min, shorter
# than the usual 300 s margin) are then refreshed once per lifetime, not on every call.
# Half, as msal schedules its own proactive refresh (`refresh_in`).
REFRESH_LIFETIME_FRACTION = 0.5
GrantKind = Literal["authorization_code", "client_credentials"]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TokenSet:
    """Tokens from one token response (RFC 6749 §5.1), with absolute expiry times.

    `grant` says how to renew: with the refresh token (`authorization_code`) or by running
    the client-credentials grant again (`client_credentials`).
    """

    access_token: str = field(repr=False)
    token_type: str = "Bearer"  # noqa: S105 - a setting's name, not a secret
    expires_at: datetime | None = None
    refresh_token: str | None = field(default=None, repr=False)
    refresh_token_expires_at: datetime | None = None
    scope: str | None = None
    id_token_claims: dict[str, Any] | None = None
    obtained_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    grant: GrantKind = "authorization_code"
    # The redirect URI the grant was obtained with: `{RedirectUrl}` of refresh templates.
    redirect_uri: str | None = None
    # Entra ID's `ext_expires_in`: the resource keeps accepting the token this long when
    # the token service is down. Used only while refreshing fails transiently.
    extended_expires_at: datetime | None = None

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        """True when the access token expires within `seconds` (never, without expiry)."""
        if self.expires_at is None:
            return False
        now = now or datetime.now(UTC)
        return self.expires_at - timedelta(seconds=seconds) <= now

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_within(0, now)

    def usable_during_outage(self, now: datetime | None = None) -> bool:
        """Still worth sending while the provider cannot refresh it: not expired, or
        within the extended lifetime the provider granted (`ext_expires_in`)."""
        if not self.is_expired(now):
            return True
        now = now or datetime.now(UTC)
        return self.extended_expires_at is not None and self.extended_expires_at > now

    @property
    def lifetime_seconds(self) -> float | None:
        """The lifetime the provider granted (`expires_in`), None without an expiry."""
        if self.expires_at is None:
            return None
        return (self.expires_at - self.obtained_at).total_seconds()

    def refresh_margin(self, provider_margin: float) -> float:
        """Seconds before expiry at which this token is due for refresh: the provider's
        margin, scaled down to `REFRESH_LIFETIME_FRACTION` of the granted lifetime."""
        lifetime = self.lifetime_seconds
        if lifetime is None:
            return 0.0
        if lifetime <= 0:
            return float(provider_margin)
        return min(float(provider_margin), lifetime * REFRESH_LIFETIME_FRACTION)

    def needs_refresh(self, provider_margin: float, now: datetime | None = None) -> bool:
        """True when the token is within its (lifetime-scaled) refresh margin of expiry.
        A token without an expiry is never due: it is renewed when the upstream rejects
        it (a 401 forces one refresh)."""
        return self.expires_within(self.refresh_margin(provider_margin), now)

    @property
    def renewable(self) -> bool:
        return self.grant == "client_credentials" or bool(self.refresh_token)

    def merged_with_previous(self, previous: TokenSet) -> TokenSet:
        """Keep the previous refresh token when a refresh response omits one (RFC 6749 §6),
        and the previous scope when it omits `scope` (§5.1: omitted when unchanged)."""
        scope = self.scope if self.scope is not None else previous.scope
        if self.refresh_token:
            return replace(
                self, redirect_uri=self.redirect_uri or previous.redirect_uri, scope=scope
            )
        return replace(
            self,
            scope=scope,
            redirect_uri=self.redirect_uri or previous.redirect_uri,
            refresh_token=previous.refresh_token,
            refresh_token_expires_at=previous.refresh_token_expires_at,
            id_token_claims=self.id_token_claims or previous.id_token_claims,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": _iso(self.expires_at),
            "refresh_token": self.refresh_token,
            "refresh_token_expires_at": _iso(self.refresh_token_expires_at),
            "scope": self.scope,
            "id_token_claims": self.id_token_claims,
            "obtained_at": _iso(self.obtained_at),
            "grant": self.grant,
            "redirect_uri": self.redirect_uri,
            "extended_expires_at": _iso(self.extended_expires_at),
        }
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenSet:
        return cls(
            access_token=str(data["access_token"]),
            token_type=str(data.get("token_type") or "Bearer"),
            expires_at=_parse_time(data.get("expires_at")),
            refresh_token=data.get("refresh_token") or None,
            refresh_token_expires_at=_parse_time(data.get("refresh_token_expires_at")),
            scope=data.get("scope"),
            id_token_claims=data.get("id_token_claims"),
            obtained_at=_parse_time(data.get("obtained_at")) or datetime.now(UTC),
            grant=data.get("grant") or "authorization_code",
            redirect_uri=data.get("redirect_uri") or None,
            extended_expires_at=_parse_time(data.get("extended_expires_at")),
        )

    def to_secret(self, existing: str | None = None) -> str:
        """The secret value: `existing` payload (parameters kept) with `oauth` replaced."""
        payload: dict[str, Any] = json.loads(existing) if existing else {}
        payload["format"] = SECRET_FORMAT
        payload["oauth"] = self.to_dict()
        return json.dumps(payload, separators=(",", ":"))

    @classmethod
    def from_secret(cls, value: str) -> TokenSet | None:
        """The tokens in a connection secret, or None when it holds none (yet)."""
        payload = json.loads(value)
        oauth = payload.get("oauth") if isinstance(payload, dict) else None
        return cls.from_dict(oauth) if isinstance(oauth, dict) else None


@dataclass(frozen=True)
class OAuthClient:
    """A connector's OAuth client registration (RFC 6749 §2). The secret is memory only.

    `client_secret` is either a client secret or a PEM bundle (private key + certificate)
    for certificate client authentication (`certificate`, `functions.oauth.certificates`).
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()

    @property
    def certificate(self) -> ClientCertificate | None:
        """The client certificate, when the credential is a PEM bundle."""
        if not is_certificate_bundle(self.client_secret):
            return None
        assert self.client_secret is not None
        return load_certificate_bundle(self.client_secret)

    @property
    def shared_secret(self) -> str | None:
        """The client secret proper: None when the client authenticates with a
        certificate (the bundle is never sent anywhere)."""
        return None if is_certificate_bundle(self.client_secret) else self.client_secret
