"""`python -m functions dev`: run the gateway locally (what `make run` calls).

Creates local.settings.json if missing and loads it into the environment (variables
already set in the environment win), starts this checkout's own Azurite on ports it
chooses and remembers under `.localdata/` (functions/devtools/stack.py), and serves the
app with uvicorn. Optional extras for trying things end to end:

* `--oauth-demo`: a local OpenID provider (node oidc-provider) with a demo user and a
  ready-made demo connector (functions/devtools/oidc_demo.py);
* `--tls-upstream HOST`: an echo upstream over HTTPS with its own CA, reached for
  `https://HOST` (GATEWAY_DEV_UPSTREAM_RESOLVE + GATEWAY_UPSTREAM_CA_FILE).

Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORT = 7071
STORAGE_SETTING = "GATEWAY_STORAGE_CONNECTION_STRING"
PUBLIC_URL_SETTING = "GATEWAY_PUBLIC_BASE_URL"
SECRETS_DIR_SETTING = "GATEWAY_LOCAL_SECRETS_DIR"
CA_SETTING = "GATEWAY_UPSTREAM_CA_FILE"
RESOLVE_SETTING = "GATEWAY_DEV_UPSTREAM_RESOLVE"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the gateway locally with its own Azurite (what `make run` calls)",
        description="Run the gateway locally with uvicorn and this checkout's own Azurite "
        "(free ports remembered in DATA_DIR/stack.json, data in DATA_DIR/azurite). "
        "Settings come from local.settings.json (created on first use); variables set "
        "in the environment win. Ctrl-C stops everything started here.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=_port_from_environment(),
        help=f"gateway port (default: $PORT, else {DEFAULT_PORT}); the public URL follows "
        f"unless {PUBLIC_URL_SETTING} is set",
    )
    parser.add_argument(
        "--settings-file",
        type=Path,
        default=None,
        help="settings file (default: local.settings.json at the checkout's root)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where this stack keeps its state and data (default: .localdata beside the "
        "settings file)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request (off by default, as in production)",
    )
    parser.add_argument(
        "--oauth-demo",
        action="store_true",
        help="also start a local OpenID provider with a demo user and a demo OAuth "
        "connector, to try consent and refresh end to end",
    )
    parser.add_argument(
        "--tls-upstream",
        action="append",
        default=[],
        metavar="HOST",
        help="also start an HTTPS echo upstream with its own CA and send the gateway's "
        "calls to https://HOST to it (repeatable)",
    )
    parser.set_defaults(handler=run)


def _port_from_environment() -> int:
    raw = os.environ.get("PORT", "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_PORT


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_base_url(explicit: str | None, from_file: str | None, host: str, port: int) -> str:
    """The gateway's public URL: set in the environment wins; a non-loopback value in the
    settings file (a tunnel, say) is kept; otherwise it follows the port in use."""
    if explicit and explicit.strip():
        return explicit.strip()
    if from_file and from_file.strip() and not _is_loopback_url(from_file.strip()):
        return from_file.strip()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
    return f"http://{shown}:{port}"


@dataclass
class DevStack:
    """What `dev` started, to be stopped in reverse order."""

    stoppers: list[tuple[str, Any]] = field(default_factory=list)
    # Run once the gateway answers, with its local URL (e.g. creating the demo connector).
    post_start: list[Callable[[str], None]] = field(default_factory=list)

    def add(self, name: str, stop: Any) -> None:
        self.stoppers.append((name, stop))

    def stop_all(self) -> None:
        for name, stop in reversed(self.stoppers):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                print(f"{name}: could not stop cleanly ({exc})", file=sys.stderr)
            else:
                print(f"{name} stopped")
        self.stoppers.clear()


def run(args: argparse.Namespace) -> int:
    from functions.devtools.localsettings import LOCAL, ensure_local_settings, read_values
    from functions.devtools.processes import port_open
    from functions.devtools.stack import StackError, StackState, check_not_running_twice

    settings_file: Path = (args.settings_file or LOCAL).resolve()
    checkout = settings_file.parent
    data_dir: Path = (args.data_dir or checkout / ".localdata").resolve()
    if port_open(args.port, "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host):  # noqa: S104
        print(
            f"error: port {args.port} is already in use (another gateway, or another "
            f"checkout's `make run`?); choose another: make run PORT={args.port + 10}",
            file=sys.stderr,
        )
        return 1

    # Captured before the settings file is loaded: only these count as set explicitly.
    explicit = {name: os.environ.get(name) for name in (STORAGE_SETTING, PUBLIC_URL_SETTING)}
    explicit[SECRETS_DIR_SETTING] = os.environ.get(SECRETS_DIR_SETTING)
    explicit[CA_SETTING] = os.environ.get(CA_SETTING)
    explicit[RESOLVE_SETTING] = os.environ.get(RESOLVE_SETTING)

    if ensure_local_settings(settings_file):
        print(f"created {settings_file} with fresh development keys")
    values = read_values(settings_file)
    for name, value in values.items():
        os.environ.setdefault(name, value)

    state = StackState.load(data_dir)
    stack = DevStack()
    overrides: dict[str, str] = {}
    try:
        check_not_running_twice(state, data_dir)
        storage_line = _start_storage(explicit.get(STORAGE_SETTING), data_dir, state, stack)
        if explicit.get(STORAGE_SETTING) is None:
            overrides[STORAGE_SETTING] = os.environ[STORAGE_SETTING]

        public_url = public_base_url(
            explicit.get(PUBLIC_URL_SETTING), values.get(PUBLIC_URL_SETTING), args.host, args.port
        )
        os.environ[PUBLIC_URL_SETTING] = public_url
        overrides[PUBLIC_URL_SETTING] = public_url

        if not explicit.get(SECRETS_DIR_SETTING):
            secrets_dir = _secrets_dir(values.get(SECRETS_DIR_SETTING), checkout, data_dir)
            os.environ[SECRETS_DIR_SETTING] = str(secrets_dir)
            overrides[SECRETS_DIR_SETTING] = str(secrets_dir)

        extra_lines = _start_extras(args, data_dir, explicit, stack, overrides, public_url)

        state.dev_pid = os.getpid()
        state.gateway_url = public_url
        state.environment = overrides
        state.save(data_dir)
    except StackError as exc:
        stack.stop_all()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        stack.stop_all()
        raise

    local_url = public_base_url(None, None, args.host, args.port)
    print(banner(local_url, public_url, storage_line, data_dir, settings_file, extra_lines))
    sys.stdout.flush()
    try:
        _serve(args, local_url, stack)
    finally:
        stack.stop_all()
        state.dev_pid = None
        state.save(data_dir)
    return 0


def _serve(args: argparse.Namespace, local_url: str, stack: DevStack) -> None:
    import uvicorn

    from functions.app import create_app
    from functions.webhooks.options import WorkerOptions

    if stack.post_start:
        threading.Thread(
            target=_after_start, args=(args.port, local_url, stack.post_start), daemon=True
        ).start()

    # As in production: no line per request unless asked for.
    # The webhook delivery loop runs in the same process (in Azure: a timer job).
    uvicorn.run(
        create_app(webhook_worker=WorkerOptions()),
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=bool(args.access_log),
    )


def _after_start(port: int, local_url: str, actions: list[Callable[[str], None]]) -> None:
    from functions.devtools.processes import wait_for_ports

    try:
        wait_for_ports([port], 120.0)
        for action in actions:
            action(local_url)
    except Exception as exc:  # noqa: BLE001 - reported; the gateway keeps running
        print(f"error: {exc}", file=sys.stderr, flush=True)


def _start_storage(
    explicit_storage: str | None, data_dir: Path, state: Any, stack: DevStack
) -> str:
    """Start this checkout's Azurite unless storage was given in the environment."""
    from functions.devtools.processes import stop_process
    from functions.devtools.stack import start_local_azurite

    if explicit_storage is not None:
        # Set in the environment, even empty (then GATEWAY_TABLE_ENDPOINT and a sign-in:
        # infra/README.md, running against the deployed storage): the user's choice.
        os.environ[STORAGE_SETTING] = explicit_storage
        if explicit_storage.strip():
            return f"storage: {STORAGE_SETTING} from the environment (no Azurite started)"
        endpoint = os.environ.get("GATEWAY_TABLE_ENDPOINT") or "(GATEWAY_TABLE_ENDPOINT unset)"
        return f"storage: {endpoint} from the environment (no Azurite started)"
    azurite = start_local_azurite(data_dir, state)
    for note in azurite.notes:
        print(note)
    stack.add("Azurite", lambda: stop_process(azurite.process))
    os.environ[STORAGE_SETTING] = azurite.ports.connection_string()
    ports = azurite.ports
    return (
        f"storage: this checkout's Azurite on 127.0.0.1 ports {ports.blob} (blob), "
        f"{ports.queue} (queue), {ports.table} (table); data in {azurite.location}"
    )


