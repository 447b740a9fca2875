from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from functions.onprem.keys import (
    KeyFileError,
    fingerprint,
    generate_private_key,
    load_private_key,
    save_private_key,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_with_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    key = generate_private_key(2048)
    old = os.umask(0)
    try:
        path = tmp_path / "a" / "agent-key.pem"
        save_private_key(key, path)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    assert fingerprint(load_private_key(path)) == fingerprint(key)


def test_default_agent_key_is_rsa_3072() -> None:
    assert generate_private_key().key_size == 3072


def test_passphrase_encrypts_the_file(tmp_path: Path) -> None:
    key = generate_private_key(2048)
    path = tmp_path / "agent-key.pem"
    save_private_key(key, path, passphrase="correct horse")
    assert _mode(path) == 0o600
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert fingerprint(load_private_key(path, "correct horse")) == fingerprint(key)
    with pytest.raises(KeyFileError, match="encrypted"):
        load_private_key(path)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(path, "wrong")


def test_never_overwrites_a_key(tmp_path: Path) -> None:
    path = tmp_path / "agent-key.pem"
    save_private_key(generate_private_key(2048), path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        save_private_key(generate_private_key(2048), path)
    assert path.read_bytes() == before


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(tmp_path / "nope.pem")
