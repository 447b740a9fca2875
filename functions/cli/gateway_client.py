"""Calling a running gateway from the command line: where it is, which token, and
errors that say which URL was called and what to do next.

The gateway is `--gateway`, else $GATEWAY_URL, else http://127.0.0.1:7071 (what
`make run` serves by default; its banner prints the `export GATEWAY_URL=...` to use).
The token is `--token`, else a development token minted for `--user`, else
$GATEWAY_TOKEN, else a development token for "alice" (the key as
`python -m functions token` finds it).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

GATEWAY_URL_SETTING = "GATEWAY_URL"
GATEWAY_TOKEN_SETTING = "GATEWAY_TOKEN"  # noqa: S105 - a variable name, not a token
DEFAULT_GATEWAY_URL = "http://127.0.0.1:7071"
DEFAULT_USER = "alice"
TOKEN_COMMAND = "python -m functions token --user NAME"  # noqa: S105 - a command, not a secret
TIMEOUT_SECONDS = 60.0
_MAX_ERROR_LINES = 20

EXIT_FAILED = 1
EXIT_INVALID = 2


class CliError(Exception):
    """A failure to report as `error: <message>` (plus detail lines) with an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED, lines: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.lines = lines or []


def add_gateway_options(parser: argparse.ArgumentParser) -> None:
    """--gateway, and --token or --user, with their help."""
    parser.add_argument(
        "--gateway",
        metavar="URL",
        help=f"gateway URL (default: ${GATEWAY_URL_SETTING}, else {DEFAULT_GATEWAY_URL})",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--token",
        help=f"bearer token (default: ${GATEWAY_TOKEN_SETTING}, else a development token)",
    )
    who.add_argument(
        "--user",
        metavar="NAME",
        help=f"mint a development token for this user (default: {DEFAULT_USER})",
    )


def gateway_url(args: argparse.Namespace) -> str:
    value = getattr(args, "gateway", None) or os.environ.get(GATEWAY_URL_SETTING)
    return (value or DEFAULT_GATEWAY_URL).strip().rstrip("/")


def bearer_token(args: argparse.Namespace) -> str:
    if getattr(args, "token", None):
        return str(args.token).strip()
    user = getattr(args, "user", None)
    from_env = os.environ.get(GATEWAY_TOKEN_SETTING, "").strip()
    if from_env and user is None:
        return from_env
    from functions.cli.token import KEY_SETTING, LOCAL_SETTINGS_FILE, find_private_key
    from functions.errors import GatewayError
    from functions.identity.dev_issuer import mint_token

    try:
        private_key = find_private_key(Path.cwd())
        if private_key is None:
            raise CliError(
                f"no token: pass --token, set {GATEWAY_TOKEN_SETTING}, or set {KEY_SETTING} "
                f"(or run the gateway once with `make run` to create {LOCAL_SETTINGS_FILE}) "
                "to mint a development token"
            )
        return mint_token(private_key, user=user or DEFAULT_USER)
    except GatewayError as exc:
        raise CliError(exc.detail) from None


@dataclass
class GatewayClient:
    base_url: str
    token: str
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GatewayClient:
        return cls(gateway_url(args), bearer_token(args))

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; a non-2xx answer or a transport failure is a CliError that
        names the URL and says what to do."""
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            # trust_env=False: no proxy or netrc from the environment may see the token.
            with httpx.Client(trust_env=False, timeout=self.timeout) as client:
                response = client.request(method, url, headers=headers, **kwargs)
        except httpx.InvalidURL:
            raise CliError(
                f"invalid gateway URL: {url}; check --gateway or ${GATEWAY_URL_SETTING}"
            ) from None
        except httpx.UnsupportedProtocol:
            raise CliError(
                f"invalid gateway URL (http or https expected): {url}; "
                f"check --gateway or ${GATEWAY_URL_SETTING}"
            ) from None
        except httpx.ConnectError as exc:
            raise CliError(
                f"cannot connect to the gateway at {url} ({_reason(exc)}); is it running "
                f"(`make run`)? Point the CLI at it with --gateway URL or ${GATEWAY_URL_SETTING}"
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"the gateway at {url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to the gateway at {url} failed ({_reason(exc)})") from None
        if not response.is_success:
            raise problem_error(method, url, response)
        return response


def problem_error(method: str, url: str, response: httpx.Response) -> CliError:
    """The CliError for a refused request: the problem's detail and errors, the URL, and
    a hint for the usual causes."""
    status = EXIT_INVALID if response.status_code in (400, 422) else EXIT_FAILED
    try:
        problem = response.json()
    except ValueError:
        problem = None
    where = f"{method} {url}"
    if not isinstance(problem, dict):
        return CliError(
            f"{where}: the gateway answered {response.status_code} {response.reason_phrase}", status
        )
    detail = problem.get("detail") or problem.get("title") or f"HTTP {response.status_code}"
    code = problem.get("code")
    message = f"{where}: {response.status_code} {code + ': ' if code else ''}{one_line(detail)}"
    if response.status_code == 401:
        message += (
            f"; mint a new token with `{TOKEN_COMMAND}` and pass it with --token or "
            f"${GATEWAY_TOKEN_SETTING} (tokens expire after an hour)"
        )
    elif response.status_code == 404 and code == "route_not_found":
        message += f"; is {url.split('/api/', 1)[0]} a Connector Gateway? Check --gateway"
    elif response.status_code >= 500 and problem.get("correlationId"):
        message += f" (correlation id {problem['correlationId']})"
    lines = []
    errors = problem.get("errors")
    for entry in errors[:_MAX_ERROR_LINES] if isinstance(errors, list) else ():
        if isinstance(entry, dict):
            field = entry.get("field") or entry.get("pointer") or ""
            text = entry.get("message") or entry.get("detail") or json.dumps(entry)
            lines.append(f"  {one_line(field)}: {one_line(text)}" if field else f"  {text}")
        else:
            lines.append(f"  {one_line(entry)}")
    return CliError(message, status, lines)


def report(error: CliError) -> int:
    import sys

    print("\n".join([f"error: {error.message}", *error.lines]), file=sys.stderr)
    return error.status


def one_line(value: Any) -> str:
    return " ".join(str(value).split())


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    if "refused" in text.lower():
        return "connection refused"
    return one_line(text) or type(exc).__name__


def read_secret(source: str, what: str) -> str:
    """A secret from `file:PATH` or `env:NAME`, never from the command line (shell
    history, `ps`). Messages name the source, never the value."""
    kind, _, where = source.partition(":")
    if kind == "file" and where:
        try:
            value = Path(where).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise CliError(
                f"{what}: file {where} cannot be read ({reason})", EXIT_INVALID
            ) from None
        if not value:
            raise CliError(f"{what}: file {where} is empty", EXIT_INVALID)
        return value
    if kind == "env" and where:
        value = os.environ.get(where, "").strip()
        if not value:
            raise CliError(f"{what}: environment variable {where} is not set", EXIT_INVALID)
        return value
    # The value is not repeated: it may well be the secret itself.
    raise CliError(
        f"{what}: expected file:PATH or env:NAME (never the secret itself)", EXIT_INVALID
    )