def _secrets_dir(from_file: str | None, checkout: Path, data_dir: Path) -> Path:
    if from_file and from_file.strip() and from_file.strip() != ".localdata/secrets":
        path = Path(from_file.strip())
        return path if path.is_absolute() else checkout / path
    return data_dir / "secrets"


def _start_extras(
    args: argparse.Namespace,
    data_dir: Path,
    explicit: dict[str, str | None],
    stack: DevStack,
    overrides: dict[str, str],
    public_url: str,
) -> list[str]:
    """The optional OAuth demo provider and TLS upstreams; their banner lines."""
    lines: list[str] = []
    extra_cas: list[Path] = []
    resolve: list[str] = []
    if args.tls_upstream:
        from functions.devtools.tls_upstream import start_tls_upstream

        upstream = start_tls_upstream(data_dir, tuple(args.tls_upstream))
        stack.add("TLS echo upstream", upstream.stop)
        extra_cas.append(upstream.ca_file)
        resolve += upstream.resolve_entries()
        lines += upstream.banner_lines()
    if args.oauth_demo:
        from functions.devtools.oidc_demo import start_oauth_demo

        demo = start_oauth_demo(data_dir, public_url)
        stack.add("OAuth demo provider", demo.stop)
        extra_cas.append(demo.ca_file)
        lines += demo.banner_lines()
        stack.post_start.append(demo.ensure_demo_connector)
    if extra_cas:
        bundle = _ca_bundle(data_dir, explicit.get(CA_SETTING), extra_cas)
        os.environ[CA_SETTING] = str(bundle)
        overrides[CA_SETTING] = str(bundle)
    if resolve:
        entries = [e for e in (explicit.get(RESOLVE_SETTING) or "").split(",") if e.strip()]
        value = ",".join(entries + resolve)
        os.environ[RESOLVE_SETTING] = value
        overrides[RESOLVE_SETTING] = value
    return lines


