from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from functions.devtools.azurite import AzuritePorts
from functions.oauth import OAuthClient
from functions.stores.secrets.local import generate_local_key
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET, OidcServer
from tests.oauth.helpers import Env


@pytest.fixture
def env(azurite: AzuritePorts, oidc: OidcServer, tmp_path: Path) -> Env:
    prefix = "o" + secrets.token_hex(4)
    environment = Env(
        connection_string=azurite.connection_string(),
        prefix=prefix,
        secrets_dir=str(tmp_path / "secrets"),
        secrets_key=generate_local_key(),
        ca_file=oidc.ca_file,
        issuer=oidc.issuer,
    )
    environment.table_service().create_table(f"{prefix}connections")
    return environment


@pytest.fixture
async def http(oidc: OidcServer) -> AsyncIterator[httpx.AsyncClient]:
    async with oidc.async_client() as client:
        yield client


@pytest.fixture
def oauth_client() -> OAuthClient:
    return OAuthClient(CLIENT_ID, CLIENT_SECRET, ("email",))
