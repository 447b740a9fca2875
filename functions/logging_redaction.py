"""Defence in depth against secrets in logs.

The code never logs secret values on purpose. As a second line, every secret value the
process holds in memory is registered here, and a log record factory replaces any
registered value found in a record's message with `***`, whichever library logged it
(httpx logs full URLs, which carry API keys passed in the query string). Values shorter
than MIN_LENGTH are not registered: redacting them would mangle ordinary text. Values
of credential-like query parameters (CREDENTIAL_PARAMETERS) are redacted in every
record too, known or not: callers put their own tokens in URLs, and access logs print
request targets whole.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import traceback
from typing import Any
from urllib.parse import quote, quote_plus

MIN_LENGTH = 6
_MAX_VALUES = 50_000

_lock = threading.Lock()
_values: dict[str, None] = {}  # insertion-ordered set, bounded
_installed = False


def register_secret(value: str) -> None:
    if len(value) < MIN_LENGTH:
        return
    with _lock:
        # Encoded forms too: a key in a query string appears percent-encoded.
        for form in {value, quote(value, safe=""), quote_plus(value)}:
            _values[form] = None
        while len(_values) > _MAX_VALUES:
            _values.pop(next(iter(_values)))


# Query parameters that carry credentials by convention (OAuth, API keys, SAS
# signatures, passwords): their values are replaced in every log line, whether or not
# the gateway knows the value (a caller's own `?access_token=` never reaches the
# registry above, and uvicorn's access log prints the whole request target).
CREDENTIAL_PARAMETERS = (
    "access_token",
    "id_token",
    "refresh_token",
    "code",
    "client_secret",
    "client_assertion",
    "api_key",
    "api-key",
    "apikey",
    "key",
    "subscription-key",
    "sig",
    "signature",
    "token",
    "password",
    "passwd",
    "pwd",
    "secret",
)
_PARAMETER = re.compile(
    r"([?&;](?:" + "|".join(re.escape(n) for n in CREDENTIAL_PARAMETERS) + r")=)[^&#;\s\"'<>]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    if "=" in text:
        text = _PARAMETER.sub(r"\1***", text)
    if not _values:
        return text
    with _lock:
        values = list(_values)
    for value in values:
        if value in text:
            text = text.replace(value, "***")
    return text


def _redact_record(record: logging.LogRecord) -> None:
    """Redact in place, keeping the record's shape: formatters such as uvicorn's access
    formatter unpack `record.args`, so redacted arguments stay a tuple of the same
    length; only when a secret spans the formatting is the message flattened."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is the logger's problem
        return
    cleaned = redact(message)
    if cleaned == message:
        return
    if isinstance(record.args, tuple) and isinstance(record.msg, str):
        record.msg = redact(record.msg)
        record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        with contextlib.suppress(Exception):  # any failure: the flattened message below
            if record.getMessage() == cleaned:
                return
    record.msg, record.args = cleaned, None


def install() -> None:
    """Wrap the log record factory once per process."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters print `exc_text` when set: give them the redacted traceback
            # (an exception message may quote a value, e.g. a URL with a key).
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return record

    logging.setLogRecordFactory(factory)
    # httpx logs every request URL at INFO; keep it at WARNING in any case.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("azure").setLevel(logging.WARNING)
