"""`python -m functions connectors ...`: Power Platform connector folders.

    python -m functions connectors inspect DIR [DIR ...]

prints one JSON object per line (JSON Lines) per folder, in the order given: the
summary from `functions.powerplatform.inspect_dict`, or `{"source": DIR, "error":
"<file>: line L column C: <reason>"}` for a folder that cannot be read. Exit status 0
when every folder was read, 2 otherwise. Nothing a folder contains can produce a
traceback: every failure becomes that folder's error line.

    python -m functions connectors import DIR ...

is reserved for importing through the gateway's HTTP API (not implemented here yet).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

EXIT_OK = 0
EXIT_NOT_IMPLEMENTED = 1
EXIT_SOME_UNREADABLE = 2


def register(subparsers: Any) -> None:
    """Add the `connectors` command and its sub-commands to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "connectors",
        help="work with Power Platform connector folders",
        description="Work with Power Platform connector folders "
        "(apiDefinition.swagger.json + apiProperties.json).",
    )
    commands = parser.add_subparsers(dest="connectors_command", required=True)

    inspect = commands.add_parser(
        "inspect",
        help="summarise connector folders as JSON Lines",
        description="Print one JSON object per folder: title, base URL, authentication "
        "options, operations, policies and warnings, or the error that stops the folder "
        "from being read. Exit status 2 when any folder cannot be read.",
    )
    inspect.add_argument("folders", nargs="+", metavar="DIR", help="connector folder")
    inspect.set_defaults(handler=run_inspect)

    # --- import: to be implemented against the gateway's HTTP API --------------------
    importer = commands.add_parser(
        "import",
        help="import connector folders into a gateway (not yet implemented)",
        description="Import connector folders into a running gateway (not yet implemented).",
    )
    importer.add_argument("folders", nargs="*", metavar="DIR", help="connector folder")
    importer.set_defaults(handler=run_import)


def run_inspect(args: argparse.Namespace) -> int:
    """Print one JSON line per folder; 0 when all were read, else 2."""
    status = EXIT_OK
    for folder in args.folders:
        line = inspect_folder(folder)
        if "error" in line:
            status = EXIT_SOME_UNREADABLE
        try:
            print(json.dumps(line), flush=True)
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as other tools do, and point
            # stdout at /dev/null so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return status
    return status


def inspect_folder(folder: str) -> dict[str, Any]:
    """The inspect object for one folder; never raises."""
    try:
        from functions.powerplatform import DefinitionError, inspect_dict, load_definition
    except Exception as exc:  # noqa: BLE001 - reported as the folder's error line
        return {"source": folder, "error": f"internal error: {type(exc).__name__}: {exc}"}
    try:
        return inspect_dict(load_definition(folder), source=folder)
    except DefinitionError as exc:
        return {"source": folder, "error": exc.detail}
    except RecursionError:
        return {"source": folder, "error": "internal error: the definition is nested too deeply"}
    except Exception as exc:  # noqa: BLE001 - one bad folder must not stop the others
        return {"source": folder, "error": f"internal error: {type(exc).__name__}: {exc}"}


def run_import(args: argparse.Namespace) -> int:
    print("connectors import: not yet implemented", file=sys.stderr)
    return EXIT_NOT_IMPLEMENTED
