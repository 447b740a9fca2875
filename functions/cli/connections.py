"""`python -m functions connections list|create|delete`: connections on a running gateway.

    python -m functions connections list [--json]
    python -m functions connections create CONNECTOR_ID --name NAME
        [--param NAME=VALUE ...] [--secret-param NAME=env:VAR|file:PATH ...]
        [--parameter-set NAME]
    python -m functions connections delete CONNECTION_ID

`create` prints the created connection as JSON; for an OAuth connector, the consent URL
to open goes to stderr too. Credentials (API keys, passwords) are passed with
`--secret-param`, read from an environment variable or a file, so they are never in the
shell history. Exit status: 0 done, 2 refused as invalid, 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from functions.cli.gateway_client import (
    EXIT_INVALID,
    CliError,
    GatewayClient,
    add_gateway_options,
    read_secret,
    report,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "connections",
        help="list, create and delete connections on a running gateway",
        description="Connections on a running gateway (see `make run`): your credentials "
        "for a connector, kept by the gateway.",
    )
    commands = parser.add_subparsers(dest="connections_command", required=True)

    lister = commands.add_parser(
        "list",
        help="list the connections you can use",
        description="List the connections you own or that are shared with you.",
    )
    lister.add_argument(
        "--json", action="store_true", help="print the API's JSON instead of a table"
    )
    add_gateway_options(lister)
    lister.set_defaults(handler=run_list)

    creator = commands.add_parser(
        "create",
        help="create a connection to a connector",
        description="Create a connection: the credentials the gateway uses when you call "
        "the connector's API. OAuth connectors answer with a consent URL to open.",
    )
    creator.add_argument("connector", metavar="CONNECTOR_ID", help="the connector's id")
    creator.add_argument("--name", required=True, help="display name of the connection")
    creator.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a connection parameter that is not a secret (repeatable)",
    )
    creator.add_argument(
        "--secret-param",
        action="append",
        default=[],
        metavar="NAME=env:VAR|file:PATH",
        help="a secret connection parameter (API key, password), read from an environment "
        "variable or a file (repeatable)",
    )
    creator.add_argument(
        "--parameter-set",
        metavar="NAME",
        help="which parameter set of an imported connector (its authentication option)",
    )
    add_gateway_options(creator)
    creator.set_defaults(handler=run_create)

    deleter = commands.add_parser(
        "delete",
        help="delete a connection (its credentials are purged)",
        description="Delete a connection you own; its credentials are purged and shares end.",
    )
    deleter.add_argument("connection", metavar="CONNECTION_ID", help="the connection's id")
    add_gateway_options(deleter)
    deleter.set_defaults(handler=run_delete)


def run_list(args: argparse.Namespace) -> int:
    try:
        items = GatewayClient.from_args(args).call("GET", "/api/connections").json()["value"]
    except CliError as error:
        return report(error)
    if args.json:
        print(json.dumps(items))
        return 0
    rows = [("ID", "STATUS", "CONNECTOR", "NAME")] + [
        (c["id"], c["status"], c["connectorId"], c["displayName"]) for c in items
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row[:3], widths, strict=True)), row[3])
    return 0


def run_create(args: argparse.Namespace) -> int:
    try:
        parameters: dict[str, Any] = {}
        for item in args.param:
            name, value = _pair(item, "--param")
            parameters[name] = value
        for item in args.secret_param:
            name, source = _pair(item, "--secret-param")
            parameters[name] = read_secret(source, f"--secret-param {name}")
        body: dict[str, Any] = {"displayName": args.name, "parameters": parameters}
        if args.parameter_set:
            body["parameterSet"] = args.parameter_set
        client = GatewayClient.from_args(args)
        created = client.call(
            "POST", f"/api/connectors/{quote(args.connector, safe='')}/connections", json=body
        ).json()
    except CliError as error:
        return report(error)
    print(json.dumps(created))
    if created.get("consentUrl"):
        print(
            f"open this URL to sign in and consent:\n{created['consentUrl']}",
            file=sys.stderr,
        )
    return 0


def run_delete(args: argparse.Namespace) -> int:
    try:
        GatewayClient.from_args(args).call(
            "DELETE", f"/api/connections/{quote(args.connection, safe='')}"
        )
    except CliError as error:
        return report(error)
    print(f"deleted connection {args.connection}")
    return 0


def _pair(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise CliError(f"{option} takes NAME=VALUE, got {item!r}", EXIT_INVALID)
    return name, value
