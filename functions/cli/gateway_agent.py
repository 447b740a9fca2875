"""`python -m functions gateway-agent ...`: the on-premises agent's command line.

    python -m functions gateway-agent register --name NAME [--gateway URL]
        [--token T | --user U] [--key-file PATH] [--passphrase-env VAR]

creates an RSA-3072 key pair on this machine (private key file mode 0600, encrypted
with the passphrase in $VAR when given), registers the public key and name with the
gateway (`POST /api/gateways`, owner = the token's caller) and saves the gateway's
answer (id, tenant, relay names; no secrets) as JSON next to the key. Prints
`{"gatewayId", "name", "fingerprint", "keyFile", "configFile"}` as one JSON line.

    python -m functions gateway-agent run --name NAME [--concurrency N]
        [--key-file PATH] [--passphrase-env VAR] [--ca-file PEM]

serves the gateway's requests until SIGINT/SIGTERM. Storage: the connection string in
$GATEWAY_AGENT_STORAGE_CONNECTION_STRING (Azurite, or SAS-scoped), else the endpoints
saved at registration with DefaultAzureCredential (the machine's Entra identity).

Files default to `$GATEWAY_AGENT_HOME/<name>/agent-key.pem` and `agent-key.json`
(GATEWAY_AGENT_HOME defaults to ~/.connector-gateway/agents). Exit status 0 on
success, 1 on failure (one `error:` line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

HOME_ENV = "GATEWAY_AGENT_HOME"
DEFAULT_HOME = Path.home() / ".connector-gateway" / "agents"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:7071"
DEFAULT_USER = "alice"
REGISTER_ROUTE = "/api/gateways"
REGISTER_TIMEOUT_SECONDS = 30.0


def register(subparsers: Any) -> None:
    """Add the `gateway-agent` command and its sub-commands to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "gateway-agent",
        help="on-premises gateway agent (Windows authentication)",
        description="Register and run the on-premises gateway agent.",
    )
    commands = parser.add_subparsers(dest="agent_command", required=True)

    reg = commands.add_parser("register", help="create a key pair and register this gateway")
    reg.add_argument("--name", required=True, help="gateway name")
    reg.add_argument(
        "--gateway", help=f"gateway URL (default: $GATEWAY_URL, else {DEFAULT_GATEWAY_URL})"
    )
    who = reg.add_mutually_exclusive_group()
    who.add_argument("--token", help="bearer token (default: $GATEWAY_TOKEN)")
    who.add_argument("--user", help="mint a development token for this user")
    _key_options(reg)
    reg.set_defaults(handler=run_register)

    run = commands.add_parser("run", help="serve the gateway's requests")
    run.add_argument("--name", required=True, help="gateway name (as registered)")
    run.add_argument("--concurrency", type=_positive_int, default=8, help="parallel requests")
    run.add_argument("--ca-file", help="extra CA certificates (PEM) for internal APIs")
    run.add_argument(
        "--idle-poll", type=float, default=None, help="longest idle poll interval, seconds"
    )
    _key_options(run)
    run.set_defaults(handler=run_agent)


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-file", help="private key path (default: under $GATEWAY_AGENT_HOME)")
    parser.add_argument(
        "--passphrase-env", metavar="VAR", help="environment variable holding the key passphrase"
    )


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def key_paths(name: str, key_file: str | None) -> tuple[Path, Path]:
    """(private key file, config file next to it) for a gateway name."""
    if key_file:
        key = Path(key_file).expanduser()
    else:
        home = Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "gateway"
        key = home / safe / "agent-key.pem"
    return key, key.with_suffix(".json")


def _passphrase(args: argparse.Namespace) -> str | None:
    if not args.passphrase_env:
        return None
    value = os.environ.get(args.passphrase_env, "")
    if not value:
        raise _Failed(f"${args.passphrase_env} is empty; it must hold the key passphrase")
    return value


class _Failed(Exception):
    pass


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


