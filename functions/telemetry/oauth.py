"""Token refresh as a client span with its outcome counted (issue 19).

A subclass rather than a hook inside the OAuth engine: the composition root builds
this client, and the engine stays unaware of telemetry.
"""

from __future__ import annotations

from functions.oauth.catalog import ResolvedProvider
from functions.oauth.client import TokenEndpointClient
from functions.oauth.errors import InvalidGrantError, ProviderError, TransientProviderError
from functions.oauth.tokens import OAuthClient, TokenSet
from functions.telemetry import client_span, record_refresh, set_attributes, state


class TracedTokenEndpointClient(TokenEndpointClient):
    async def refresh(
        self, provider: ResolvedProvider, client: OAuthClient, current: TokenSet
    ) -> TokenSet:
        if not state.on:
            return await super().refresh(provider, client, current)
        with client_span("gateway.token.refresh") as span:
            try:
                tokens = await super().refresh(provider, client, current)
            except InvalidGrantError as exc:
                outcome = "reauthorization_required"
                set_attributes(span, outcome=outcome, error_code=exc.code)
                record_refresh(outcome)
                raise
            except TransientProviderError as exc:
                set_attributes(span, outcome="transient", error_code=exc.code)
                record_refresh("transient")
                raise
            except ProviderError as exc:
                set_attributes(span, outcome="failed", error_code=exc.code)
                record_refresh("failed")
                raise
            set_attributes(span, outcome="refreshed")
            record_refresh("refreshed")
            return tokens
