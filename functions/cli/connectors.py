"""`python -m functions connectors ...`: Power Platform connector folders.

    python -m functions connectors inspect DIR [DIR ...]

prints one JSON object per line (JSON Lines) per folder, in the order given: the
summary from `functions.powerplatform.inspect_dict`, or `{"source": DIR, "error":
"<file>: line L column C: <reason>"}` for a folder that cannot be read. Exit status 0
when every folder was read, 2 otherwise. Nothing a folder contains can produce a
traceback: every failure becomes that folder's error line.

    python -m functions connectors import DIR [--base-url URL] [--name NAME]
        [--gateway URL] [--token TOKEN | --user NAME] [--client-secret-from file:PATH|env:NAME]

uploads the folder's files unchanged (`POST {gateway}/api/connectors/import`,
multipart/form-data: files `apiDefinition`, `apiProperties` when present, `script` when
`script.csx` is present; fields `baseUrl` and `name` when given; file names matched as
`inspect` matches them; field `clientSecret`, the secret of the definition's own OAuth
client id, read from a file or an environment variable, when `--client-secret-from` is
given). The gateway is `--gateway`, else $GATEWAY_URL, else
http://127.0.0.1:7071. The bearer token is `--token`, else a development token minted
for `--user` when given, else $GATEWAY_TOKEN, else a development token for "alice"
(the key as `python -m functions token` finds it). Prints the created connector as one
JSON line and exits 0, with each import warning as a `warning: ...` line on stderr.
When no operation of the connector can run at the gateway (e.g. a connector-wide policy
the gateway does not support), the connector is deleted again and the exit status is 2,
unless `--allow-partial`. Otherwise prints `error: <detail>` (and one indented line per
entry of the problem's `errors`) on stderr and exits 2 when the definition or the
request was refused as invalid (400/422, or a folder that cannot be read) and 1 for
anything else (authentication, an unreachable gateway, server errors). Never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SOME_UNREADABLE = 2
EXIT_INVALID = 2

GATEWAY_URL_SETTING = "GATEWAY_URL"
GATEWAY_TOKEN_SETTING = "GATEWAY_TOKEN"  # noqa: S105 - a variable name, not a token
DEFAULT_GATEWAY_URL = "http://127.0.0.1:7071"
DEFAULT_USER = "alice"
IMPORT_ROUTE = "/api/connectors/import"
# Import parses and stores two documents; generous, but a hung gateway must not hang us.
IMPORT_TIMEOUT_SECONDS = 120.0


def register(subparsers: Any) -> None:
    """Add the `connectors` command and its sub-commands to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "connectors",
        help="inspect and import Power Platform connector folders, export connectors",
        description="Work with Power Platform connector folders "
        "(apiDefinition.swagger.json + apiProperties.json): inspect them, import them into "
        "a running gateway, export an imported connector for Power Platform.",
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

    importer = commands.add_parser(
        "import",
        help="import a connector folder into a running gateway",
        description="Upload a connector folder's files unchanged to a running gateway "
        f"(POST {IMPORT_ROUTE}) and print the created connector as JSON. Exit status 2 "
        "when the definition is refused, 1 for other failures.",
    )
    importer.add_argument("folder", metavar="DIR", help="connector folder")
    importer.add_argument("--base-url", help="override the definition's base URL")
    importer.add_argument("--name", help="connector name (default: the definition's title)")
    importer.add_argument(
        "--gateway",
        help=f"gateway URL (default: ${GATEWAY_URL_SETTING}, else {DEFAULT_GATEWAY_URL})",
    )
    importer.add_argument(
        "--client-secret-from",
        metavar="file:PATH|env:NAME",
        help="the secret of the definition's own OAuth client id (as paconn create "
        "--secret), read from a file or an environment variable, never from the command "
        "line; stored in the gateway's secret store",
    )
    importer.add_argument(
        "--allow-partial",
        action="store_true",
        help="keep the connector even when none of its operations can run at the gateway "
        "(by default it is deleted again and the exit status is 2)",
    )
    who = importer.add_mutually_exclusive_group()
    who.add_argument("--token", help=f"bearer token (default: ${GATEWAY_TOKEN_SETTING})")
    who.add_argument(
        "--user", help=f"mint a development token for this user (default: {DEFAULT_USER})"
    )
    importer.set_defaults(handler=run_import)

    from functions.cli.connector_export import add_export_command

    add_export_command(commands)


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
    """Upload one folder; 0 on success, 2 when refused as invalid, 1 otherwise."""
    try:
        files = _import_files(Path(args.folder))
    except _ImportFailed as failure:
        return _fail(failure.message, failure.status)
    gateway = (args.gateway or os.environ.get(GATEWAY_URL_SETTING) or DEFAULT_GATEWAY_URL).strip()
    try:
        token = _bearer_token(args)
    except _ImportFailed as failure:
        return _fail(failure.message, failure.status)
    fields = {
        name: value
        for name, value in (("baseUrl", args.base_url), ("name", args.name))
        if value is not None
    }
    if args.client_secret_from is not None:
        try:
            fields["clientSecret"] = _client_secret(args.client_secret_from)
        except _ImportFailed as failure:
            return _fail(failure.message, failure.status)
    return _post_import(
        gateway.rstrip("/") + IMPORT_ROUTE, token, files, fields, allow_partial=args.allow_partial
    )