def _ca_bundle(data_dir: Path, explicit_ca: str | None, extra: list[Path]) -> Path:
    """One PEM file: the CA file set in the environment (if any) plus the dev CAs."""
    parts = [Path(explicit_ca).read_text("utf-8")] if explicit_ca and explicit_ca.strip() else []
    parts += [path.read_text("utf-8") for path in extra]
    bundle = data_dir / "tls" / "upstream-ca-bundle.pem"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text("\n".join(parts), "utf-8")
    return bundle


def banner(
    local_url: str,
    public_url: str,
    storage_line: str,
    data_dir: Path,
    settings_file: Path,
    extra_lines: list[str],
) -> str:
    lines = [
        "",
        f"Connector Gateway on {local_url}   (health: /api/health, docs: /api/docs)",
    ]
    if public_url != local_url:
        lines.append(f"public URL (OAuth redirects, exports): {public_url}")
    lines += [
        storage_line,
        f"this stack's state and data: {data_dir}   settings: {settings_file}",
        "mint a token:    export GATEWAY_TOKEN=$(.venv/bin/python -m functions token --user alice)",
        f"point the CLI:   export GATEWAY_URL={local_url}",
        "                 .venv/bin/python -m functions connections list",
        *extra_lines,
        "Ctrl-C stops the gateway and everything started with it.",
        "",
    ]
    return "\n".join(lines)
