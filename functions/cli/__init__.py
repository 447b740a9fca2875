"""`python -m functions ...`: the gateway's command line.

Each sub-command lives in its own module exposing `register(subparsers)`; the
registered handler takes the parsed arguments and returns an exit status. Commands
never print tracebacks: errors become one line on stderr and a non-zero status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules are imported only when listed here, so a broken optional command cannot
# break the others.
COMMAND_MODULES: tuple[str, ...] = (
    "functions.cli.token",
    "functions.cli.dev",
    "functions.cli.serve",
    "functions.cli.connectors",
    "functions.cli.jobs",
    "functions.cli.gateway_agent",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m functions", description="Connector Gateway")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence: no tracebacks
        from functions.errors import GatewayError

        message = exc.detail if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
        print(f"error: {message}", file=sys.stderr)
        return 1
