"""Issue 12: credential-like query parameters never reach a log line: not the gateway's
own records, not uvicorn's access log (whose formatter needs the record's arguments
intact), whatever the parameter's case."""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import pytest
from uvicorn.logging import AccessFormatter

from functions.logging_redaction import CREDENTIAL_PARAMETERS, install, redact
from functions.services.ids import new_id
from tests.conftest import GatewayUnderTest


@pytest.mark.parametrize("name", CREDENTIAL_PARAMETERS)
def test_every_credential_parameter_is_redacted(name: str) -> None:
    value = "v-" + new_id()
    for spelled in (name, name.upper()):
        line = f'"GET /api/health?x=1&{spelled}={value}&y=2 HTTP/1.1" 200'
        cleaned = redact(line)
        assert value not in cleaned
        assert f"{spelled}=***" in cleaned and "x=1" in cleaned and "y=2" in cleaned


def test_ordinary_parameters_are_kept() -> None:
    line = "GET /search?monkey=1&keyword=abc&codex=2&q=token HTTP/1.1"
    assert redact(line) == line


def test_the_access_log_of_the_running_gateway_is_redacted(gateway: GatewayUnderTest) -> None:
    install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    token, secret = "tok-" + new_id(), "cs-" + new_id()
    try:
        with gateway.client(None) as anonymous:
            anonymous.get(f"/api/health?access_token={token}&client_secret={secret}&n=1")
            anonymous.get(f"/api/connections?ACCESS_TOKEN={token}")
        for _ in range(50):  # uvicorn logs after the response is sent
            if stream.getvalue().count("\n") >= 2:
                break
            time.sleep(0.05)
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    logged = stream.getvalue()
    assert "/api/health?access_token=***&client_secret=***&n=1" in logged, logged
    assert "ACCESS_TOKEN=***" in logged
    assert token not in logged and secret not in logged


def test_records_keep_their_argument_shape(caplog: pytest.LogCaptureFixture) -> None:
    install()
    caplog.set_level(logging.INFO, logger="redaction-test")
    logger = logging.getLogger("redaction-test")
    logger.info("%s - %s", "127.0.0.1", "/x?token=abcdef123&ok=1")
    record: Any = caplog.records[-1]
    assert isinstance(record.args, tuple) and len(record.args) == 2
    assert record.getMessage() == "127.0.0.1 - /x?token=***&ok=1"
