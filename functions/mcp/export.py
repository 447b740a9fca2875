"""The custom connector Copilot Studio needs to use the gateway's MCP endpoint.

Copilot Studio adds an MCP server to an agent through a Power Platform custom connector
whose one operation is a POST on the server's Streamable HTTP path marked
`x-ms-agentic-protocol: mcp-streamable-1.0`; it then lists and calls the tools itself.
`copilot_studio_connector(...)` returns that pair (apiDefinition.swagger.json,
apiProperties.json):
- host, scheme and base path `<gateway path>/api` from the gateway's public URL;
- one path: `/mcp/connections/{id}` (that connection's tools) when a connection is
  given, else `/mcp` (every connection of whoever signs in), operationId `InvokeMCP`;
- authentication: the same Entra ID template as the Power Platform export (`oauth2-auth`
  in the swagger, the `token` oauthSetting with `resourceUri` = the gateway's audience),
  so each Copilot Studio user calls the gateway as themselves and gets their own tools.
It holds no credential and no connection secret; docs/mcp.md has the maker's steps.
"""

from __future__ import annotations

import copy
from typing import Any

from functions.powerplatform.export import (
    ENTRA_SECURITY_DEFINITION,
    GATEWAY_API_PREFIX,
    SECURITY_NAME,
    entra_properties,
    gateway_parts,
)

AGENTIC_PROTOCOL = "mcp-streamable-1.0"
OPERATION_ID = "InvokeMCP"


def copilot_studio_connector(
    *,
    gateway_base_url: str,
    audience: str,
    title: str,
    description: str | None = None,
    client_id: str | None = None,
    connection_id: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(swagger, apiProperties) of a custom connector for the MCP endpoint."""
    scheme, host, path = gateway_parts(gateway_base_url)
    mcp_path = f"/mcp/connections/{connection_id}" if connection_id else "/mcp"
    what = "this connection's operations" if connection_id else "your gateway connections"
    swagger: dict[str, Any] = {
        "swagger": "2.0",
        "info": {
            "title": title,
            "description": description
            or f"MCP server of the Connector Gateway: {what} as tools, with your credentials "
            "kept in the gateway.",
            "version": "1.0.0",
        },
        "host": host,
        "basePath": path + GATEWAY_API_PREFIX,
        "schemes": [scheme],
        "consumes": [],
        "produces": [],
        "paths": {
            mcp_path: {
                "post": {
                    "summary": f"{title} tools",
                    "description": f"Streamable HTTP MCP endpoint: {what} as tools.",
                    "x-ms-agentic-protocol": AGENTIC_PROTOCOL,
                    "operationId": OPERATION_ID,
                    "responses": {"200": {"description": "Success"}},
                }
            }
        },
        "securityDefinitions": {SECURITY_NAME: copy.deepcopy(dict(ENTRA_SECURITY_DEFINITION))},
        "security": [{SECURITY_NAME: []}],
    }
    return swagger, entra_properties(audience, client_id)
