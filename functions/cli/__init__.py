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
    "functions.cli.connections",
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
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)command's namespace its own parser, so that an unknown option is
    reported with that sub-command's usage rather than the top-level one."""
    parser.set_defaults(cli_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _remember_parsers(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Exits 2 with the usage of the sub-command that was being parsed.
        args.cli_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence: no tracebacks
        from functions.errors import GatewayError

        message = exc.detail if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
        print(f"error: {message}", file=sys.stderr)
        return 1
