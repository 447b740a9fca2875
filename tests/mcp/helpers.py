"""The official MCP Python client over Streamable HTTP, as an agent would use it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import GatewayUnderTest


@contextlib.asynccontextmanager
async def mcp_session(
    gateway: GatewayUnderTest, user: str, path: str = "/api/mcp"
) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {gateway.token(user)}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30.0, trust_env=False) as http:
        async with streamable_http_client(gateway.url + path, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def all_tools(session: ClientSession) -> list[types.Tool]:
    """Every tool, following the cursor."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(
            params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
        )
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def by_name(tools: list[types.Tool]) -> dict[str, types.Tool]:
    return {t.name: t for t in tools}


def structured(result: types.CallToolResult) -> Any:
    return result.structured_content
