"""Identifiers: random, unguessable, and valid as Table keys and Key Vault names."""

from __future__ import annotations

import re
import secrets

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    # 128 random bits: ids cannot be guessed or enumerated.
    return secrets.token_hex(16)


def is_valid_id(value: str) -> bool:
    return bool(_ID.match(value))
