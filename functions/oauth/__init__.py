"""OAuth 2.0 connections: provider catalog, consent, token endpoint, refresh.

Framework-free: no FastAPI, no knowledge of the connection service. Storage is behind
small protocols (`StateStore`, `ConnectionTokenStore`) with Table Storage implementations.
msal is imported only when an msal provider is used. See README.md in this folder.
"""

from __future__ import annotations

from functions.oauth.catalog import ProviderCatalog, ProviderSpec, ResolvedProvider, default_catalog
from functions.oauth.client import TokenEndpointClient
from functions.oauth.consent import ConsentRequest, finish_consent, start_consent
from functions.oauth.errors import (
    CatalogError,
    InvalidGrantError,
    OAuthStateError,
    OAuthStateExpiredError,
    ProviderError,
    ReauthorizationRequiredError,
    RefreshBackoffError,
    TransientProviderError,
)
from functions.oauth.refresh import ConnectionTokenStore, StoredTokens, TokenRefresher
from functions.oauth.state_store import OAuthStateRecord, StateStore, TableStateStore
from functions.oauth.tokens import OAuthClient, TokenSet

__all__ = [
    "CatalogError",
    "ConnectionTokenStore",
    "ConsentRequest",
    "InvalidGrantError",
    "OAuthClient",
    "OAuthStateError",
    "OAuthStateExpiredError",
    "OAuthStateRecord",
    "ProviderCatalog",
    "ProviderError",
    "ProviderSpec",
    "ReauthorizationRequiredError",
    "RefreshBackoffError",
    "ResolvedProvider",
    "StateStore",
    "StoredTokens",
    "TableStateStore",
    "TokenEndpointClient",
    "TokenRefresher",
    "TokenSet",
    "TransientProviderError",
    "default_catalog",
    "finish_consent",
    "start_consent",
]