def _client_secret(source: str) -> str:
    """The OAuth client secret from `file:PATH` or `env:NAME` (issue 18). A secret on
    the command line would be in the shell history and visible to `ps`; so it is read
    from where the user keeps it. Messages name the source, never the value."""
    kind, _, where = source.partition(":")
    if kind == "file" and where:
        try:
            value = Path(where).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            message = f"client secret file {where}: cannot be read ({reason})"
            raise _ImportFailed(message, EXIT_INVALID) from None
    elif kind == "env" and where:
        value = os.environ.get(where, "").strip()
        if not value:
            raise _ImportFailed(
                f"client secret: environment variable {where} is not set", EXIT_INVALID
            )
    else:
        raise _ImportFailed(
            "--client-secret-from takes file:PATH or env:NAME (never the secret itself)",
            EXIT_INVALID,
        )
    if not value:
        raise _ImportFailed(f"client secret file {where} is empty", EXIT_INVALID)
    return value


class _ImportFailed(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _import_files(folder: Path) -> dict[str, tuple[str, bytes, str]]:
    """Multipart file parts (field -> (file name, raw bytes, media type))."""
    from functions.powerplatform.loading import (
        API_DEFINITION_FILE,
        API_PROPERTIES_FILE,
        SCRIPT_FILE,
        find_file,
    )

    if not folder.is_dir():
        reason = "no such folder" if not folder.exists() else "not a folder"
        raise _ImportFailed(f"{folder}: {reason}", EXIT_INVALID)
    parts: dict[str, tuple[str, bytes, str]] = {}
    wanted = (
        ("apiDefinition", API_DEFINITION_FILE, "application/json", True),
        ("apiProperties", API_PROPERTIES_FILE, "application/json", False),
        ("script", SCRIPT_FILE, "text/plain", False),
    )
    for field, file_name, media_type, required in wanted:
        try:
            path = find_file(folder, file_name)
            if path is None:
                if required:
                    raise _ImportFailed(f"{file_name}: not found in {folder}", EXIT_INVALID)
                continue
            # Sent byte for byte: the gateway reports encoding and syntax errors itself,
            # with the same positions `inspect` gives.
            parts[field] = (path.name, path.read_bytes(), media_type)
        except OSError as exc:
            raise _ImportFailed(
                f"{file_name}: cannot be read ({exc.strerror or exc})", EXIT_INVALID
            ) from None
    return parts


def _bearer_token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token).strip()
    from_env = os.environ.get(GATEWAY_TOKEN_SETTING, "").strip()
    if from_env and args.user is None:
        return from_env
    from functions.cli.token import KEY_SETTING, LOCAL_SETTINGS_FILE, find_private_key
    from functions.errors import GatewayError
    from functions.identity.dev_issuer import mint_token

    try:
        private_key = find_private_key(Path.cwd())
        if private_key is None:
            raise _ImportFailed(
                f"no token: pass --token, set {GATEWAY_TOKEN_SETTING}, or set {KEY_SETTING} "
                f"(or run the gateway once to create {LOCAL_SETTINGS_FILE}) to mint a "
                "development token",
                EXIT_FAILED,
            )
        return mint_token(private_key, user=args.user or DEFAULT_USER)
    except GatewayError as exc:
        raise _ImportFailed(exc.detail, EXIT_FAILED) from None


def _post_import(
    url: str,
    token: str,
    files: dict[str, tuple[str, bytes, str]],
    fields: dict[str, str],
    *,
    allow_partial: bool = False,
) -> int:
    from functions.cli.gateway_client import CliError, GatewayClient, report

    base = url.removesuffix(IMPORT_ROUTE)
    client = GatewayClient(base, token, timeout=IMPORT_TIMEOUT_SECONDS)
    try:
        response = client.call("POST", IMPORT_ROUTE, files=files, data=fields)
    except CliError as error:
        return report(error)
    try:
        created: Any = response.json()
    except ValueError:
        print(response.text.strip())
        return EXIT_OK
    return _check_imported(client, created, allow_partial)


def _check_imported(client: Any, created: Any, allow_partial: bool) -> int:
    """Print each warning as a line on stderr; refuse (delete again) a connector none of
    whose operations can run, unless `allow_partial`."""
    from functions.cli.gateway_client import CliError

    summary = created.get("definition") if isinstance(created, dict) else None
    summary = summary if isinstance(summary, dict) else {}
    warnings = summary.get("warnings")
    for warning in warnings if isinstance(warnings, list) else ():
        print(f"warning: {_one_line(warning)}", file=sys.stderr)
    if allow_partial or summary.get("runnableOperations") != 0 or not summary.get("operations"):
        print(json.dumps(created))
        return EXIT_OK
    blocked = summary.get("blockedOperations")
    reason = blocked[0].get("reason") if isinstance(blocked, list) and blocked else None
    path = f"/api/connectors/{created.get('id')}"
    try:
        client.call("DELETE", path)
        outcome = "so it was deleted again"
    except CliError as error:
        outcome = f"and deleting it again failed ({error.message})"
    return _fail(
        "no operation of this connector can run at the gateway "
        f"({_one_line(reason or 'see the warnings')}), {outcome}; "
        "pass --allow-partial to import it anyway",
        EXIT_INVALID,
    )


def _fail(message: str, status: int = EXIT_FAILED) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())
