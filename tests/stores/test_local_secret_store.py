"""LocalSecretStore: encrypted files for development."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest

from functions.errors import ConfigurationError, SecretNotFoundError
from functions.stores.secrets.local import (
    LocalSecretCorruptedError,
    LocalSecretStore,
    generate_local_key,
)


@pytest.fixture
def key() -> str:
    return generate_local_key()


@pytest.fixture
def store(tmp_path, key) -> LocalSecretStore:
    return LocalSecretStore(str(tmp_path / "secrets"), key)


def secret_file(store: LocalSecretStore, name: str) -> str:
    return os.path.join(store.directory, name.lower() + ".json")


def load(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def save(path: str, document: dict) -> None:
    with open(path, "w") as handle:
        json.dump(document, handle)


def test_roundtrip_and_versions(store):
    v1 = store.set_secret("conn-1", "first value")
    v2 = store.set_secret("conn-1", "second value", tags={"kind": "api-key"})

    assert v1 != v2 and len(v1) == 32 and int(v1, 16) >= 0
    latest = store.get_secret("conn-1")
    assert (latest.name, latest.version, latest.value) == ("conn-1", v2, "second value")
    assert store.get_secret("conn-1", v1).value == "first value"
    assert store.get_secret("conn-1", v2).value == "second value"
    assert store.get_secret("CONN-1", v1).value == "first value"  # Key Vault: case-insensitive


def test_unicode_and_empty_values(store):
    version = store.set_secret("u", "pässwörd ✓ \n\t")
    assert store.get_secret("u", version).value == "pässwörd ✓ \n\t"
    version = store.set_secret("e", "")
    assert store.get_secret("e", version).value == ""


def test_missing_name_and_version(store):
    with pytest.raises(SecretNotFoundError):
        store.get_secret("nope")
    store.set_secret("yes", "v")
    with pytest.raises(SecretNotFoundError):
        store.get_secret("yes", uuid.uuid4().hex)


def test_delete_is_idempotent(store):
    store.set_secret("gone", "v")
    store.delete_secret("gone")
    assert not os.path.exists(secret_file(store, "gone"))
    with pytest.raises(SecretNotFoundError):
        store.get_secret("gone")
    store.delete_secret("gone")
    store.delete_secret("never-existed")


def test_file_permissions_and_no_plaintext(store):
    value = f"plain-{uuid.uuid4().hex}"
    version = store.set_secret("perm", value)

    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    for entry in os.listdir(store.directory):
        assert stat.S_IMODE(os.stat(os.path.join(store.directory, entry)).st_mode) == 0o600
    with open(secret_file(store, "perm"), "rb") as handle:
        raw = handle.read()
    assert value.encode() not in raw
    assert base64.b64encode(value.encode()) not in raw
    document = json.loads(raw)
    assert [v["version"] for v in document["versions"]] == [version]
    assert set(document["versions"][0]) == {"version", "nonce", "ciphertext", "created"}


def test_existing_directory_is_tightened(tmp_path, key):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    LocalSecretStore(str(loose), key)
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700


def test_tampered_ciphertext_is_detected(store):
    value = f"v-{uuid.uuid4().hex}"
    version = store.set_secret("tamper", value)
    path = secret_file(store, "tamper")
    document = load(path)
    ciphertext = bytearray(base64.b64decode(document["versions"][0]["ciphertext"]))
    ciphertext[0] ^= 0x01
    document["versions"][0]["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
    save(path, document)

    with pytest.raises(LocalSecretCorruptedError) as caught:
        store.get_secret("tamper", version)
    assert value not in str(caught.value)


def test_ciphertext_moved_to_another_secret_fails(store):
    store.set_secret("source", "from source")
    store.set_secret("target", "from target")
    source = load(secret_file(store, "source"))
    target = load(secret_file(store, "target"))
    # Swap in the source ciphertext but keep the target's version id.
    entry = dict(source["versions"][0], version=target["versions"][0]["version"])
    target["versions"][0] = entry
    save(secret_file(store, "target"), target)

    with pytest.raises(LocalSecretCorruptedError):
        store.get_secret("target")


def test_garbage_file_is_corrupted(store):
    store.set_secret("junk", "v")
    with open(secret_file(store, "junk"), "w") as handle:
        handle.write("{not json")
    with pytest.raises(LocalSecretCorruptedError):
        store.get_secret("junk")


def test_wrong_key_is_a_clear_configuration_error(tmp_path, key):
    directory = str(tmp_path / "s")
    LocalSecretStore(directory, key).set_secret("k", "v")
    other = LocalSecretStore(directory, generate_local_key())

    with pytest.raises(ConfigurationError) as caught:
        other.get_secret("k")
    assert "different GATEWAY_LOCAL_SECRET_KEY" in caught.value.detail
    with pytest.raises(ConfigurationError):
        other.set_secret("k", "w")  # would mix keys in one file


@pytest.mark.parametrize(
    "bad", ["", "not base64!!", base64.b64encode(b"x" * 16).decode(), "QUJD" * 20]
)
def test_malformed_key_is_rejected(tmp_path, bad):
    with pytest.raises(ConfigurationError) as caught:
        LocalSecretStore(str(tmp_path), bad)
    assert "GATEWAY_LOCAL_SECRET_KEY" in caught.value.detail


def test_urlsafe_and_unpadded_keys_are_accepted(tmp_path):
    raw = bytes(range(200, 232))  # contains bytes that encode to '+' '/' vs '-' '_'
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert standard != urlsafe
    directory = str(tmp_path / "s")
    version = LocalSecretStore(directory, standard).set_secret("k", "v")
    assert LocalSecretStore(directory, urlsafe).get_secret("k", version).value == "v"


def test_generate_local_key_is_32_random_bytes():
    first, second = generate_local_key(), generate_local_key()
    assert len(base64.b64decode(first)) == 32
    assert first != second


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "dot.json", "x" * 128])
def test_invalid_names_are_rejected(store, name):
    with pytest.raises(ValueError):
        store.set_secret(name, "v")
    with pytest.raises(ValueError):
        store.get_secret(name)
    with pytest.raises(ValueError):
        store.delete_secret(name)
    assert os.listdir(store.directory) == []


def test_concurrent_writes_from_threads(store):
    barrier = threading.Barrier(8)
    results: list[tuple[str, str]] = []
    lock = threading.Lock()

    def writer(worker: int) -> None:
        barrier.wait()
        for i in range(10):
            value = f"t{worker}-{i}"
            version = store.set_secret("shared", value)
            with lock:
                results.append((version, value))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({version for version, _ in results}) == 80
    for version, value in results:
        assert store.get_secret("shared", version).value == value
    assert not [f for f in os.listdir(store.directory) if f.startswith(".tmp-")]


def _write_many(directory: str, key: str, worker: int, count: int) -> list[tuple[str, str]]:
    store = LocalSecretStore(directory, key)
    written = []
    for i in range(count):
        value = f"p{worker}-{i}"
        written.append((store.set_secret("shared", value), value))
    return written


def test_concurrent_writes_from_processes(store, key):
    context = multiprocessing.get_context("spawn")  # no fork of a threaded test process
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        futures = [pool.submit(_write_many, store.directory, key, w, 15) for w in range(4)]
        results = [pair for future in futures for pair in future.result()]

    assert len({version for version, _ in results}) == 60
    document = load(secret_file(store, "shared"))
    assert len(document["versions"]) == 60
    for version, value in results:
        assert store.get_secret("shared", version).value == value
