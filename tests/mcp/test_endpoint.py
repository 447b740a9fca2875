"""The MCP endpoint end to end: the official MCP Python client over Streamable HTTP
against the gateway under uvicorn, with Azurite, the Key Vault double, the echo upstream
and (for consent) node oidc-provider."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from functions.identity.dev_issuer import object_id
from functions.services.ids import new_id
from functions.settings import DEV_TENANT_ID
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.api.test_import import connect, import_folder, sample
from tests.api.test_oauth_connections import consent, oauth_connector
from tests.conftest import GatewayUnderTest
from tests.doubles.echo import header_values
from tests.mcp.helpers import all_tools, by_name, mcp_session, text_of

API_KEY_AUTH = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def query_pairs(report: dict[str, Any]) -> list[tuple[str, str]]:
    return list(httpx.QueryParams(report["query"]).multi_items())


def two_connections(gateway: GatewayUnderTest, user: str, echo: Any) -> dict[str, Any]:
    """A native connection (API key header) and an imported one (Diffchecker: an API key
    header, a policy adding a query parameter from the connection, internal parameters)."""
    key, native_key = "dc-" + new_id(), "nk-" + new_id()
    with gateway.client(user) as client:
        native = create_connector(client, echo.url + "/v1", API_KEY_AUTH, name="Echo")
        response = client.post(
            f"/api/connectors/{native['id']}/connections",
            json={"displayName": "Echo native", "parameters": {"api_key": native_key}},
        )
        assert response.status_code == 201, response.text
        native_connection = response.json()
        imported = import_folder(
            client, sample("independent-publisher-connectors/Diffchecker"), echo.url
        )
        diff = connect(client, imported, {"api_key": key, "emailaddress": "ada@example.test"})
    return {
        "native": native_connection,
        "native_key": native_key,
        "diff": diff,
        "diff_key": key,
        "diff_connector": imported,
    }


async def test_tools_of_two_connections_and_calls_through_the_invoke_path(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    made = two_connections(gateway, "mcp-ada", echo)
    async with mcp_session(gateway, "mcp-ada") as session:
        tools = by_name(await all_tools(session))
        # One prefix per connection (its display name), then the operation's tool name.
        assert set(tools) == {
            "Echo_native__http_request",
            "sample__CheckText",
            "sample__CheckImage",
        }, sorted(tools)
        check_text = tools["sample__CheckText"]
        assert check_text.title == "Check text"
        schema = check_text.input_schema
        # Internal parameters with defaults (output_type, Content-Type) are hidden.
        assert set(schema["properties"]) == {"diff_level", "body"}
        assert schema["properties"]["diff_level"] == {
            "type": "string",
            "title": "Diff level",
            "description": "Specifies whether you want to diff by word or by character.",
            "enum": ["character", "word"],
            "default": "word",
        }
        assert schema["required"] == ["body"]
        assert schema["properties"]["body"]["required"] == ["left", "right"]
        assert tools["Echo_native__http_request"].input_schema["required"] == ["path"]

        # An operation tool: the request the upstream gets is the operations API's.
        result = await session.call_tool(
            "sample__CheckText",
            {"diff_level": "character", "body": {"left": "kitten", "right": "sitting"}},
        )
        assert not result.is_error, text_of(result)
        report = json.loads(text_of(result))
        assert report["method"] == "POST" and report["path"] == "/public/text"
        pairs = query_pairs(report)
        assert ("output_type", "json") in pairs and ("diff_level", "character") in pairs
        # The policy's query parameter, from the connection's parameters.
        assert ("email", "ada@example.test") in pairs
        assert header_values(report, "x-api-key") == [made["diff_key"]]
        assert json.loads(report["body"]) == {"left": "kitten", "right": "sitting"}
        # The caller's own token never goes upstream.
        assert header_values(report, "authorization") == []

        # The native connection's http_request: same path rules as invoke/{path}.
        result = await session.call_tool(
            "Echo_native__http_request",
            {"method": "PUT", "path": "/items/a b", "query": {"q": "1"}, "body": {"x": 1}},
        )
        assert not result.is_error, text_of(result)
        report = json.loads(text_of(result))
        assert report["method"] == "PUT" and report["path"] == "/v1/items/a%20b"
        assert report["query"] == "q=1" and json.loads(report["body"]) == {"x": 1}
        assert header_values(report, "x-api-key") == [made["native_key"]]
        escape = await session.call_tool("Echo_native__http_request", {"path": "/a/../../etc"})
        assert escape.is_error and "invalid_path" in text_of(escape)

        # Bad arguments are tool errors naming the field.
        wrong = await session.call_tool(
            "sample__CheckText", {"diff_level": "line", "body": {"left": "a"}}
        )
        assert wrong.is_error
        assert "parameters.diff_level" in text_of(wrong) and "body.right" in text_of(wrong)

    # One connection's endpoint: its tools without a prefix.
    path = f"/api/mcp/connections/{made['diff']['id']}"
    async with mcp_session(gateway, "mcp-ada", path) as session:
        assert {t.name for t in await all_tools(session)} == {"CheckText", "CheckImage"}
        result = await session.call_tool("CheckText", {"body": {"left": "a", "right": "b"}})
        assert not result.is_error
        assert ("diff_level", "word") not in query_pairs(json.loads(text_of(result)))

    # Audited like API calls, with the MCP client's identity and the operation.
    ada = f"user:{object_id(DEV_TENANT_ID, 'user', 'mcp-ada')}"
    with gateway.client("mcp-ada") as client:
        deadline = time.monotonic() + 10
        while True:
            activity = client.get(f"/api/connections/{made['diff']['id']}/activity").json()
            invokes = [a for a in activity["value"] if a["action"] == "invoke"]
            if len(invokes) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    # (The call refused for bad arguments went to the caller's own record, as an API
    # call refused before the connection is resolved does.)
    assert len(invokes) == 2, activity
    assert {a["principal"] for a in invokes} == {ada}
    assert {a["operation"] for a in invokes} == {"CheckText"}
    assert [a["status"] for a in invokes] == [200, 200]
    assert all(len(a["correlationId"]) == 32 for a in invokes)


async def test_upstream_errors_are_tool_errors_with_status_and_short_body(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    with gateway.client("mcp-errors") as client:
        connector = create_connector(client, echo.url, API_KEY_AUTH)
        create_connection(client, connector["id"], {"api_key": "err-key"})
    async with mcp_session(gateway, "mcp-errors") as session:
        failed = await session.call_tool("test__http_request", {"path": "/status/503"})
        assert failed.is_error
        assert text_of(failed).startswith("The API answered HTTP 503: {")
        assert failed.structured_content is not None
        assert failed.structured_content["status"] == 503
        body = failed.structured_content["body"]
        assert len(body) <= 2000 and '"path": "/status/503"' in body
        big = await session.call_tool("test__http_request", {"path": "/bytes/400000"})
        assert not big.is_error and "(truncated" in text_of(big)


async def test_sign_in_discovery_and_methods(gateway: GatewayUnderTest) -> None:
    metadata = "https://gateway.example.test/.well-known/oauth-protected-resource/api/mcp"
    with gateway.client(user=None) as anonymous:
        response = anonymous.post("/api/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata}"'
        bad = anonymous.post(
            "/api/mcp",
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Authorization": "Bearer not-a-token"},
        )
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"] == (
            f'Bearer resource_metadata="{metadata}", error="invalid_token"'
        )
        one = anonymous.post(f"/api/mcp/connections/{new_id()}", json=INITIALIZE)
        assert one.status_code == 401 and "/api/mcp/connections/" in one.headers["www-authenticate"]

        document = anonymous.get(metadata.removeprefix("https://gateway.example.test"))
        assert document.status_code == 200
        body = document.json()
        assert body["resource"] == "https://gateway.example.test/api/mcp"
        assert body["authorization_servers"] == [
            f"https://login.microsoftonline.com/{DEV_TENANT_ID}/v2.0"
        ]
        assert body["bearer_methods_supported"] == ["header"]
        root = anonymous.get("/.well-known/oauth-protected-resource").json()
        assert root["resource"] == "https://gateway.example.test/api"

    with gateway.client("mcp-methods") as client:
        # No server-to-client stream and no sessions: POST only.
        for method in ("GET", "DELETE"):
            response = client.request(method, "/api/mcp", headers=MCP_HEADERS)
            assert response.status_code == 405 and response.headers["allow"] == "POST"
        # A plain JSON answer per POST (what the Functions host can relay).
        answer = client.post("/api/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["result"]["serverInfo"]["name"] == "connector-gateway"
        assert "mcp-session-id" not in answer.headers


async def test_caller_without_rights_gets_no_tools_and_no_calls(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    made = two_connections(gateway, "mcp-owner", echo)
    async with mcp_session(gateway, "mcp-owner") as session:
        owned = {t.name for t in await all_tools(session)}
    assert "sample__CheckText" in owned

    for user, roles in (("mcp-stranger", []), ("mcp-admin", ["Gateway.Admin"])):
        async with mcp_session(gateway, user) as session:
            assert await all_tools(session) == []
            with pytest.raises(MCPError) as refused:
                await session.call_tool("sample__CheckText", {"body": {"left": "a", "right": "b"}})
            assert "no tool named" in str(refused.value)
        with gateway.client(user, roles=roles) as client:
            for connection in (made["diff"], made["native"]):
                response = client.post(
                    f"/api/mcp/connections/{connection['id']}",
                    json=INITIALIZE,
                    headers=MCP_HEADERS,
                )
                assert_problem(response, 404, "connection_not_found")


async def test_revoked_share_loses_its_tools_within_the_cache_bound(
    start_gateway: Any, echo: Any
) -> None:
    gateway = start_gateway(metadata_cache_seconds=1.0)
    bob = object_id(DEV_TENANT_ID, "user", "mcp-bob")
    with gateway.client("mcp-alice") as alice:
        connector = create_connector(alice, echo.url, API_KEY_AUTH)
        connection = create_connection(alice, connector["id"], {"api_key": "shared-key"})
        alice.post(
            f"/api/connections/{connection['id']}/shares",
            json={"principal": {"type": "user", "id": bob}},
        ).raise_for_status()
        async with mcp_session(gateway, "mcp-bob") as session:
            assert [t.name for t in await all_tools(session)] == ["test__http_request"]
            used = await session.call_tool("test__http_request", {"path": "/shared"})
            assert not used.is_error
            assert header_values(json.loads(text_of(used)), "x-api-key") == ["shared-key"]
            alice.request(
                "DELETE",
                f"/api/connections/{connection['id']}/shares",
                json={"principal": {"type": "user", "id": bob}},
            ).raise_for_status()
            revoked_at = time.monotonic()
            while await all_tools(session):
                assert time.monotonic() - revoked_at < 1.5, "tool still listed after the bound"
            with pytest.raises(MCPError):
                await session.call_tool("test__http_request", {"path": "/shared"})
        with gateway.client("mcp-bob") as client:
            response = client.post(
                f"/api/mcp/connections/{connection['id']}", json=INITIALIZE, headers=MCP_HEADERS
            )
            assert_problem(response, 404, "connection_not_found")


async def test_oauth_connection_needing_consent_returns_the_consent_link(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    with gateway.client("mcp-oauth") as client:
        connector = oauth_connector(client, oidc, echo.url)
        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "Mail"}
        ).json()
        assert created["status"] == "consent_required"
        waiting = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "Waiting"}
        ).json()
        client.post(
            f"/api/connections/{waiting['id']}/shares",
            json={
                "principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "mcp-oa-b")}
            },
        ).raise_for_status()

    async with mcp_session(gateway, "mcp-oauth") as session:
        result = await session.call_tool("Mail__http_request", {"path": "/me"})
        assert result.is_error
        details = result.structured_content
        assert details is not None and details["code"] == "connection_consent_required"
        link = details["consentUrl"]
        assert link.startswith(oidc.authorization_url) and link in text_of(result)

        # The link is a real consent: after it, the same tool call works.
        assert consent(gateway, oidc, link).status_code == 200
        result = await session.call_tool("Mail__http_request", {"path": "/me"})
        assert not result.is_error, text_of(result)
        report = json.loads(text_of(result))
        assert header_values(report, "authorization")[0].startswith("Bearer ")

    # A grantee cannot consent for the owner: told so, with the owner's way out.
    async with mcp_session(gateway, "mcp-oa-b") as session:
        assert [t.name for t in await all_tools(session)] == ["Waiting__http_request"]
        result = await session.call_tool("Waiting__http_request", {"path": "/me"})
        assert result.is_error and "consentUrl" not in (result.structured_content or {})
        assert "only the owner" in text_of(result)


async def test_large_definition_is_listed_in_pages(gateway: GatewayUnderTest) -> None:
    """The largest sample (Blackbaud, 138 operations, 119 callable) in pages of 100."""
    with gateway.client("mcp-large") as client:
        connector = import_folder(
            client, sample("certified-connectors/Blackbaud Church Management"), "https://x.test"
        )
        client.put(
            f"/api/connectors/{connector['id']}/oauth-client",
            json={"clientId": "bb-client", "clientSecret": "bb-secret"},
        ).raise_for_status()
        connection = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "bb"}
        ).json()
    path = f"/api/mcp/connections/{connection['id']}"
    async with mcp_session(gateway, "mcp-large", path) as session:
        first = await session.list_tools()
        assert len(first.tools) == 100 and first.next_cursor is not None
        tools = await all_tools(session)
    assert len(tools) == 119 and len({t.name for t in tools}) == 119
    with gateway.client("mcp-large") as client:
        headers = {**MCP_HEADERS, "MCP-Protocol-Version": "2025-06-18"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        page = client.post(path, json=listing, headers=headers)
        assert page.status_code == 200, page.text
        cursor = page.json()["result"]["nextCursor"]
        rest = client.post(
            path, json={**listing, "params": {"cursor": cursor}}, headers=headers
        ).json()
        assert len(rest["result"]["tools"]) == 19 and "nextCursor" not in rest["result"]
        invalid = client.post(
            path, json={**listing, "params": {"cursor": "x"}}, headers=headers
        ).json()
        assert invalid["error"]["message"] == "invalid cursor"


async def test_disabled_connection_serves_no_tools(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("mcp-disabled") as owner:
        connector = create_connector(owner, echo.url, API_KEY_AUTH)
        connection = create_connection(owner, connector["id"], {"api_key": "d-key"})
    async with mcp_session(gateway, "mcp-disabled") as session:
        assert [t.name for t in await all_tools(session)] == ["test__http_request"]
        with gateway.client("mcp-boss", roles=["Gateway.Admin"]) as admin:
            admin.post(f"/api/admin/connections/{connection['id']}/disable").raise_for_status()
        assert await all_tools(session) == []
    with gateway.client("mcp-disabled") as owner:
        response = owner.post(
            f"/api/mcp/connections/{connection['id']}", json=INITIALIZE, headers=MCP_HEADERS
        )
        assert_problem(response, 403, "connection_disabled")


def modern(method: str, params: dict[str, Any], **headers: str) -> dict[str, Any]:
    """A request of the 2026-07-28 revision (no initialize; an envelope per message)."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {
        "json": {
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": {**params, "_meta": envelope},
        },
        "headers": {
            **MCP_HEADERS,
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": method,
            **headers,
        },
    }


async def test_the_2026_revision_is_served_too(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("mcp-modern") as client:
        connector = create_connector(client, echo.url, API_KEY_AUTH)
        create_connection(client, connector["id"], {"api_key": "modern-key"})
        listed = client.post("/api/mcp", **modern("tools/list", {}))
        assert listed.status_code == 200, listed.text
        result = listed.json()["result"]
        # Each caller has their own tools: not to be shared by caches.
        assert result["cacheScope"] == "private"
        assert [t["name"] for t in result["tools"]] == ["test__http_request"]
        arguments = {"name": "test__http_request", "arguments": {"path": "/modern"}}
        called = client.post(
            "/api/mcp", **modern("tools/call", arguments, **{"Mcp-Name": "test__http_request"})
        )
        assert called.status_code == 200, called.text
        report = json.loads(called.json()["result"]["content"][0]["text"])
        assert report["path"] == "/modern"
        assert header_values(report, "x-api-key") == ["modern-key"]
