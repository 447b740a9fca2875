"""MCP (Model Context Protocol): connections' operations as tools for AI agents.

    names.py      tool, prefix and argument names (valid for clients, stable)
    schemas.py    Swagger 2.0 schemas -> self-contained JSON Schema 2020-12
    tools.py      ToolSpec per operation (or `http_request` for native connectors)
    service.py    the caller's tools and tool calls, through the invoke service
    endpoint.py   the Streamable HTTP endpoint (official SDK), auth, RFC 9728 metadata
    export.py     the Copilot Studio custom connector for the endpoint

docs/mcp.md describes the endpoint, the name mapping and the Copilot Studio steps.
"""

from __future__ import annotations

from functions.mcp.tools import HTTP_REQUEST, ToolSpec, http_request_tool, tools_for_definition

__all__ = ["HTTP_REQUEST", "ToolSpec", "http_request_tool", "tools_for_definition"]