# register -------------------------------------------------------------------------
def run_register(args: argparse.Namespace) -> int:
    from functions.onprem.agent import AgentConfig
    from functions.onprem.keys import (
        fingerprint,
        generate_private_key,
        public_key_pem,
        save_private_key,
    )

    key_path, config_path = key_paths(args.name, args.key_file)
    for existing in (key_path, config_path):
        if existing.exists():
            return _fail(
                f"{existing} exists: this machine is already set up for a gateway there; "
                "choose another --key-file or --name (replacing a key makes every "
                "credential encrypted for it unreadable)"
            )
    try:
        passphrase = _passphrase(args)
        token = _bearer_token(args)
    except _Failed as exc:
        return _fail(str(exc))
    gateway = (args.gateway or os.environ.get("GATEWAY_URL") or DEFAULT_GATEWAY_URL).rstrip("/")
    key = generate_private_key()
    try:
        save_private_key(key, key_path, passphrase)
    except OSError as exc:
        return _fail(f"cannot write {key_path}: {exc.strerror or exc}")
    try:
        created = _post_registration(gateway, token, args.name, public_key_pem(key))
    except _Failed as exc:
        key_path.unlink(missing_ok=True)  # nothing was registered; leave no orphan key
        return _fail(str(exc))
    relay = created.get("relay") or {}
    config = AgentConfig(
        gateway_id=created["id"],
        tenant_id=created["tenantId"],
        name=created["name"],
        gateway_url=gateway,
        fingerprint=fingerprint(key),
        table_prefix=relay.get("tablePrefix", ""),
        queue_endpoint=relay.get("queueEndpoint"),
        blob_endpoint=relay.get("blobEndpoint"),
        table_endpoint=relay.get("tableEndpoint"),
    )
    config.save(config_path)
    print(
        json.dumps(
            {
                "gatewayId": config.gateway_id,
                "name": config.name,
                "fingerprint": config.fingerprint,
                "keyFile": str(key_path),
                "configFile": str(config_path),
            }
        )
    )
    return 0


def _bearer_token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token).strip()
    from_env = os.environ.get("GATEWAY_TOKEN", "").strip()
    if from_env and args.user is None:
        return from_env
    from functions.cli.token import find_private_key
    from functions.errors import GatewayError
    from functions.identity.dev_issuer import mint_token

    try:
        private_key = find_private_key(Path.cwd())
        if private_key is None:
            raise _Failed(
                "no token: pass --token, set GATEWAY_TOKEN, or --user with a dev issuer key"
            )
        return mint_token(private_key, user=args.user or DEFAULT_USER)
    except GatewayError as exc:
        raise _Failed(exc.detail) from None


def _post_registration(gateway: str, token: str, name: str, public_key: str) -> dict[str, Any]:
    import httpx

    url = gateway + REGISTER_ROUTE
    try:
        with httpx.Client(trust_env=False, timeout=REGISTER_TIMEOUT_SECONDS) as client:
            response = client.post(
                url,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                json={"name": name, "publicKey": public_key},
            )
    except httpx.HTTPError as exc:
        raise _Failed(f"cannot reach the gateway at {url} ({type(exc).__name__})") from None
    try:
        document = response.json()
    except ValueError:
        document = None
    if response.status_code != 201 or not isinstance(document, dict):
        detail = document.get("detail") if isinstance(document, dict) else None
        raise _Failed(
            f"registration refused ({response.status_code}): {detail or response.text[:200]}"
        )
    return document


# run ------------------------------------------------------------------------------
def run_agent(args: argparse.Namespace) -> int:
    from functions.errors import GatewayError
    from functions.onprem.agent import STORAGE_CONNECTION_STRING_ENV, AgentConfig, GatewayAgent
    from functions.onprem.keys import KeyFileError, load_private_key
    from functions.onprem.storage import blob_service, queue_service, table_service
    from functions.telemetry import setup as telemetry_setup

    key_path, config_path = key_paths(args.name, args.key_file)
    try:
        config = AgentConfig.load(config_path)
    except FileNotFoundError:
        return _fail(
            f"{config_path} not found: run `gateway-agent register --name {args.name}` first"
        )
    except (OSError, ValueError, TypeError) as exc:
        return _fail(f"cannot read {config_path}: {exc}")
    try:
        key = load_private_key(key_path, _passphrase(args))
    except (KeyFileError, _Failed) as exc:
        return _fail(str(exc))
    connection_string = os.environ.get(STORAGE_CONNECTION_STRING_ENV, "").strip() or None
    if connection_string is None and not (
        config.queue_endpoint and config.blob_endpoint and config.table_endpoint
    ):
        return _fail(
            f"no storage: set {STORAGE_CONNECTION_STRING_ENV}, or register against a gateway "
            "configured with storage endpoints"
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The Azure SDK logs every storage call at INFO: one per poll.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    telemetry_setup.configure_from_env()  # the agent continues the gateway's traces
    options: dict[str, Any] = {"concurrency": args.concurrency, "ca_file": args.ca_file}
    if args.idle_poll is not None:
        options["idle_poll_seconds"] = args.idle_poll
    try:
        agent = GatewayAgent(
            config,
            key,
            queue_service(connection_string, config.queue_endpoint),
            blob_service(connection_string, config.blob_endpoint),
            table_service(connection_string, config.table_endpoint),
            **options,
        )
    except GatewayError as exc:
        return _fail(exc.detail)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"agent for gateway {config.name!r} ({config.gateway_id}) running, "
            f"concurrency {args.concurrency}",
            file=sys.stderr,
            flush=True,
        )
        await agent.run(stop)

    try:
        asyncio.run(main())
    except GatewayError as exc:
        return _fail(exc.detail)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m functions.cli.gateway_agent` (same commands)."""
    parser = argparse.ArgumentParser(prog="python -m functions")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
