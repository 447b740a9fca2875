from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from functions.onprem.envelope import decrypt, encrypt_for_gateway, envelope_kid
from functions.onprem.errors import CredentialEnvelopeError
from functions.onprem.keys import fingerprint, generate_private_key, public_key_pem

SECRET = {"username": "CORP\\alice", "password": "pa55-Wörd!"}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return generate_private_key(2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return generate_private_key(2048)


def test_roundtrip(key: rsa.RSAPrivateKey) -> None:
    sealed = encrypt_for_gateway(public_key_pem(key), "gw1", "conn1", SECRET)
    doc = json.loads(sealed)
    assert set(doc) == {"v", "kid", "ek", "iv", "ct"}
    assert doc["v"] == 1 and doc["kid"] == fingerprint(key) == envelope_kid(sealed)
    assert len(base64.b64decode(doc["iv"])) == 12
    assert len(base64.b64decode(doc["ek"])) == 256  # RSA-2048 OAEP output
    assert decrypt(key, "gw1", "conn1", sealed) == SECRET


def test_each_envelope_is_fresh(key: rsa.RSAPrivateKey) -> None:
    a = encrypt_for_gateway(public_key_pem(key), "gw1", "conn1", SECRET)
    b = encrypt_for_gateway(public_key_pem(key), "gw1", "conn1", SECRET)
    assert json.loads(a)["ct"] != json.loads(b)["ct"]
    assert json.loads(a)["ek"] != json.loads(b)["ek"]


def test_no_plaintext_in_envelope(key: rsa.RSAPrivateKey) -> None:
    sealed = encrypt_for_gateway(public_key_pem(key), "gw1", "conn1", SECRET)
    raw = sealed + "".join(
        base64.b64decode(json.loads(sealed)[f]).decode("latin-1") for f in ("ek", "iv", "ct")
    )
    for value in ("alice", "pa55", "CORP"):
        assert value not in raw


def _tamper(sealed: str, field: str) -> str:
    doc = json.loads(sealed)
    raw = bytearray(base64.b64decode(doc[field]))
    raw[len(raw) // 2] ^= 0x01
    doc[field] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(doc)


@pytest.mark.parametrize("field", ["ct", "iv", "ek"])
def test_tampering_is_detected(key: rsa.RSAPrivateKey, field: str) -> None:
    sealed = encrypt_for_gateway(public_key_pem(key), "gw1", "conn1", SECRET)
    with pytest.raises(CredentialEnvelopeError) as info:
        decrypt(key, "gw1", "conn1", _tamper(sealed, field))
    assert "alice" not in str(info.value)


def test_wrong_key(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    sealed = encrypt_for_gateway(public_key_pem(key), "gw1", "conn1", SECRET)
    with pytest.raises(CredentialEnvelopeError, match="encrypted for key"):
        decrypt(other_key, "gw1", "conn1", sealed)
    # A forged kid does not help: the wrapped key does not open with another key.
    doc = json.loads(sealed)
    doc["kid"] = fingerprint(other_key)
    with pytest.raises(CredentialEnvelopeError):
        decrypt(other_key, "gw1", "conn1", json.dumps(doc))


@pytest.mark.parametrize(("gateway", "connection"), [("gw2", "conn1"), ("gw1", "conn2")])
def test_bound_to_gateway_and_connection(
    key: rsa.RSAPrivateKey, gateway: str, connection: str
) -> None:
    sealed = encrypt_for_gateway(public_key_pem(key), "gw1", "conn1", SECRET)
    with pytest.raises(CredentialEnvelopeError, match="integrity"):
        decrypt(key, gateway, connection, sealed)


@pytest.mark.parametrize("bad", ["", "{}", "not json", '{"v":2,"kid":"x","ek":"","iv":"","ct":""}'])
def test_malformed(key: rsa.RSAPrivateKey, bad: str) -> None:
    with pytest.raises(CredentialEnvelopeError):
        decrypt(key, "gw1", "conn1", bad)


def test_refuses_weak_or_non_rsa_keys() -> None:
    from cryptography.hazmat.primitives import serialization

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="2048"):
        encrypt_for_gateway(public_key_pem(weak), "gw1", "conn1", SECRET)
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match="RSA"):
        encrypt_for_gateway(ec_pem, "gw1", "conn1", SECRET)
    with pytest.raises(ValueError, match="PEM"):
        encrypt_for_gateway("garbage", "gw1", "conn1", SECRET)
