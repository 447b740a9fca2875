"""`python -m functions token`: mint a bearer token from the local development issuer.

    python -m functions token --user alice [--tenant T] [--groups g1,g2] [--roles r1]
    python -m functions token --app nightly-job [--roles Connections.Invoke]

Only the token goes to stdout, so `TOKEN=$(python -m functions token --user alice)`
works. The key is `GATEWAY_DEV_ISSUER_PRIVATE_KEY` from the environment, else from
`Values` in ./local.settings.json (written by the local runner on first start).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from functions.errors import ConfigurationError
from functions.identity.dev_issuer import mint_token
from functions.settings import DEV_AUDIENCE, DEV_TENANT_ID

KEY_SETTING = "GATEWAY_DEV_ISSUER_PRIVATE_KEY"
LOCAL_SETTINGS_FILE = "local.settings.json"
# The README's local run command; it creates local.settings.json with a fresh key.
RUN_COMMAND = "make run"


def register(subparsers: Any) -> None:
    """Add the `token` sub-command to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "token",
        help="mint a development bearer token",
        description="Mint a bearer token from the local development issuer "
        "(trusted by the gateway only when GATEWAY_ENVIRONMENT=development).",
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="user name; the same name always maps to the same user")
    who.add_argument("--app", help="application name, for an app-only (daemon) token")
    parser.add_argument("--tenant", default=DEV_TENANT_ID, help="tenant id (tid)")
    parser.add_argument("--audience", default=DEV_AUDIENCE, help="audience (aud)")
    parser.add_argument("--groups", type=_csv, default=(), help="comma-separated group ids")
    parser.add_argument("--roles", type=_csv, default=(), help="comma-separated app roles")
    parser.add_argument(
        "--version", type=int, choices=(1, 2), default=2, help="Entra token shape (v1 or v2)"
    )
    parser.add_argument("--lifetime", type=_positive_int, default=3600, help="lifetime in seconds")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print one token; exit 2 with a one-line hint when no dev issuer key is set up."""
    private_key = find_private_key(Path.cwd())
    if private_key is None:
        print(
            f"error: no dev issuer key: set {KEY_SETTING}, or run the gateway once with "
            f"`{RUN_COMMAND}` (see README) to create {LOCAL_SETTINGS_FILE}",
            file=sys.stderr,
        )
        return 2
    token = mint_token(
        private_key,
        user=args.user,
        app=args.app,
        tenant=args.tenant,
        audience=args.audience,
        groups=args.groups,
        roles=args.roles,
        version=args.version,
        lifetime_seconds=args.lifetime,
    )
    print(token)
    return 0


def find_private_key(directory: Path) -> str | None:
    """The dev issuer key from the environment, else from `directory/local.settings.json`."""
    from_env = os.environ.get(KEY_SETTING, "").strip()
    if from_env:
        return from_env
    path = directory / LOCAL_SETTINGS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        # The CLI's handler prints GatewayErrors as one line, without a traceback.
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    values = document.get("Values") if isinstance(document, dict) else None
    value = values.get(KEY_SETTING) if isinstance(values, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return number
