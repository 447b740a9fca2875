"""`python -m functions connectors export ID --out DIR`: a Power Platform definition pair
that calls an imported connector through the gateway.

Writes `DIR/apiDefinition.swagger.json` and `DIR/apiProperties.json` (what `paconn
create` or the maker portal's import take), hosted at the gateway's public URL
(GATEWAY_PUBLIC_BASE_URL; `make run` sets it to the port it serves on) and signing in
with Entra ID. `--client-id` is the app registration Power Platform signs in with
(infra/README.md); without it the file holds a placeholder, and a warning on stderr says
so. Prints {"out", "files", "host", "clientIdPlaceholder"} as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from functions.cli.gateway_client import (
    EXIT_INVALID,
    CliError,
    GatewayClient,
    add_gateway_options,
    report,
)

DEFINITION_FILE = "apiDefinition.swagger.json"
PROPERTIES_FILE = "apiProperties.json"


def add_export_command(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="write a Power Platform definition pair that calls a connector through the gateway",
        description="Write apiDefinition.swagger.json and apiProperties.json for an imported "
        "connector, hosted at the gateway's public URL and signing in with Entra ID.",
    )
    export.add_argument("connector", metavar="CONNECTOR_ID", help="the imported connector's id")
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write")
    export.add_argument(
        "--client-id",
        metavar="ID",
        help="client id of the app registration Power Platform signs in with "
        "(default: a placeholder to replace)",
    )
    export.add_argument(
        "--connection-id",
        metavar="ID",
        help="bake one of your connections in (default: callers pass connectionId)",
    )
    export.add_argument(
        "--force", action="store_true", help="overwrite the files if they exist already"
    )
    add_gateway_options(export)
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    out: Path = args.out
    targets = [out / DEFINITION_FILE, out / PROPERTIES_FILE]
    try:
        existing = [str(p) for p in targets if p.exists()]
        if existing and not args.force:
            raise CliError(
                f"{', '.join(existing)} exists already; pass --force to overwrite", EXIT_INVALID
            )
        params = {
            key: value
            for key, value in (("clientId", args.client_id), ("connectionId", args.connection_id))
            if value
        }
        client = GatewayClient.from_args(args)
        exported = client.call(
            "GET", f"/api/connectors/{quote(args.connector, safe='')}/export", params=params
        ).json()
        out.mkdir(parents=True, exist_ok=True)
        for path, document in zip(
            targets, (exported["apiDefinition"], exported["apiProperties"]), strict=True
        ):
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except CliError as error:
        return report(error)
    except OSError as exc:
        return report(CliError(f"cannot write to {out}: {exc.strerror or exc}"))
    placeholder = _client_id(exported["apiProperties"]).startswith("<")
    print(
        json.dumps(
            {
                "out": str(out),
                "files": [str(p) for p in targets],
                "host": exported["apiDefinition"].get("host"),
                "clientIdPlaceholder": placeholder,
            }
        )
    )
    if placeholder:
        print(
            f"warning: {PROPERTIES_FILE} holds a placeholder client id; export again with "
            "--client-id <client id of the app registration Power Platform signs in with> "
            "(infra/README.md, Power Platform app registration)",
            file=sys.stderr,
        )
    return 0


def _client_id(properties: dict[str, Any]) -> str:
    parameters = properties.get("properties", {}).get("connectionParameters", {})
    for parameter in parameters.values():
        settings = parameter.get("oAuthSettings") if isinstance(parameter, dict) else None
        if isinstance(settings, dict) and isinstance(settings.get("clientId"), str):
            return str(settings["clientId"])
    return ""
